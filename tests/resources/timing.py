"""Two independent one-second stages and a join: they must overlap."""

import time

from dagrun import stage


@stage
def left(seconds: float = 1.0) -> float:
    time.sleep(seconds)
    return time.time()


@stage
def right(seconds: float = 1.0) -> float:
    time.sleep(seconds)
    return time.time()


@stage
def joined(left: float, right: float) -> float:
    return max(left, right)
