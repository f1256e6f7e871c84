"""Two stages that sleep long enough to be interrupted."""

import time

from dagrun import stage


@stage
def first(seconds: float = 60.0) -> str:
    time.sleep(seconds)
    return "first"


@stage
def second(seconds: float = 60.0) -> str:
    time.sleep(seconds)
    return "second"
