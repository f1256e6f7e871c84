"""A pipeline that records which stages computed, for the incremental-run tests."""

import os

import numpy as np

from dagrun import stage


def _trace(trace: str, name: str) -> None:
    if trace:
        with open(trace, "a") as f:
            f.write(name + "\n")


@stage
def load(trace: str = "", size: int = 1000) -> np.ndarray:
    _trace(trace, "load")
    return np.arange(size, dtype=np.float64)


@stage
def scaled(load: np.ndarray, trace: str = "", factor: float = 2.0) -> np.ndarray:
    _trace(trace, "scaled")
    return load * factor


@stage(map="load", batch_size=250, concat=True)
def squares(load: float, trace: str = "") -> float:
    _trace(trace, "squares")
    return load * load


@stage
def fragile(scaled: np.ndarray, trace: str = "", fail_flag: str = "") -> float:
    _trace(trace, "fragile")
    if fail_flag and os.path.exists(fail_flag):
        raise RuntimeError("asked to fail")
    return float(scaled.sum())


@stage
def report(fragile: float, squares: np.ndarray, trace: str = "") -> float:
    _trace(trace, "report")
    return fragile + float(squares.sum())
