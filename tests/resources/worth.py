"""Two stages with the same 4 MiB result: one made at once, one that takes a second."""

import time

import numpy as np

from dagrun import stage


@stage
def quick() -> np.ndarray:
    return np.ones(1 << 19)


@stage
def slow() -> np.ndarray:
    time.sleep(1.0)
    return np.ones(1 << 19)
