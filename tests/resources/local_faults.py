"""Errors that are hard to report, large results, and a module whose import hangs.

Used by ``tests/test_failures.py`` and ``tests/test_local_pool.py``.
"""

from __future__ import annotations

import numpy as np

from dagrun import stage


class BadValue(ValueError):
    """A ValueError whose ``__str__`` itself raises."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


@stage
def raises_bad_value() -> int:
    raise BadValue("never shown")


@stage
def mentions_read_only() -> int:
    raise ValueError("the settings file is read-only; ask an admin")


@stage
def writes_input() -> int:
    data = np.zeros(4)
    data.flags.writeable = False
    data[0] = 1.0
    return 0


@stage
def chatty_result(count: int = 200) -> int:
    for i in range(count):
        print(f"line {i}")
    return count


@stage
def large() -> np.ndarray:
    return np.ones(1 << 19)  # 4 MiB: above the size that pulls consumers to its writer


@stage
def allocates(mib: int = 64) -> int:
    block = np.ones((mib << 20) // 8)  # touched: resident while the task runs
    total = int(block.sum())
    del block
    return total
