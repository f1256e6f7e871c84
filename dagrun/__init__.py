"""dagrun: run Python data pipelines as a DAG on every core.

    pipeline/: @stage functions ─▶ loader ─▶ Pipeline
        │
    graph/: build + validate (networkx DAG, every problem at once)
        │
    control/: runner loop ◀─▶ scheduler (pure state) ◀── planner (specs, retries) ── cache/
        │  TaskSpec                    ▲ TaskOutcome
        ▼                              │
    executors/: inline | local/ (supervised process pool) | engines/ (Dask, Ray)
        │  workers run executors.worker's task body (+ @worker_init resources)
        ▼
    store/: intermediates by handle (shared memory / Arrow IPC / held in a worker)
    events/: log ─▶ console + <state-dir>/runs/<run_id>/events.jsonl ─▶ report/, history
    cli/, jobs/: the command line, cron schedules and backfills over dagrun.run

Each folder imports only those below it (cli; jobs, report; control; events;
executors; cache; store; graph; pipeline; settings; units, values; errors),
as the import contracts in pyproject.toml check. Public names are imported
lazily, so ``dagrun --help`` does not pay for numpy, pyarrow or networkx.
"""

from __future__ import annotations

import sys
from importlib import import_module
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_loader
from types import ModuleType
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
from .pipeline.compose import bind, include  # noqa: E402
from .pipeline.params import Secret  # noqa: E402
from .pipeline.pipeline import Pipeline  # noqa: E402
from .pipeline.resources import worker_init  # noqa: E402
from .pipeline.stage import stage  # noqa: E402

_WHERE = {
    "run": "control.runner",
    "RunResult": "control.result",
    "empty": "store",
    "zeros": "store",
}


def __getattr__(name: str) -> Any:
    if f"{__name__}.{name}" in _MOVED:
        return import_module(f"{__name__}.{name}")
    module = _WHERE.get(name)
    if module is None:
        msg = f"module 'dagrun' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


# Modules documented under their earlier top-level names, imported from where they live now.
_MOVED = {"dagrun.summary": "dagrun.events.summary"}


class _MovedModules:
    """Makes ``import dagrun.summary`` return ``dagrun.events.summary`` itself."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> ModuleSpec | None:
        return spec_from_loader(fullname, self) if fullname in _MOVED else None

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        module = import_module(_MOVED[spec.name])
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The module ran under its own name already; the import machinery has just
        # given it the alias's spec, and it keeps its own.
        module.__spec__ = module.__spec__.loader_state


sys.meta_path.append(_MovedModules())


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .control.result import RunResult
    from .control.runner import run
    from .store import empty, zeros
