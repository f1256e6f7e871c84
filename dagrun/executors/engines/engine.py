"""The driver's half of the Dask and Ray executors: bookkeeping both engines share.

State, all keyed by the task's engine key (``task_key``: run id, stage,
batch, attempt; also the ``RemoteRef.key`` of its result):

    _running   key -> _Task(key, spec, holder, meta, deadline): submitted, no outcome yet, in
               submission order; up to two per worker (one waits on the engine), the
               oldest ``workers`` of them count as running (their timeout clock runs)
    _values    key -> holder: results the runner still references (``release`` drops one)
    _done      keys whose ``meta`` completed, filled by the engine's callback thread
    _pipe      the callback writes a byte here, so ``wait`` blocks in one ``select`` on
               this pipe and the runner's wake fd, bounded by the nearest task deadline

An engine subclass supplies ``_launch`` (submit ``remote.run_task``, giving the
value's holder and the ``Report``'s ``meta``), ``_when_done``, ``_reports``,
``_crash``, ``_cancel``, ``_fetch``, ``_drop``, ``_put`` and ``_stop``. A task
past its ``timeout`` is reported as a ``StageTimeout`` and then cancelled;
what a cancel can stop is the engine's (see its module).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import select
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ... import store
from ...errors import StoreError
from ...settings import tuning
from ...store import Decoded
from ..base import (
    Batched,
    Capabilities,
    ErrorInfo,
    Event,
    ExecutorContext,
    Pending,
    Ref,
    RemoteRef,
    Started,
    TaskLog,
    TaskMetrics,
    TaskOutcome,
    TaskSpec,
)
from ..failure import error_info
from .checks import pickle_by_value
from .remote import Blob, CacheInput, Call, Report


@dataclass
class _Task:
    key: str  # the engine's key
    spec: TaskSpec
    holder: Any  # the engine's object behind the value
    meta: Any  # the engine's object behind the Report
    deadline: float | None


def task_key(run_id: str, spec: TaskSpec) -> str:
    """The engine key of one attempt: the same task, attempt and run give the same key."""
    batch = "" if spec.key.batch is None else f"-{spec.key.batch}"
    return f"dagrun-{run_id}-{spec.key.stage}{batch}-{spec.attempt}"


class EngineExecutor(Capabilities):
    """Submits ``run_task`` to an engine and turns completions into the runner's events."""

    name = "engine"
    unbox = False  # whether task arguments arrive as (value, Report) pairs
    cancel_note = "it was cancelled on the engine"

    def __init__(self, context: ExecutorContext) -> None:
        self.context = context
        self.run_id = context.config.run_id
        self.config = context.config
        self.workers = context.workers
        self.numbers = context.settings or tuning()  # the run's, sent with every task
        self._prefetch = self.numbers.engine_prefetch
        pickle_by_value(context.sources)
        self._blobs: dict[str, Blob] = {}
        self._resources = {n: Blob.of(f) for n, f in context.resources.items()}
        self._running: dict[str, _Task] = {}
        self._values: dict[str, Any] = {}
        self._launched: set[str] = set()  # every key handed to the engine this run
        self._fetched: dict[str, Any] = {}  # requested outputs brought over by ``prefetch``
        self._done: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._pipe = os.pipe()
        for fd in self._pipe:
            os.set_blocking(fd, False)
        self._events: list[Event] = []
        self._closed = False

    # -- protocol --------------------------------------------------------
    topic: str | None = None  # where workers publish reports, on engines that can
    chains = False  # may hand a task over before its input exists (see ``chain``)

    def free_slots(self) -> int:
        return max(0, self.workers * self._prefetch - len(self._running))

    def chain(self, spec: TaskSpec) -> bool:
        """Hand ``spec`` over now, its pending input the future of the task before it.

        Only engines that pass a failed task's report along (``chains``): the
        chained task then does not run, and nothing of it is reported.
        """
        if not self.chains:
            return False
        # The latest launch: an earlier one of the same task may still await its skipped report.
        before = next((t for t in reversed(self._running.values()) if t.spec.key == spec.after),
                      None)
        if before is None:
            return False
        try:
            self._launch_spec(spec, before.holder)
        except Exception:  # noqa: BLE001 - planned again, the ordinary way, when it is ready
            return False
        return True

    def submit(self, spec: TaskSpec) -> int | str | None:
        try:
            self._launch_spec(spec, None)
        except Exception as exc:  # noqa: BLE001 - e.g. a parameter that does not pickle
            exc.add_note(f"while handing stage {spec.key.stage!r} to {self.name}")
            info = error_info(exc, spec.key.stage)
            self._events.append(TaskOutcome(spec.key, spec.attempt, None, info,
                                            TaskMetrics(os.getpid())))
            return os.getpid()
        return None

    def _launch_spec(self, spec: TaskSpec, pending: Any) -> None:
        key = task_key(self.run_id, spec)
        if pending is not None or key in self._launched:
            # A link chained again after its input's retry is a new task for the engine:
            # the old key may still name the first chaining's dropped result.
            key = f"{key}-{len(self._launched)}"
        self._launched.add(key)
        stage = spec.key.stage
        args: list[Any] = []
        layout = []
        for param, output in spec.inputs.items():
            if isinstance(output, Pending):
                args.append(pending)
                layout.append((param, 1, False, False))
                continue
            refs = output.handles if isinstance(output, Batched) else (output,)
            args.extend(self._holder(ref, stage) for ref in refs)
            layout.append((param, len(refs), isinstance(output, Batched),
                           isinstance(output, Batched) and output.concat))
        if stage not in self._blobs:
            self._blobs[stage] = Blob.of(self.context.funcs[stage])
        wanted = set(spec.resources.values())
        call = Call(self.run_id, replace(spec, inputs={}), self._blobs[stage],
                    tuple((n, b) for n, b in self._resources.items() if n in wanted),
                    tuple(layout), self.unbox, self._where(), tuple(self.context.sources),
                    key, self.topic, self.numbers)
        holder, meta = self._launch(key, call, args)
        self._running[key] = _Task(key, spec, holder, meta, None)
        self._start_clocks()
        self._when_done(meta, lambda *_: self._notify(key))

    def wait(self, timeout: float | None, wake: int | None = None) -> list[Event]:
        if not self._events and self._done.empty():
            self._block(timeout, wake)
        self._collect()
        self._start_clocks()
        self._expire()
        events, self._events = self._events, []
        return events

    def release(self, ref: Ref) -> None:
        holder = self._values.pop(ref.key, None) if isinstance(ref, RemoteRef) else None
        if holder is not None:
            self._drop(holder)

    def read(self, ref: Any, stage: str) -> Decoded:
        if not isinstance(ref, RemoteRef):
            return store.decode(ref, self.context.config, stage)
        if ref.key in self._fetched:
            return Decoded(self._fetched.pop(ref.key))
        if ref.key not in self._values:
            msg = f"the result of stage {stage!r} is no longer held by {self.name}"
            raise StoreError(msg)
        return Decoded(self._fetch(self._values[ref.key]))

    def prefetch(self, refs: Sequence[Ref]) -> None:
        """Bring several requested outputs over in one round trip (``read`` then has them)."""
        keys = [r.key for r in refs if isinstance(r, RemoteRef) and r.key in self._values]
        if keys:
            values = self._fetch_many([self._values[k] for k in keys])
            self._fetched.update(zip(keys, values, strict=True))

    def notice(self, ref: Any) -> str | None:
        return None  # the engine keeps values; dagrun's shared memory is not used

    def shares_cache(self, directory: str) -> bool:
        """Whether every worker sees ``directory`` as this process does (a marker file)."""
        import secrets

        os.makedirs(directory, mode=0o700, exist_ok=True)
        marker = os.path.join(directory, f".seen-{secrets.token_hex(8)}")
        with open(marker, "w"):
            pass
        try:
            return self._everywhere(os.path.exists, marker)
        except Exception:  # noqa: BLE001 - an engine that cannot tell does not share it
            return False
        finally:
            os.unlink(marker)

    def shutdown(self, *, cancel: bool = False) -> None:
        if cancel and self._running:
            tasks = list(self._running.values())
            self._running.clear()
            with contextlib.suppress(Exception):
                self._cancel([o for t in tasks for o in (t.holder, t.meta)])

    def kill_all(self) -> None:
        self._running.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.shutdown(cancel=True)
        for holder in self._values.values():
            with contextlib.suppress(Exception):
                self._drop(holder)
        self._values.clear()
        try:
            self._stop()
        finally:
            for fd in self._pipe:
                os.close(fd)

    # -- internals -------------------------------------------------------
    def _holder(self, ref: Any, stage: str) -> Any:
        if isinstance(ref, RemoteRef):
            return self._values[ref.key]
        if ref.transport == "cache":  # the worker maps the entry (the cache is shared)
            cached = CacheInput(ref.payload)
            return self._put((cached, None) if self.unbox else cached)
        decoded = store.decode(ref, self.context.config, stage)  # e.g. read from the cache
        try:
            return self._put((decoded.value, None) if self.unbox else decoded.value)
        finally:
            decoded.close()

    def _notify(self, key: str) -> None:
        self._done.put(key)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._pipe[1], b"x")

    def _start_clocks(self) -> None:
        """Start the timeout clock of the tasks that are running by now.

        The engine tells nothing when a task starts; it runs them about in the
        order given, so the oldest ``workers`` tasks in flight are taken as running.
        """
        now = time.monotonic()
        for task in itertools.islice(self._running.values(), self.workers):
            if task.deadline is None and task.spec.timeout:
                task.deadline = now + task.spec.timeout

    def _block(self, timeout: float | None, wake: int | None) -> None:
        deadlines = [t.deadline for t in self._running.values() if t.deadline is not None]
        if deadlines:
            until = max(0.0, min(deadlines) - time.monotonic())
            timeout = until if timeout is None else min(timeout, until)
        if not self._running and timeout is None and wake is None:
            return
        fds = [self._pipe[0]] if wake is None else [self._pipe[0], wake]
        select.select(fds, [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            os.read(self._pipe[0], 4096)

    def _collect(self) -> None:
        done = []
        while not self._done.empty():
            task = self._running.pop(self._done.get(), None)
            if task is not None:  # else timed out or cancelled meanwhile
                done.append(task)
        if done:
            for task, report in zip(done, self._reports([t.meta for t in done]), strict=True):
                self._finish(task, report)

    def _finish(self, task: _Task, report: Report | BaseException) -> None:
        spec = task.spec
        if isinstance(report, BaseException):  # the engine lost or refused the task
            crash = self._crash(report)
            info = (ErrorInfo("crashed", "WorkerCrashed", crash) if crash is not None
                    else error_info(report, spec.key.stage))
            self._drop(task.holder)
            self._events.append(TaskOutcome(spec.key, spec.attempt, None, info,
                                            TaskMetrics(os.getpid())))
            return
        if report.error is not None and report.error.kind == "skipped":
            self._drop(task.holder)  # chained behind a task that failed: it did not run
            return
        metrics = report.metrics._replace(transport=self.name)
        worker = metrics.worker or str(metrics.worker_pid)
        self._events.append(Started(spec, worker, metrics.host))
        self._events.extend(TaskLog(spec.key, spec.attempt, worker, stream, level, text)
                            for stream, level, text in report.logs)
        handle = None
        if report.error is None:
            key = task.key
            handle = RemoteRef(key, self.name, report.nbytes, report.length)
            self._values[key] = task.holder
        else:
            self._drop(task.holder)
        self._events.append(TaskOutcome(spec.key, spec.attempt, handle, report.error, metrics))

    def _expire(self) -> None:
        now = time.monotonic()
        for key, task in list(self._running.items()):
            if task.deadline is None or task.deadline > now:
                continue
            del self._running[key]
            with contextlib.suppress(Exception):
                self._cancel([task.holder, task.meta])
            spec = task.spec
            info = ErrorInfo("timeout", "StageTimeout",
                             f"timed out after {spec.timeout:g} s; {self.cancel_note}")
            self._events.append(TaskOutcome(spec.key, spec.attempt, None, info,
                                            TaskMetrics(os.getpid())))

    # -- the engine's part -----------------------------------------------
    def _where(self) -> Callable[[], str]:
        raise NotImplementedError

    def _launch(self, key: str, call: Call, args: list[Any]) -> tuple[Any, Any]:
        raise NotImplementedError

    def _when_done(self, meta: Any, callback: Callable[..., None]) -> None:
        raise NotImplementedError

    def _reports(self, metas: list[Any]) -> list[Report | BaseException]:
        """The ``Report`` behind each finished ``meta``, or the engine's error for it."""
        raise NotImplementedError

    def _crash(self, exc: BaseException) -> str | None:
        """How the engine lost a task's worker, in words; None when ``exc`` is no such loss."""
        raise NotImplementedError

    def _cancel(self, objs: list[Any]) -> None:
        raise NotImplementedError

    def _fetch(self, holder: Any) -> Any:
        raise NotImplementedError

    def _drop(self, holder: Any) -> None:
        raise NotImplementedError

    def _everywhere(self, func: Callable[..., bool], *args: Any) -> bool:
        raise NotImplementedError

    def _fetch_many(self, holders: list[Any]) -> list[Any]:
        return [self._fetch(h) for h in holders]

    def _put(self, value: Any) -> Any:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError
