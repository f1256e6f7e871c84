"""Large results with one consumer (kept in their worker) and the cases that are not.

Arrays here are 8 MiB: tests lower ``DAGRUN_HOLD_MIN`` below that.
"""

import os
import time

import numpy as np
import pyarrow as pa

import dagrun
from dagrun import stage

N = 1 << 20  # float64 elements: 8 MiB


@stage
def made() -> np.ndarray:
    return np.arange(N, dtype=np.float64)


@stage
def plus_one(made: np.ndarray) -> np.ndarray:
    return made + 1.0


@stage
def summary(plus_one: np.ndarray) -> dict:
    return {"sum": float(plus_one.sum()), "writeable": bool(plus_one.flags.writeable)}


@stage
def other(made: np.ndarray) -> float:
    return float(made[-1])


@stage(retries=1)
def retried(made: np.ndarray) -> float:
    return float(made.sum())


@stage
def writes(made: np.ndarray) -> None:
    made[0] = 1.0


@stage
def crashes(made: np.ndarray) -> None:
    os._exit(3)


@stage
def slow() -> int:
    time.sleep(0.3)
    return 1


@stage
def pair(made: np.ndarray, slow: int) -> float:
    return float(made.sum()) + slow


@stage
def in_place() -> np.ndarray:
    out = dagrun.empty((N,), np.float64)
    out.fill(2.0)
    return out


@stage
def in_place_sum(in_place: np.ndarray) -> float:
    return float(in_place.sum())


@stage
def table() -> pa.Table:
    return pa.table({"x": np.arange(N, dtype=np.float64)})


@stage
def table_rows(table: pa.Table) -> int:
    return table.num_rows


@stage
def rows() -> np.ndarray:
    return np.ones((16, N // 16))


@stage(map="rows")
def row_sums(rows: np.ndarray) -> float:
    return float(rows.sum())


@stage
def late() -> float:
    time.sleep(0.3)
    return 1.0


@stage
def joined(made: np.ndarray, late: float) -> dict:
    try:
        made.flags.writeable = True
        unlocked = True
    except ValueError:
        unlocked = False
    return {"sum": float(made.sum()) + late, "unlocked": unlocked}


_GLOBAL: list[np.ndarray] = []


@stage
def shared_global() -> np.ndarray:
    _GLOBAL.append(np.zeros(N))
    return _GLOBAL[-1]


@stage
def global_writable(shared_global: np.ndarray) -> bool:
    return bool(_GLOBAL and _GLOBAL[-1].flags.writeable)
