"""What travels on a worker's pipe for each task, in both directions.

A task goes as the tuple of its ``TaskSpec`` fields (its key as a pair), an
outcome as ``(handle fields, error, metrics fields)``: the records are
rebuilt at the other end from the classes both ends import, so no message
names a class and a message loads in a third of the time a pickled record
takes (about 1.5 µs for an outcome, was 4). The driver knows which task an
outcome answers (a worker runs its tasks in order), so the outcome leaves
out the task's key and attempt. ``None`` asks the worker to stop.
"""

from __future__ import annotations

import pickle
from typing import Any

from ...store import Handle
from ..base import ErrorInfo, TaskKey, TaskMetrics, TaskOutcome, TaskSpec

STOP = pickle.dumps(None, pickle.HIGHEST_PROTOCOL)


def task_message(spec: TaskSpec) -> bytes:
    """``spec`` as a message (raises whatever pickling a parameter value raises)."""
    fields = list(spec.__dict__.values())
    fields[0] = tuple(spec.key)
    return pickle.dumps(fields, pickle.HIGHEST_PROTOCOL)


def read_task(data: bytes) -> TaskSpec | None:
    """The task a message holds; None when it asks the worker to stop."""
    fields = pickle.loads(data)
    if fields is None:
        return None
    fields[0] = TaskKey(*fields[0])
    return TaskSpec(*fields)


def outcome_message(outcome: TaskOutcome) -> bytes:
    """What a worker sends back for the task it ran (raises if the error does not pickle)."""
    handle = outcome.handle
    packed = tuple(handle.__dict__.values()) if type(handle) is Handle else handle
    return pickle.dumps((packed, outcome.error, tuple(outcome.metrics)), pickle.HIGHEST_PROTOCOL)


def error_message(info: ErrorInfo) -> bytes:
    """The answer of a worker that could not even read its task."""
    return pickle.dumps(info, pickle.HIGHEST_PROTOCOL)


def read_outcome(data: bytes, spec: TaskSpec, pid: int) -> TaskOutcome:
    """The outcome of ``spec`` a message holds; one that cannot be read is an error."""
    try:
        message: Any = pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - an outcome that fails to unpickle
        message = ErrorInfo("raised", type(exc).__name__, f"the result could not be read: {exc}")
    if isinstance(message, ErrorInfo):
        return TaskOutcome(spec.key, spec.attempt, None, message, TaskMetrics(pid))
    packed, error, metrics = message
    handle = _handle(packed) if type(packed) is tuple else packed
    return TaskOutcome(spec.key, spec.attempt, handle, error, TaskMetrics._make(metrics))


if tuple(Handle.__dataclass_fields__) != ("transport", "nbytes", "payload", "length"):
    raise ImportError("wire._handle fills Handle's fields by name: list them there as Handle has")


def _handle(fields: tuple[Any, ...]) -> Handle:
    """``Handle(*fields)`` without the frozen dataclass's setattr per field (one per task)."""
    handle = object.__new__(Handle)
    state = handle.__dict__
    state["transport"], state["nbytes"], state["payload"], state["length"] = fields
    return handle
