"""A stage that raises, what depends on it, and an unrelated branch."""

import time

from dagrun import stage


def helper(value: int) -> int:
    raise ValueError(f"bad value {value}")


@stage
def source() -> int:
    return 41


@stage
def broken(source: int) -> int:
    return helper(source + 1)


@stage
def after_broken(broken: int) -> int:
    return broken * 2


@stage
def unrelated(delay: float = 0.3) -> str:
    time.sleep(delay)
    return "fine"


@stage
def after_unrelated(unrelated: str) -> str:
    return unrelated.upper()
