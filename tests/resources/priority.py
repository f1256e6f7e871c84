"""Arrival order is the wrong choice: `a_short` comes first, `z_head` leads a long chain."""

import time

from dagrun import stage


@stage
def a_short() -> int:
    time.sleep(0.05)
    return 1


@stage
def z_head() -> int:
    time.sleep(0.05)
    return 1


@stage
def z_second(z_head: int) -> int:
    return z_head + 1


@stage
def z_third(z_second: int) -> int:
    return z_second + 1
