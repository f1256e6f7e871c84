"""A stage that outlives its timeout, and a long one for signal tests."""

import time

from dagrun import stage


@stage(timeout=0.5)
def sleepy(seconds: float = 30.0) -> str:
    time.sleep(seconds)
    return "woke"


@stage
def quick() -> str:
    return "done"
