"""The three functions of the start-up comparison, plain (numpy only).

``three.py`` runs them as a dagrun pipeline, ``three_pool.py`` with a plain
``multiprocessing.Pool``; both do exactly this work.
"""

from __future__ import annotations

import numpy as np


def load(n: int = 100_000) -> np.ndarray:
    """``n`` float64 values."""
    return np.arange(n, dtype=np.float64)


def square(values: np.ndarray) -> np.ndarray:
    """Each value squared."""
    return values * values


def total(values: np.ndarray) -> float:
    """The sum."""
    return float(values.sum())
