"""Two different stages with one name."""

from dagrun import stage


@stage(name="same")
def first() -> int:
    return 1


@stage(name="same")
def second() -> int:
    return 2
