"""Large arrays returned by stages: one nobody else holds, and one a module global keeps."""

import numpy as np

from dagrun import stage

N = 16 << 20  # float64 elements: 128 MiB
_KEPT: list[np.ndarray] = []


@stage
def tiny() -> int:
    return 1


@stage
def fresh(tiny: int) -> np.ndarray:
    return np.full(N, 2.5)


@stage
def fresh_sum(fresh: np.ndarray) -> float:
    return float(fresh[:: 1 << 12].sum())


@stage
def kept() -> np.ndarray:
    _KEPT.append(np.full(N // 4, 3.5))
    return _KEPT[-1]


@stage
def kept_intact(kept: np.ndarray) -> bool:
    # Runs in the same (only) worker: the module's own reference must still see its data.
    return bool(_KEPT and (_KEPT[-1] == 3.5).all() and (kept == 3.5).all())
