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
task body never raises for what the stage does (``worker.error_info`` keeps
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
import io
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cloudpickle

from ..resources import Resources
from ..store.codec import _length_of
from .base import (
    ErrorInfo,
    TaskMetrics,
    TaskSpec,
)
from .worker import _peak_rss, _reset_peak_rss, _rows, _run_batch, concatenate, error_info

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Call:
    """One engine task: the stage as a blob, its spec without inputs, how the arguments lie."""

    run_id: str
    spec: TaskSpec  # inputs emptied: they arrive as the task's positional arguments
    func: bytes  # cloudpickle of the stage function
    resources: tuple[tuple[str, bytes], ...]  # (@worker_init name, cloudpickle of its function)
    layout: tuple[tuple[str, int, bool, bool], ...]  # (parameter, arguments, batched, concat)
    unbox: bool  # arguments are (value, Report) pairs (Dask) rather than values (Ray)
    where: Callable[[], str]  # the engine's name for the worker running this


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


def run_task(call: Call, *args: Any) -> tuple[Any, Report]:
    """Run one stage (or batch) on an engine worker; never raises for what the stage does."""
    spec = call.spec
    stage = spec.key.stage
    started_at = time.time()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    _reset_peak_rss()
    rss0 = _rss_now()
    lines: list[tuple[str, str, str]] = []
    value: Any = None
    error = None
    nbytes = input_bytes = 0
    length = items = None
    try:
        with _captured(lines):
            func = _function(call)
            kwargs = dict(spec.params)
            position = 0
            for param, count, batched, concat in call.layout:
                parts = args[position : position + count]
                position += count
                if call.unbox:
                    parts = tuple(part[0] for part in parts)
                input_bytes += sum(nbytes_of(part) for part in parts)
                if batched:
                    flat = [x for part in parts for x in part]
                    kwargs[param] = read_only(concatenate(flat) if concat else flat)
                else:
                    kwargs[param] = read_only(parts[0])
            for param, name in spec.resources.items():
                kwargs[param] = _resource(call, name)
            if spec.items is None:
                value = func(**kwargs)
            else:
                value = _run_batch(func, kwargs, spec)
                items = spec.items[1] - spec.items[0]
            nbytes = nbytes_of(value, pickled=True, stage=stage)
            if spec.concat and spec.items is not None:
                length = sum(map(_rows, value))
            else:
                length = _length_of(value)
    except BaseException as exc:  # noqa: BLE001 - the worker always reports back
        value = None
        error = error_info(exc, stage)
    worker = call.where()
    metrics = TaskMetrics(
        worker_pid=os.getpid(),
        wall_s=time.perf_counter() - wall0,
        cpu_s=time.process_time() - cpu0,
        max_rss_bytes=_peak_rss(),
        rss_growth_bytes=max(0, _peak_rss() - rss0),
        queue_wait_s=max(0.0, started_at - spec.submitted_at),
        input_bytes=input_bytes,
        output_bytes=nbytes,
        started_at=started_at,
        items=items,
        worker=worker,
        host=socket.gethostname(),
    )
    return value, Report(nbytes, length, metrics, tuple(lines), error)


def _function(call: Call) -> Callable[..., Any]:
    key = (call.run_id, call.spec.key.stage)
    func = _funcs.get(key)
    if func is None:
        func = _funcs[key] = cloudpickle.loads(call.func)
    return func


def _resource(call: Call, name: str) -> Any:
    pool = _pools.get(call.run_id)
    if pool is None:
        pool = _pools[call.run_id] = Resources({n: cloudpickle.loads(b) for n, b in call.resources})
    try:
        return pool.get(name)
    except Exception as exc:
        exc.add_note(f"while making worker resource {name!r} (its @worker_init function)")
        raise


def close_resources(run_id: str) -> None:
    """Tear down one run's ``@worker_init`` values and functions in this worker process."""
    pool = _pools.pop(run_id, None)
    if pool is not None:
        pool.close()
    for key in [k for k in _funcs if k[0] == run_id]:
        del _funcs[key]


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


class _Lines(io.TextIOBase):
    """A text stream that hands each complete line to ``lines`` as (stream, level, text)."""

    def __init__(self, lines: list[tuple[str, str, str]], stream: str, level: str) -> None:
        self._lines, self._stream, self._level, self._part = lines, stream, level, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *done, self._part = (self._part + text).split("\n")
        self._lines.extend((self._stream, self._level, line) for line in done)
        return len(text)

    def flush_rest(self) -> None:
        if self._part:
            self._lines.append((self._stream, self._level, self._part))
            self._part = ""


class _Handler(logging.Handler):
    """Collects the records this task's thread logs (the engine's own threads log too)."""

    def __init__(self, lines: list[tuple[str, str, str]]) -> None:
        super().__init__(logging.DEBUG)
        self._lines, self._thread = lines, threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            self._lines.append(("logging", record.levelname.lower(), record.getMessage()))


@contextlib.contextmanager
def _captured(lines: list[tuple[str, str, str]]) -> Iterator[None]:
    """Redirect stdout, stderr and root logging (at INFO or below) into ``lines``."""
    out, err = _Lines(lines, "stdout", "info"), _Lines(lines, "stderr", "warning")
    root = logging.getLogger()
    handler, level = _Handler(lines), root.level
    root.addHandler(handler)
    root.setLevel(min(level or logging.WARNING, logging.INFO))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        out.flush_rest()
        err.flush_rest()


def _rss_now() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def versions() -> dict[str, str]:
    """The versions that must agree between the driver and every engine worker."""
    import numpy
    import pyarrow

    from .. import __version__

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return {"python": python, "dagrun": __version__, "numpy": numpy.__version__,
            "pyarrow": pyarrow.__version__}
