"""Stages the cache must follow through a wrapper, into libraries, and through a glob."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import timing

from dagrun import stage


def _shout(name: str) -> str:
    return name.upper()


@stage
@timing.timed
def names() -> list[str]:
    return [_shout("dave")]


@stage
def summed(names: list[str]) -> float:
    return float(np.add(1.0, len(names))) + pc.sum(pa.array([1, 2])).as_py()


@stage(watch=["feed/*.txt"])
def feed() -> int:
    return 1
