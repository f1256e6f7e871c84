"""A mapped stage whose joined results are mapped over again, by rows."""

import numpy as np

from dagrun import stage


@stage
def seeds(count: int = 5) -> np.ndarray:
    return np.arange(count, dtype=np.int64)


@stage(map="seeds", batch_size=2, concat=True)
def pairs(seeds: np.int64) -> np.ndarray:
    return np.array([seeds, 10 * seeds])  # one row of two per element: stacked, (count, 2)


@stage(map="pairs", batch_size=3)
def row_sums(pairs: np.ndarray) -> int:
    return int(pairs.sum())
