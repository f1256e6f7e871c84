"""Mapping over a numpy array: rows of a 2-D grid, results in order, zero-copy views."""

from __future__ import annotations

import mmap
import os
import pickle
import time
from pathlib import Path

import numpy as np

from dagrun import stage


@stage
def grid(rows: int = 10, cols: int = 1000) -> np.ndarray:
    """``rows`` x ``cols`` float64 (80 KB for 10 rows: large enough for shared memory)."""
    return np.arange(rows * cols, dtype=np.float64).reshape(rows, cols)


@stage(map="grid", batch_size=3)
def row_sums(grid: np.ndarray, slow_first: bool = False) -> float:
    """Each row's sum; with ``slow_first`` early rows finish last (order must still hold)."""
    if slow_first:
        time.sleep(max(0.0, 0.05 - 0.01 * grid[0] / grid.shape[0]))
    return float(grid.sum())


def _mapped(base: object) -> bool:
    """Whether ``base`` is a mapping, or a read-only buffer over one (in the writing process)."""
    if isinstance(base, pickle.PickleBuffer):
        base = base.raw()
    while isinstance(base, memoryview):
        base = base.obj
    return isinstance(base, mmap.mmap)


@stage(map="grid", batch_size=4)
def views(grid: np.ndarray) -> dict:
    """How the element arrived: a read-only view into the mapping of the whole input."""
    root = grid
    while isinstance(root.base, np.ndarray):
        root = root.base
    start = root.__array_interface__["data"][0]
    address = grid.__array_interface__["data"][0]
    return {
        "row": int(grid[0] // grid.shape[0]),
        "shares_memory": bool(np.shares_memory(grid, root)),
        "mapped": _mapped(root.base),
        "root_bytes": root.nbytes,
        "offset": address - start,
        "writeable": bool(grid.flags.writeable),
        "owndata": bool(grid.flags.owndata),
    }


@stage(map="grid", batch_size=4, concat=True)
def doubled(grid: np.ndarray) -> np.ndarray:
    """Each row doubled: stacked, the rows make the doubled grid."""
    return grid * 2


@stage(map="grid", concat=True)
def row_max(grid: np.ndarray) -> np.float64:
    """A scalar per row: stacked into a 1-d array (automatic batch size)."""
    return grid.max()


@stage(map="grid", batch_size=2)
def widened(grid: np.ndarray) -> np.ndarray:
    """A large array per element (80 KB): each travels through shared memory."""
    return np.repeat(grid, 10)


@stage(map="grid", batch_size=2)
def fragile(grid: np.ndarray, bad_row: int = -1) -> float:
    """Fails on row ``bad_row``."""
    if int(grid[0] // grid.shape[0]) == bad_row:
        raise ValueError(f"row {bad_row} is bad")
    return float(grid[0])


@stage(map="grid", batch_size=3, retries=1)
def flaky(grid: np.ndarray, marker: str = "") -> float:
    """Fails the first time it meets row 4 (a marker file remembers), then succeeds."""
    if int(grid[0] // grid.shape[0]) == 4 and marker and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        raise RuntimeError("row 4 failed once")
    return float(grid[0])
