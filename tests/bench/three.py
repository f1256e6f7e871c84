"""A three-stage pipeline for the start-up comparison: ``dagrun run tests/bench/three.py``."""

from __future__ import annotations

import numpy as np

from dagrun import stage
from tests.bench import three_funcs


@stage(cache=False)
def load() -> np.ndarray:
    """``three_funcs.load``."""
    return three_funcs.load()


@stage(cache=False)
def square(load: np.ndarray) -> np.ndarray:
    """``three_funcs.square``."""
    return three_funcs.square(load)


@stage(cache=False)
def total(square: np.ndarray) -> float:
    """``three_funcs.total``."""
    return three_funcs.total(square)
