"""Small helpers the tests share: whether a process is alive, and waiting for something
observable (a file, a process ending, a log line) instead of sleeping a fixed time.

A fixed sleep is either too short on a loaded machine (the test fails by chance) or
too long everywhere else (the suite is slow); ``wait_until`` polls briefly and fails
with the thing it waited for named.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.02  # short enough to add nothing visible to a test, long enough not to spin a core


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a zombie is dead for the tests).

    A process of another user counts as alive: it exists, it is just not ours to signal.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc/self"):
        return True  # no /proc (macOS): the signal check is all there is
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:  # gone since the signal check
        return False


def wait_until(condition: Callable[[], T], timeout: float = 10.0, *, message: str = "") -> T:
    """Poll ``condition`` until it returns something true, and return that.

    Fails with an ``AssertionError`` naming what was awaited (``message``, or else
    the condition's source) when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            msg = f"waited {timeout:g} s in vain for {message or _describe(condition)}"
            raise AssertionError(msg)
        time.sleep(POLL_S)


def _describe(condition: Callable[[], object]) -> str:
    name = getattr(condition, "__name__", repr(condition))
    if name != "<lambda>":
        return name
    try:
        return inspect.getsource(condition).strip()
    except (OSError, TypeError):
        return "a condition"
