"""The task body: the steps every task takes, wherever its executor put it.

    perform(spec, edges)                 one body for every executor's workers
      │ func = edges.function()          the stage (an engine unpickles it here)
      │ edges.inputs(kwargs)             store handles (local, inline) or engine values
      │ @worker_init values              edges.resources(), made once per worker
      │ with edges.running():            the stage, or each element/row chunk of a batch
      │ the cache target, when asked     a cache that cannot take it does not fail the task
      │ edges.deliver([value], rows)     into the store (a Handle) or back to the engine
      ▼ edges.close()                    inputs mapped for this task are unmapped
    (kept, ErrorInfo | None, TaskMetrics)

The edges (``TaskEdges``) are all that differ between executors: how inputs
are resolved, where the result goes. How output is captured is the caller's
(a local worker installs its capture once, inline and engine tasks wrap the
call in ``capture.captured``). ``execute`` is the body with the store's edges
(``StoreEdges``): the local pool's workers and the inline executor call it;
``engines.remote.run_task`` is the body with an engine's.

The body never raises for anything the stage does: an exception (even
``SystemExit``, or one whose ``__str__`` raises), an input that cannot be
read, a ``@worker_init`` resource that fails, a result that will not pickle
or store, all become an ``ErrorInfo``, with the user's traceback (frames of
dagrun itself trimmed) and the chained causes; describing the error never
fails either (``error_info``). Only inline (``in_worker`` false) does
``KeyboardInterrupt`` propagate: in a worker the driver owns Ctrl-C.

Metrics: wall and CPU time, the process's peak resident size during the
task (``max_rss_bytes``: the peak is reset when the task starts) and that
peak over its resident size at the start (``rss_growth_bytes``: what the
task itself needed), read from /proc (``metrics``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from .. import store
from ..pipeline.resources import Resources
from ..store import Decoded, Handle, StoreConfig
from ..values import concatenate, row_chunk, stack_batch
from ..values import rows as _rows
from .base import Batched, ErrorInfo, Output, Pending, TaskMetrics, TaskOutcome, TaskSpec
from .failure import error_info
from .metrics import TaskClock


class TaskEdges(Protocol):
    """Where one task's stage, inputs and resources come from, and where its result goes.

    One object per task; ``perform`` calls the methods in the order they are
    listed (``resources`` once per ``@worker_init`` parameter, the others at
    most once), and ``close`` always, after an error too.
    """

    input_bytes: int  # bytes of the inputs resolved so far (a failed read leaves the partial sum)

    def function(self) -> Callable[..., Any]:
        """The stage's function."""
        ...

    def inputs(self, kwargs: dict[str, Any]) -> None:
        """Put the stage's inputs into ``kwargs`` by parameter, read-only."""
        ...

    def resources(self) -> Resources | None:
        """This worker's ``@worker_init`` values (None: the executor offers none)."""
        ...

    def running(self) -> AbstractContextManager[Any]:
        """The context the stage runs in."""
        ...

    def deliver(self, box: list[Any], rows: int | None) -> tuple[Any, int, str]:
        """Send the result on: ``box`` holds the only reference left (take it with ``pop``).

        ``rows`` is the joined row count of a ``concat`` batch, else None.
        Returns what the caller keeps (a handle, or the value itself), its size
        in bytes and its transport.
        """
        ...

    def close(self) -> None:
        """Free what was opened for this task (inputs mapped from the store)."""
        ...


def perform(
    spec: TaskSpec,
    edges: TaskEdges,
    *,
    in_worker: bool = True,
    worker: str | None = None,
    host: str | None = None,
) -> tuple[Any, ErrorInfo | None, TaskMetrics]:
    """Run one task through ``edges``: (what ``deliver`` kept or None, the error, metrics).

    Never raises for what the stage does; ``KeyboardInterrupt`` is the stage's
    error only ``in_worker`` (see the module docstring). ``worker`` and
    ``host`` name where it ran, in its metrics (cluster engines).
    """
    clock = TaskClock()
    kept = error = None
    output_bytes = 0
    transport = ""
    items = None
    stored = None
    try:
        func = edges.function()
        kwargs = dict(spec.params)
        edges.inputs(kwargs)
        for pname, rname in spec.resources.items():
            kwargs[pname] = _resource(edges.resources(), rname)
        with edges.running():
            if spec.items is None:
                value = func(**kwargs)
            else:
                value = _run_batch(func, kwargs, spec)
                items = spec.items[1] - spec.items[0]
        if spec.cache is not None:
            made_in = time.perf_counter() - clock.wall0
            stored = _store_in_cache(spec.cache, value, spec.key.stage, made_in)
        # Consumers of a concatenated map see the joined rows: a later map splits by rows.
        rows = sum(map(_rows, value)) if spec.concat and spec.items is not None else None
        box, value = [value], None  # hand over this frame's reference
        kept, output_bytes, transport = edges.deliver(box, rows)
    except KeyboardInterrupt as exc:
        if not in_worker:
            raise
        error = error_info(exc, spec.key.stage)
    except BaseException as exc:  # noqa: BLE001 - a worker always reports back
        error = error_info(exc, spec.key.stage)
    finally:
        edges.close()
    metrics = clock.metrics(spec, edges.input_bytes, output_bytes, transport, items, worker, host,
                            stored)
    return kept, error, metrics


def execute(
    spec: TaskSpec,
    func: Callable[..., Any],
    config: StoreConfig,
    resources: Resources | None = None,
    *,
    in_worker: bool = False,
) -> TaskOutcome:
    """Run ``spec`` with ``func`` through the store and return its outcome; never raises
    for user errors.

    ``resources`` supplies the stage's ``@worker_init`` values. In a worker
    process (``in_worker``) even ``KeyboardInterrupt`` is the stage's error:
    the driver, not the worker, owns Ctrl-C; inline, it propagates.
    """
    handle, error, metrics = perform(spec, StoreEdges(spec, func, config, resources),
                                     in_worker=in_worker)
    return TaskOutcome(spec.key, spec.attempt, handle, error, metrics)


