"""dagrun: run Python data pipelines as a DAG on every core.

    @stage functions ─▶ loader ─▶ Pipeline ─▶ graph (validate, networkx DAG)
                                                   │
             runner: Scheduler (pure state) ◀──────┘
                │  ready tasks            ▲ outcomes
                ▼                         │
             executor (inline | local process pool) ── workers: execute()
                │                                         │ (+ @worker_init resources per worker)
                │                                         │
             store: intermediates by handle (shm / Arrow / pickle), freed as the DAG goes
             events: structlog ─▶ console + <state-dir>/runs/<run_id>/events.jsonl

Public names are imported lazily, so ``dagrun --help`` does not pay for numpy,
pyarrow or networkx.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "DagrunError",
    "Interrupted",
    "LockHeldError",
    "ParameterError",
    "Pipeline",
    "PipelineLoadError",
    "RunResult",
    "Secret",
    "StageFailed",
    "StageTimeout",
    "StoreError",
    "StoreFull",
    "UsageError",
    "ValidationError",
    "WorkerCrashed",
    "bind",
    "empty",
    "include",
    "run",
    "stage",
    "worker_init",
    "zeros",
]

# Light modules are imported at once (and `stage` the function must shadow
# `stage` the submodule); heavy ones on first use.
from .errors import (  # noqa: E402
    DagrunError,
    Interrupted,
    LockHeldError,
    ParameterError,
    PipelineLoadError,
    StageFailed,
    StageTimeout,
    StoreError,
    StoreFull,
    UsageError,
    ValidationError,
    WorkerCrashed,
)
from .params import Secret  # noqa: E402
from .pipeline import Pipeline  # noqa: E402
from .resources import worker_init  # noqa: E402
from .stage import bind, include, stage  # noqa: E402

_WHERE = {
    "run": "runner",
    "RunResult": "result",
    "empty": "store",
    "zeros": "store",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        msg = f"module 'dagrun' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .result import RunResult
    from .runner import run
    from .store import empty, zeros
