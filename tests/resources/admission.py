"""Two stages declared big, two small ones: a memory budget keeps the big ones apart."""

import time

from dagrun import stage


@stage(memory="600M")
def big_one() -> int:
    time.sleep(0.4)
    return 1


@stage(memory="600M")
def big_two() -> int:
    time.sleep(0.4)
    return 2


@stage
def small_one() -> int:
    time.sleep(0.4)
    return 3


@stage
def small_two() -> int:
    time.sleep(0.4)
    return 4
