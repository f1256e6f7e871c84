"""Values that stay in the worker that made them, for a consumer that runs there too.

    producer task (keep=True) ──▶ hold(value) ──▶ Handle("worker", token)
    driver: the only consumer is ready at once ──▶ sent to the same worker
    consumer task ──▶ take(token) ──▶ the same data (an array as a read-only view); no copy

Why: on a machine without huge pages for shared memory, putting 1 GiB into
fresh ``/dev/shm`` pages costs about half a second (a page fault and a
zeroed page per 4 KiB), while a consumer in the same process reads the
producer's array for free. The runner asks for this only when the result
has exactly one consumer, that consumer can start the moment the result
exists (so it loses no parallelism by running in the same worker), it has
no retries (a held value lives in one worker only) and the value is not a
requested output. Everything else takes the shared-memory path.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SegmentMissingError
from .config import Handle, StoreConfig

TRANSPORT = "worker"

_held: dict[str, Any] = {}


@dataclass(frozen=True)
class HeldPayload:
    """Which value, kept by which worker process."""

    token: str
    pid: int


def _after_fork() -> None:
    _held.clear()  # a child is never the process a held value was promised to


os.register_at_fork(after_in_child=_after_fork)


def holdable(value: Any, config: StoreConfig) -> bool:
    """Whether ``value`` is large enough, and of a kind that can be handed over read-only."""
    if config.hold_min < 0:
        return False
    if type(value) is np.ndarray:
        return not value.dtype.hasobject and value.nbytes >= config.hold_min
    module = type(value).__module__.split(".")[0]
    if module == "pyarrow" and type(value).__name__ in ("Table", "RecordBatch"):
        return value.nbytes >= config.hold_min
    return False


def hold(value: Any) -> Handle:
    """Keep ``value`` in this process; the handle names it for ``take``."""
    token = secrets.token_hex(8)
    _held[token] = value
    nbytes = int(value.nbytes)
    length = value.num_rows if hasattr(value, "num_rows") else (
        value.shape[0] if value.ndim else None
    )
    return Handle(TRANSPORT, nbytes, HeldPayload(token, os.getpid()), length)


def take(payload: HeldPayload, stage: str) -> Any:
    """The held value, removed from this process's keeping (its one consumer has it now)."""
    value = _held.pop(payload.token, None)
    if value is None:
        msg = (
            f"stage {stage!r}: its input was kept by worker process {payload.pid}, and this "
            f"is process {os.getpid()}; the value is no longer available"
        )
        raise SegmentMissingError(msg)
    if isinstance(value, np.ndarray):
        # The consumer's own read-only view: the producer's object is left as it was
        # (whether anything else holds it cannot be told for certain).
        value = value.view()
        value.flags.writeable = False
    return value
