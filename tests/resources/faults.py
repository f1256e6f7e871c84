"""One stage per way a task can go wrong, and ``survivor``, which must always finish.

The failure matrix (``tests/test_failures.py``) runs each faulty stage next to
``survivor`` under every start method; stages here are top-level functions, so
they work under ``spawn`` and ``forkserver`` too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

from dagrun import stage


class Unpicklable(Exception):
    """An exception whose required ``__init__`` argument breaks unpickling."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code = code


class HoldsALock(Exception):
    """An exception that cannot be pickled at all: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class BadStr(Exception):
    """An exception whose ``__str__`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


class ExitOnLoad:
    """Pickles fine; unpickling it kills the process that reads it."""

    def __reduce__(self):
        return (os._exit, (9,))


class RaiseOnLoad:
    """Pickles fine; unpickling it raises."""

    def __init__(self) -> None:
        self.payload = 1

    def __setstate__(self, state):
        raise ValueError("this input cannot be rebuilt")


@stage
def survivor(delay: float = 0.3) -> str:
    time.sleep(delay)
    return "alive"


@stage
def raises() -> int:
    raise ValueError("bad value 42")


@stage
def exits() -> int:
    sys.exit(3)


@stage
def os_exit() -> int:
    os._exit(7)


@stage
def segfault() -> int:
    ctypes.string_at(0)
    return 0


@stage
def sigkill() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@stage(timeout=0.5)
def hangs() -> int:
    time.sleep(60)
    return 0


@stage
def returns_lambda():
    return lambda: 1


@stage
def returns_lock():
    return threading.Lock()


@stage
def raises_unpicklable() -> int:
    raise Unpicklable(5, "needs two arguments")


@stage
def raises_lock_holder() -> int:
    raise HoldsALock("holding a lock")


@stage
def raises_bad_str() -> int:
    raise BadStr()


@stage
def exit_on_load() -> ExitOnLoad:
    return ExitOnLoad()


@stage
def reads_exit_on_load(exit_on_load: ExitOnLoad) -> int:
    return 1


@stage
def raise_on_load() -> RaiseOnLoad:
    return RaiseOnLoad()


@stage
def reads_raise_on_load(raise_on_load: RaiseOnLoad) -> int:
    return 1


@stage
def takes_param(value: object = None) -> str:
    return type(value).__name__


@stage
def sleeps(seconds: float = 60.0) -> str:
    """No timeout of its own: only the run-wide ``--timeout`` stops it."""
    time.sleep(seconds)
    return "woke"


@stage(retries=2, timeout=0.3)
def always_hangs() -> int:
    time.sleep(60)
    return 0


@stage(retries=1, retry_on=KeyError)
def always_crashes() -> int:
    os._exit(5)


@stage
def array():
    import numpy as np

    return np.ones(1 << 20)  # 8 MiB: travels through shared memory


@stage
def waits_a(array, seconds: float = 60.0) -> float:
    time.sleep(seconds)
    return float(array.sum())


@stage
def waits_b(array, seconds: float = 60.0) -> float:
    time.sleep(seconds)
    return float(array.sum())
