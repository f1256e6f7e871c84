"""The engine-side task body that the Dask and Ray executors share (``engine`` is the driver's).

    driver: EngineExecutor.submit(spec) ─▶ engine task run_task(call, *upstream values)
                                              │ import / unpickle the stage (cached per process)
                                              │ inputs read-only, mapped input sliced by items
                                              │ stdout / stderr / logging captured as lines
            holder (the value, stays on the   ▼
            engine) + meta (a small Report) ◀─ (value, Report)
    wait(): a done-callback of ``meta`` writes a byte to our pipe; select() on that
            pipe and the runner's wake fd; then Started, TaskLog..., TaskOutcome

One engine task per stage (or batch). Upstream values are passed as
top-level arguments, so the engine moves them worker to worker and the
driver only ever receives ``Report`` records (sizes, length, metrics, log
lines, an ``ErrorInfo``) and, through ``read``, the requested outputs. The
task body is ``worker.perform``, the one local workers run too, given this
module's edges (inputs from the task's arguments, the result returned to the
engine); it never raises for what the stage does (``worker.error_info`` keeps
the user's traceback); an engine error on ``meta`` therefore means the
engine lost the task: a dead worker is ``crashed``. Retries, timeouts and
Ctrl-C are dagrun's: the engines run every task once (Dask
``allowed-failures`` 0, Ray ``max_retries`` 0); a task past ``spec.timeout``
is reported as timed out, then cancelled on the engine.

Stage functions travel as cloudpickle blobs made once per stage; the
pipeline's module (and helper modules beside it) are pickled by value, so a
worker that does not share the driver's filesystem still runs the pipeline.
A worker process keeps per run: the unpickled functions and one
``Resources`` pool (``@worker_init`` values made once per process).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

from ... import store
from ...pipeline.resources import Resources
from ...settings import Tuning, put_in_force
from ...values import concatenate
from ..base import ErrorInfo, TaskMetrics, TaskSpec
from ..capture import captured
from ..worker import perform


@dataclass(frozen=True)
class Blob:
    """A function pickled twice: by reference (tracebacks show the user's file and line,
    where the worker can import the pipeline) and by value (where it cannot)."""

    by_reference: bytes
    by_value: bytes

    @classmethod
    def of(cls, func: Callable[..., Any]) -> Blob:
        try:
            ref = pickle.dumps(func)
        except Exception:  # noqa: BLE001 - not importable by name: by value only
            ref = b""
        return cls(ref, cloudpickle.dumps(func))


@dataclass(frozen=True)
class Call:
    """One engine task: the stage as a blob, its spec without inputs, how the arguments lie."""

    run_id: str
    spec: TaskSpec  # inputs emptied: they arrive as the task's positional arguments
    func: Blob  # the stage function
    resources: tuple[tuple[str, Blob], ...]  # (@worker_init name, its function)
    layout: tuple[tuple[str, int, bool, bool], ...]  # (parameter, arguments, batched, concat)
    unbox: bool  # arguments are (value, Report) pairs (Dask) rather than values (Ray)
    where: Callable[[], str]  # the engine's name for the worker running this
    sources: tuple[Any, ...] = ()  # ModuleSource of the pipeline: imported where it exists
    key: str = ""  # the engine's key of this task
    topic: str | None = None  # Dask: the report is also published here (no fetch needed)
    numbers: Tuning | None = None  # the run's tuning, in force while the task runs


@dataclass(frozen=True)
class Report:
    """What comes back to the driver for one task; the value itself stays on the engine."""

    nbytes: int
    length: int | None
    metrics: TaskMetrics
    logs: tuple[tuple[str, str, str], ...]  # (stream, level, message)
    error: ErrorInfo | None = None


# -- the engine side ------------------------------------------------------
_funcs: dict[tuple[str, str], Callable[..., Any]] = {}  # (run id, stage) -> function
_pools: dict[str, Resources] = {}  # run id -> this process's @worker_init values
_imported: dict[str, bool] = {}  # run id -> whether the pipeline imported here


def run_task(call: Call, *args: Any) -> tuple[Any, Report]:
    """Run one stage (or batch) on an engine worker; never raises for what the stage does.

    The task body is ``worker.perform``, the one every executor's workers run,
    with this engine's edges (``_EngineEdges``); what the stage prints or logs
    comes back as the report's lines.
    """
    if call.unbox and any(isinstance(a, tuple) and isinstance(a[1], Report)
                          and a[1].error is not None for a in args):
        # Chained behind a task that failed: it does not run (the driver drops this report).
        skipped = ErrorInfo("skipped", "Skipped", "an input's task failed")
        return None, Report(0, None, TaskMetrics(worker_pid=os.getpid()), (), skipped)
    lines: list[tuple[str, str, str]] = []
    edges = _EngineEdges(call, args)
    # An engine worker outlives the run and may serve others: the run's numbers hold for
    # this task alone.
    outer = put_in_force(call.numbers) if call.numbers is not None else None
    try:
        with captured(lambda *line: lines.append(line)):
            value, error, metrics = perform(call.spec, edges, worker=call.where(),
                                            host=socket.gethostname())
    finally:
        if outer is not None:
            put_in_force(outer)
    report = Report(metrics.output_bytes, edges.length, metrics, tuple(lines), error)
    if call.topic is not None:
        _publish(call.topic, call.key, report)
    return value, report


class _EngineEdges:
    """An engine task's edges: inputs are its arguments (values the engine moved here, or
    cache entries this worker maps), the result is returned to the engine, which keeps it."""

    def __init__(self, call: Call, args: tuple[Any, ...]) -> None:
        self.call = call
        self.args = args
        self.input_bytes = 0
        self.length: int | None = None  # of the delivered result

    def function(self) -> Callable[..., Any]:
        """The stage, unpickled once per run in this process."""
        return _function(self.call)

    def inputs(self, kwargs: dict[str, Any]) -> None:
        """The arguments laid out by parameter (batched ones joined), read-only."""
        call, args = self.call, self.args
        position = 0
        for param, count, batched, concat in call.layout:
            parts = args[position : position + count]
            position += count
            if call.unbox:
                parts = tuple(part[0] for part in parts)
            parts = tuple(_from_cache(part) for part in parts)
            self.input_bytes += sum(nbytes_of(part) for part in parts)
            if batched:
                flat = [x for part in parts for x in part]
                kwargs[param] = read_only(concatenate(flat) if concat else flat)
            else:
                kwargs[param] = read_only(parts[0])

    def resources(self) -> Resources:
        """This process's ``@worker_init`` values of the run, made on first use."""
        pool = _pools.get(self.call.run_id)
        if pool is None:
            pool = _pools[self.call.run_id] = Resources(
                {n: _loads(b, self.call) for n, b in self.call.resources})
        return pool

    def running(self) -> contextlib.nullcontext[None]:
        """Nothing around the stage: the engine holds the result, not dagrun's store."""
        return contextlib.nullcontext()

    def deliver(self, box: list[Any], rows: int | None) -> tuple[Any, int, str]:
        """The value itself, for the engine to keep; its pickled size (which must succeed)."""
        value = box.pop()
        nbytes = nbytes_of(value, pickled=True, stage=self.call.spec.key.stage)
        self.length = rows if rows is not None else store.length_of(value)
        return value, nbytes, ""

    def close(self) -> None:
        """Nothing to free: the inputs belong to the engine."""


