"""Chains whose links run back to back in one worker, and links that fail or crash."""

import os
import time

from dagrun import stage


@stage
def first() -> int:
    time.sleep(0.3)
    return 1


@stage
def second(first: int) -> int:
    return first + 1


@stage
def third(second: int) -> int:
    return second + 1


@stage(retries=1, retry_delay=0.01)
def flaky(flaky_marker: str = "") -> int:
    time.sleep(0.1)
    if flaky_marker and not os.path.exists(flaky_marker):
        open(flaky_marker, "w").close()
        raise RuntimeError("the first attempt fails")
    return 10


@stage
def after_flaky(flaky: int) -> int:
    return flaky + 1


@stage(retries=1, retry_delay=0.01)
def crashy(crash_marker: str = "") -> int:
    time.sleep(0.1)
    if crash_marker and not os.path.exists(crash_marker):
        open(crash_marker, "w").close()
        os._exit(5)
    return 20


@stage
def after_crashy(crashy: int) -> int:
    return crashy + 1


@stage
def broken() -> int:
    time.sleep(0.1)
    raise ValueError("broken on purpose")


@stage
def after_broken(broken: int) -> int:
    return broken
