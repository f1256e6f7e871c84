"""The store's values: a run's configuration, handles and their payloads.

A segment's name is ``<prefix><kind>-<token>`` where the prefix is
``dagrun-<driver pid>-<driver start time>-<run id>-`` (the pid and the
process start time let ``clean_orphans`` tell a live driver from a dead one,
even after the pid was reused) and the token is 128 random bits, so other
local users can neither guess nor pre-create a name. ``kind`` is ``s`` for a
live segment and ``f`` for one parked in the free pool.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..settings import tuning


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in (b"Z", b"X"):  # a zombie maps nothing: it owns no segment any more
        return None
    return int(fields[19])


@dataclass(frozen=True)
class StoreConfig:
    """Where one run keeps its intermediates; frozen and picklable, travels to every worker.

    ``prefix`` starts every segment and spill file of the run; ``shm_dir`` is
    normally ``/dev/shm`` (tests point it elsewhere); ``spill_dir`` receives
    memory-mapped files when ``shm_dir`` is missing or full; ``pool_bytes``
    bounds the free segments kept for reuse (0 disables recycling);
    ``hold_min`` is the size from which a result with a single consumer may
    stay in its worker (negative: never).
    """

    run_id: str
    state_dir: str
    prefix: str = ""
    shm_dir: str = "/dev/shm"
    spill_dir: str = ""
    owner_pid: int = 0
    inline_max: int = field(default_factory=lambda: tuning().inline_max)
    pool_bytes: int = -1  # -1: a quarter of shm_dir's size, at most 256 MiB
    hold_min: int = field(default_factory=lambda: tuning().hold_min)

    def __post_init__(self) -> None:
        if not self.owner_pid:
            object.__setattr__(self, "owner_pid", os.getpid())
        if not self.prefix:
            start = process_start(self.owner_pid) or 0
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.run_id)
            object.__setattr__(self, "prefix", f"dagrun-{self.owner_pid}-{start}-{safe}-")
        if not self.spill_dir:
            object.__setattr__(self, "spill_dir", str(Path(self.state_dir) / "spill"))

    @classmethod
    def for_run(cls, run_id: str, state_dir: str | Path, **options: Any) -> StoreConfig:
        """The configuration of run ``run_id``, owned by the calling (driver) process."""
        return cls(run_id=run_id, state_dir=str(state_dir), **options)

    def directory(self, where: str) -> str:
        """The directory of a segment stored ``where`` (``shm`` or ``file``)."""
        return self.shm_dir if where == "shm" else self.spill_dir


class ByPosition:
    """Pickled as the class and its field values in order, as its constructor takes them.

    For the records sent with every task: a third smaller than pickling the
    attribute dict, and a third faster to load.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return type(self), tuple(self.__dict__.values())


@dataclass(frozen=True)
class Handle(ByPosition):
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


@dataclass(frozen=True)
class SegmentRef:
    """One segment: its name, where it lives (``shm`` or ``file``) and its size."""

    name: str
    where: str
    size: int


@dataclass(frozen=True)
class ArrayPayload:
    """A numpy array laid out in a segment (``strides`` may be non-contiguous)."""

    segment: SegmentRef
    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]
    strides: tuple[int, ...]


@dataclass(frozen=True)
class ArrowPayload:
    """An Arrow IPC file in a segment; ``kind`` says what to rebuild from it."""

    segment: SegmentRef
    size: int
    kind: str  # table | batch | pandas | series | polars
    extra: Any = None  # a pandas Series' name


@dataclass(frozen=True)
class BlobPayload:
    """Bytes too large to travel inside the handle: a pickle, or a bytes-like value itself."""

    segment: SegmentRef
    size: int
    kind: str = "pickle"  # pickle | bytes | bytearray | memoryview
    extra: Any = None  # a memoryview's (format, shape)


@dataclass(frozen=True)
class TreePayload:
    """A pickled skeleton whose large members are stored on their own."""

    skeleton: bytes | BlobPayload
    parts: tuple[Handle, ...]  # persistent ids index into this
    buffers: tuple[Handle, ...]  # out-of-band pickle buffers, as uint8 arrays


def segment_refs(handle: Handle) -> list[SegmentRef]:
    """Every segment a handle uses (a container's members included)."""
    payload = handle.payload
    if type(payload) is bytes:  # a small value travelling inside its handle
        return []
    if isinstance(payload, ArrayPayload | ArrowPayload | BlobPayload):
        return [payload.segment]
    if isinstance(payload, TreePayload):
        refs = []
        if isinstance(payload.skeleton, BlobPayload):
            refs.append(payload.skeleton.segment)
        for part in (*payload.parts, *payload.buffers):
            refs.extend(segment_refs(part))
        return refs
    return []
