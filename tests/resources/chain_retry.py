"""A chain whose middle link fails once: what is chained behind it must wait for the retry."""

import os

from dagrun import stage


@stage
def first(marker: str = "") -> int:
    return 1


@stage(retries=1)
def second(first: int, marker: str = "") -> int:
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails")
    return first + 1


@stage
def third(second: int) -> int:
    return second + 1


@stage
def fourth(third: int) -> int:
    return third * 10