def _publish(topic: str, key: str, report: Report) -> None:
    """Send the report to the driver through the Dask scheduler's event stream.

    The driver learns of the task's end and reads its report in one message,
    instead of a round trip to fetch it; a task that dies never publishes,
    and its future's error tells the driver instead.
    """
    from distributed import get_worker

    get_worker().log_event(topic, [key, pickle.dumps(report)])


def _function(call: Call) -> Callable[..., Any]:
    key = (call.run_id, call.spec.key.stage)
    func = _funcs.get(key)
    if func is None:
        func = _funcs[key] = _loads(call.func, call)
    return func


def _loads(blob: Blob, call: Call) -> Callable[..., Any]:
    """The function by reference when this worker can import the pipeline, else by value."""
    if call.run_id not in _imported:
        _imported[call.run_id] = _import(call.sources)
    if blob.by_reference and _imported[call.run_id]:
        with contextlib.suppress(Exception):
            return pickle.loads(blob.by_reference)
    return cloudpickle.loads(blob.by_value)


def _import(sources: tuple[Any, ...]) -> bool:
    from ...pipeline.loader import import_source

    try:
        for source in sources:
            if source.path is not None and not os.path.exists(source.path):
                return False
            import_source(source)
    except Exception:  # noqa: BLE001 - not importable here: the functions come by value
        return False
    return True


def close_resources(run_id: str) -> None:
    """Tear down one run's ``@worker_init`` values and functions in this worker process."""
    _imported.pop(run_id, None)
    pool = _pools.pop(run_id, None)
    if pool is not None:
        pool.close()
    for key in [k for k in _funcs if k[0] == run_id]:
        del _funcs[key]


@dataclass(frozen=True)
class CacheInput:
    """An input the worker reads from the cache itself: the file is mapped, not shipped."""

    payload: Any


def _from_cache(part: Any) -> Any:
    if isinstance(part, CacheInput):
        return part.payload.load()
    return part


def read_only(value: Any) -> Any:
    """``value`` as a read-only view when it is a numpy array (or a list/tuple of them)."""
    if type(value).__module__ == "numpy" and hasattr(value, "setflags"):
        view = value.view()
        view.setflags(write=False)
        return view
    if isinstance(value, list | tuple) and value and type(value[0]).__module__ == "numpy":
        return type(value)(read_only(v) for v in value)
    return value


def nbytes_of(value: Any, *, pickled: bool = False, stage: str = "") -> int:
    """Bytes a value occupies; with ``pickled``, others are pickled (which must succeed)."""
    module = type(value).__module__.split(".")[0]
    if module in ("numpy", "pyarrow") and hasattr(value, "nbytes"):
        return int(value.nbytes)
    if module == "pandas" and hasattr(value, "memory_usage"):
        usage = value.memory_usage(index=True)
        return int(usage.sum() if hasattr(usage, "sum") else usage)
    if module == "polars" and hasattr(value, "estimated_size"):
        return int(value.estimated_size())
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, list) and value and type(value[0]).__module__.split(".")[0] in (
        "numpy", "pyarrow"
    ):
        return sum(nbytes_of(v) for v in value)
    if not pickled:
        return sys.getsizeof(value)
    try:
        return len(cloudpickle.dumps(value, protocol=5))
    except Exception as exc:
        exc.add_note(
            f"the result of stage {stage!r} (a {type(value).__name__}) could not be pickled "
            f"for the stages that consume it; return data that pickles (no locks, open "
            f"files, lambdas or generators)"
        )
        raise


def versions() -> dict[str, str]:
    """The versions that must agree between the driver and every engine worker."""
    import numpy
    import pyarrow

    from ... import __version__

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return {"python": python, "dagrun": __version__, "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__}
