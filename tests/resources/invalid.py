"""Every kind of mistake at once: a cycle, a missing input, a lambda, a nested function."""

from dagrun import stage


@stage
def alpha(gamma: int) -> int:
    return gamma


@stage
def beta(alpha: int) -> int:
    return alpha


@stage
def gamma(beta: int) -> int:
    return beta


@stage
def lonely(sourse: int) -> int:
    return sourse


@stage
def source() -> int:
    return 1


anonymous = stage(lambda: 1, name="anonymous")


def make():
    @stage
    def inner() -> int:
        return 1

    return inner


inner = make()
