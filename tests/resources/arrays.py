"""numpy arrays handed from stage to stage."""

import numpy as np

from dagrun import stage


@stage
def matrix(size: int = 256) -> np.ndarray:
    return np.arange(size * size, dtype=np.float64).reshape(size, size)


@stage
def doubled(matrix: np.ndarray) -> np.ndarray:
    return matrix * 2


@stage
def checksum(doubled: np.ndarray, matrix: np.ndarray) -> float:
    return float(doubled.sum() - matrix.sum())


@stage
def vandal(matrix: np.ndarray) -> None:
    matrix[0, 0] = -1.0