class StoreEdges:
    """The edges of a local worker or the inline executor: inputs and result go through
    the store (handles, read-only mappings), resources are this process's pool."""

    __slots__ = ("config", "func", "input_bytes", "opened", "pool", "spec")

    def __init__(self, spec: TaskSpec, func: Callable[..., Any], config: StoreConfig,
                 resources: Resources | None) -> None:
        self.spec = spec
        self.func = func
        self.config = config
        self.pool = resources
        self.opened: list[Decoded] = []
        self.input_bytes = 0

    def function(self) -> Callable[..., Any]:
        """The function it was given."""
        return self.func

    def inputs(self, kwargs: dict[str, Any]) -> None:
        """Each input handle mapped read-only (a batched one joined); closed by ``close``."""
        inputs = self.spec.inputs
        if not inputs:
            return
        stage = self.spec.key.stage
        for pname, output in inputs.items():
            if isinstance(output, Pending):
                raise _not_stored(output)
            kwargs[pname] = _load(output, self.config, stage, self.opened, pname)
            self.input_bytes += output.nbytes

    def resources(self) -> Resources | None:
        """The pool it was given."""
        return self.pool

    def running(self) -> AbstractContextManager[Any]:
        """``store.empty``/``zeros`` allocate in this run's store while the stage runs."""
        return store.active(self.config, self.spec.key.stage, keep=self.spec.keep)

    def deliver(self, box: list[Any], rows: int | None) -> tuple[Handle, int, str]:
        """The result encoded into the store; its handle travels back to the driver."""
        stage = self.spec.key.stage
        kind = type(box[0]).__name__
        try:
            handle = store.encode_result(box, self.config, stage, keep=self.spec.keep)
        except Exception as exc:
            exc.add_note(
                f"the result of stage {stage!r} (a {kind}) could not be stored "
                f"for the stages that consume it; return data that pickles (no locks, open "
                f"files, lambdas or generators)"
            )
            raise
        if rows is not None:
            handle = dataclasses.replace(handle, length=rows)
        return handle, handle.nbytes, handle.transport

    def close(self) -> None:
        """Unmap the inputs."""
        for decoded in self.opened:
            decoded.close()


def _store_in_cache(target: Any, value: Any, stage: str, made_in: float) -> bool:
    """Keep the result for later runs, unless writing it costs more than making it again
    (``made_in`` seconds); a cache that cannot take it does not fail the task."""
    try:
        return bool(target.write(value, made_in))
    except Exception as exc:  # noqa: BLE001 - the run goes on; the next one recomputes
        print(f"dagrun: the result of stage {stage!r} was not cached: {exc}", file=sys.stderr)
        return False


def _run_batch(func: Callable[..., Any], kwargs: dict[str, Any], spec: TaskSpec) -> list[Any]:
    """Run elements ``[start, stop)`` of the mapped input; one result per call, in order.

    A sequence or array is mapped element by element (``value[i]``: for a numpy
    array a zero-copy view along axis 0 of the shared input). A table (Arrow
    ``Table``/``RecordBatch``, pandas or polars ``DataFrame``) is mapped over
    row chunks: one call per batch, given rows ``[start, stop)`` as a zero-copy
    slice, so the batch's list holds one result.
    """
    assert spec.map_input is not None and spec.items is not None
    start, stop = spec.items
    value = kwargs[spec.map_input]
    rows = row_chunk(value, start - spec.first, stop - spec.first)
    if rows is not None:
        kwargs[spec.map_input] = rows
        try:
            return [func(**kwargs)]
        except Exception as exc:
            exc.add_note(f"while mapping rows {start}..{stop - 1} of {spec.map_input!r}")
            raise
    elements = value[start - spec.first : stop - spec.first]
    results = []
    for offset in range(stop - start):
        kwargs[spec.map_input] = elements[offset]
        try:
            results.append(func(**kwargs))
        except Exception as exc:
            exc.add_note(f"while mapping element {start + offset} of {spec.map_input!r}")
            raise
    # concat=True: the batch becomes one chunk of rows now (see ``values``).
    return [stack_batch(results)] if spec.concat else results


def _load(
    output: Output, config: StoreConfig, stage: str, opened: list[Decoded], pname: str
) -> Any:
    try:
        if isinstance(output, Handle):
            decoded = store.decode(output, config, stage)
            opened.append(decoded)
            return decoded.value
        if not isinstance(output, Batched):
            raise _not_stored(output)
        parts: list[Any] = []
        for handle in output.handles:
            if not isinstance(handle, Handle):
                raise _not_stored(handle)
            decoded = store.decode(handle, config, stage)
            opened.append(decoded)
            parts.extend(decoded.value)
        return concatenate(parts) if output.concat else parts
    except Exception as exc:
        exc.add_note(f"while reading input {pname!r} of stage {stage!r}")
        raise


def _not_stored(output: object) -> TypeError:
    # A chained input is resolved, and an engine's reference read by the engine's own
    # edges, before a task reaches the store's edges: this is a bug in an executor.
    return TypeError(f"{output!r} is not a value in this machine's store")


def _resource(resources: Resources | None, name: str) -> Any:
    if resources is None:
        msg = f"no worker resources were given to this executor (resource {name!r})"
        raise RuntimeError(msg)
    try:
        return resources.get(name)
    except Exception as exc:
        exc.add_note(f"while making worker resource {name!r} (its @worker_init function)")
        raise
