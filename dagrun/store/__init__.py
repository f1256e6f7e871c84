"""Intermediates: how a stage's result travels to the processes that consume it.

Interface used by the rest of dagrun (keep these names and signatures):

    StoreConfig   frozen, picklable: where a run's segments live (run-scoped prefix)
    Handle        frozen, picklable, small: describes one stored value by name
    encode(value, config, stage) -> Handle            worker side: store a result
    decode(handle, config, stage) -> Decoded           worker/parent side: map read-only
    Store(config)                                     parent side: owns unlinking
        .release(handle)   free one value once its last consumer has finished
        .close()           free everything of the run, leftovers of crashed workers too
    active(config, stage)  context manager: lets ``dagrun.empty`` allocate in the store
    empty / zeros          allocate an output array directly in shared memory
    clean_orphans(state_dir) -> list[str]   remove segments of drivers that are gone

This module is a minimal implementation (everything pickled inline); the
transports of SPEC section 4 replace it behind the same interface.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class StoreConfig:
    """Where one run keeps its intermediates; travels to every worker."""

    run_id: str
    state_dir: str
    prefix: str = ""

    @classmethod
    def for_run(cls, run_id: str, state_dir: str | Path) -> StoreConfig:
        return cls(run_id=run_id, state_dir=str(state_dir), prefix=f"dagrun-{run_id}-")


@dataclass(frozen=True)
class Handle:
    """A stored value, described by name (and for small values, by content)."""

    transport: str
    nbytes: int
    payload: Any = None
    length: int | None = None  # len() of the value along axis 0, when it has one


@dataclass
class Decoded:
    """A value read back from the store, with what must be closed after use."""

    value: Any
    close: Callable[[], None] = field(default=lambda: None)


def _length_of(value: Any) -> int | None:
    if isinstance(value, np.ndarray):
        return len(value) if value.ndim else None
    try:
        return len(value)
    except TypeError:
        return None


def encode(value: Any, config: StoreConfig, stage: str) -> Handle:
    """Store ``value`` (a stage's result) and return its handle."""
    data = pickle.dumps(value, protocol=5)
    return Handle(transport="pickle", nbytes=len(data), payload=data, length=_length_of(value))


def decode(handle: Handle, config: StoreConfig, stage: str) -> Decoded:
    """Read a stored value back; arrays come back read-only."""
    value = pickle.loads(handle.payload)
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    return Decoded(value)


class Store:
    """The parent's side of a run's intermediates: it alone frees them."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config

    def release(self, handle: Handle) -> None:
        """Free one value; safe to call twice."""

    def close(self) -> None:
        """Free every value of the run, including leftovers of crashed workers."""


_active: list[tuple[StoreConfig, str]] = []


@contextlib.contextmanager
def active(config: StoreConfig, stage: str) -> Iterator[None]:
    """Make ``empty``/``zeros`` allocate in this run's store while a stage runs."""
    _active.append((config, stage))
    try:
        yield
    finally:
        _active.pop()


def empty(shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
    """An uninitialised array that a stage can return without a copy."""
    return np.empty(shape, dtype=dtype, order=order)


def zeros(shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
    """A zero-filled array that a stage can return without a copy."""
    return np.zeros(shape, dtype=dtype, order=order)


def clean_orphans(state_dir: str | Path | None = None) -> list[str]:
    """Remove segments whose driver process is gone; return what was removed."""
    return []
