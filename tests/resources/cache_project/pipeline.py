"""A pipeline whose keys the cache tests edit: helpers two deep, a constant, files, a logger."""

import logging
from pathlib import Path

import helpers
import numpy as np

from dagrun import stage

log = logging.getLogger("cache_project")
OFFSET = 10


@stage
def source(n: int = 4) -> np.ndarray:
    """Numbers scaled by a helper that calls another helper."""
    return np.arange(n) * helpers.scaled(1)


@stage(watch=["watched.txt"])
def notes(table: Path = Path("input.csv")) -> str:
    return table.read_text()


@stage
def combined(source: np.ndarray, notes: str) -> int:
    log.info("combining")
    return int(source.sum()) + len(notes) + OFFSET


@stage
def total(combined: int) -> int:
    return combined * 2


@stage(cache=False)
def clock() -> float:
    import time

    return time.time()


@stage
def stamped(clock: float) -> str:
    return f"at {clock}"
