"""The one loop: scheduler + executor + store + events.

    validate graph ─▶ Scheduler.take_ready ─▶ plan tasks ─▶ queue ─▶ executor.submit
          ▲                                                              │
          └──── finish / fail ◀── outcome ◀── executor.wait (blocks) ◀───┘

The loop blocks in ``executor.wait`` on worker results, worker deaths, the
nearest retry time and the signal wake-up pipe together. Every outcome is a
scheduler transition; the transition says which stages became ready (they
are submitted at once: no levels) and which intermediates have no consumer
left (they are released at once, so memory follows the live set).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import pickle
import random
import secrets
import time
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from . import store
from .errors import (
    Interrupted,
    StageFailed,
    StageTimeout,
    UsageError,
    ValidationError,
    WorkerCrashed,
)
from .events import EventLog
from .executors.base import (
    Batched,
    ErrorInfo,
    Executor,
    Output,
    Pending,
    Started,
    TaskOutcome,
    TaskSpec,
    output_handles,
)
from .graph import Graph, build_graph
from .loader import load
from .lock import PipelineLock
from .pipeline import Pipeline
from .result import RunResult
from .scheduler import Scheduler, Step, TaskKey
from .signals import SignalGuard

EXECUTORS = ("local", "inline")
START_METHODS = ("fork", "forkserver", "spawn")
_TASKS_PER_WORKER = 4  # automatic batch size: about this many batches per worker
# A link is not queued behind a task holding this much shared memory in its inputs: the
# driver frees them when the task ends, and the next link should not start before that.
_CHAIN_INPUTS_MAX = 16 << 20


def default_state_dir() -> Path:
    """``$DAGRUN_STATE_DIR``, else ``.dagrun`` in the current directory."""
    return Path(os.environ.get("DAGRUN_STATE_DIR") or ".dagrun")


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run(
    pipeline: Pipeline | ModuleType | str | Path,
    *,
    params: Mapping[str, Any] | None = None,
    targets: Iterable[str] | None = None,
    workers: int | None = None,
    executor: str = "local",
    start_method: str | None = None,
    keep_going: bool = False,
    state_dir: str | Path | None = None,
    log_format: str = "console",
    console: IO[str] | None = None,
    timeout: float | None = None,
    max_tasks_per_worker: int | None = None,
    force: Iterable[str] = (),
    no_cache: bool = False,
    lock: bool = True,
    wait: bool = False,
) -> RunResult:
    """Run a pipeline and return its ``RunResult`` (a context manager).

    ``pipeline`` is a ``Pipeline``, a module, a path to a ``.py`` file or a
    module name. ``params`` sets pipeline parameters; ``targets`` picks the
    stages to produce (default: those nothing else consumes); ``workers``
    defaults to the usable CPUs. ``log_format`` is ``console``, ``json`` or
    ``none`` (events still go to the run's ``events.jsonl``). ``timeout`` is
    the default per-task timeout in seconds. ``force`` and ``no_cache`` are
    accepted for the cache (every stage is computed in this version). Invalid input raises a
    ``UsageError`` before anything runs; stage failures do not raise: see
    ``RunResult.status`` and ``RunResult.errors``. With ``lock`` (the
    default) a second run of the same pipeline on the same state directory
    raises ``LockHeldError`` at once, or with ``wait`` waits for the first.
    """
    if executor not in EXECUTORS:
        msg = f"unknown executor {executor!r}; choose one of: {', '.join(EXECUTORS)}"
        raise UsageError(msg)
    if start_method is not None and start_method not in START_METHODS:
        msg = f"unknown start method {start_method!r}; choose one of: {', '.join(START_METHODS)}"
        raise UsageError(msg)
    if workers is not None and workers < 1:
        msg = f"workers must be at least 1, got {workers}"
        raise UsageError(msg)
    if log_format not in ("console", "json", "none"):
        msg = f"unknown log format {log_format!r}; choose console or json"
        raise UsageError(msg)
    hold_min = hold_min_from_env()  # a bad setting is a usage error before anything runs
    import multiprocessing as mp

    method = start_method or mp.get_start_method(allow_none=False)
    pipe = load(pipeline)
    graph = build_graph(pipe, params, targets, portable=executor == "local" and method != "fork")
    unknown = [name for name in force if name not in graph.nodes]
    if unknown:
        msg = f"--force names unknown stage(s): {', '.join(map(repr, unknown))}"
        raise ValidationError([msg])
    workers = workers or usable_cpus()
    state = Path(state_dir) if state_dir is not None else default_state_dir()
    run_id = new_run_id()
    source = pipe.source
    key = (source.path or source.module) if source is not None else pipe.name
    guard = PipelineLock(state, key, run_id, wait=wait) if lock else contextlib.nullcontext()
    with guard:
        return _Run(graph, run_id, executor, method, workers, keep_going, state, log_format,
                    console, timeout, max_tasks_per_worker, hold_min).execute()


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus random hex."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


class _Run:
    """One run's mutable state; ``execute`` drives it to an end."""

    def __init__(
        self,
        graph: Graph,
        run_id: str,
        executor: str,
        start_method: str,
        workers: int,
        keep_going: bool,
        state_dir: Path,
        log_format: str,
        console: IO[str] | None,
        timeout: float | None,
        max_tasks_per_worker: int | None,
        hold_min: int = store.HOLD_MIN,
    ) -> None:
        self.graph = graph
        self.executor_name = executor
        self.start_method = start_method
        self.workers = 1 if executor == "inline" else workers
        self.timeout = timeout
        self.max_tasks = max_tasks_per_worker
        self.state_dir = state_dir
        self.run_id = run_id
        self.run_dir = self.state_dir / "runs" / self.run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.events = EventLog(
            self.run_id, self.run_dir / "events.jsonl", log_format=log_format, console=console
        )
        self.config = store.StoreConfig.for_run(
            self.run_id,
            self.state_dir,
            shm_dir=os.environ.get("DAGRUN_SHM_DIR", "/dev/shm"),
            hold_min=hold_min,
        )
        self.store = store.Store(self.config)
        keep = set(graph.targets)
        self.scheduler = Scheduler(
            {n: graph.upstream(n) for n in graph.selected},
            graph.selected,
            keep,
            keep_going=keep_going,
        )
        self.outputs: dict[str, Output] = {}
        self.batches: dict[str, list[Any]] = {}
        self.queue: deque[TaskSpec] = deque()
        self.chained: dict[str, TaskSpec] = {}  # stage -> its task queued behind its input's
        self.delayed: list[tuple[float, int, TaskSpec]] = []
        self.sequence = itertools.count()
        self.errors: dict[str, ErrorInfo] = {}
        self.metrics: list[dict[str, Any]] = []
        self.skipped: dict[str, str] = {}
        self.exe: Executor | None = None
        self.guard: SignalGuard | None = None

    # -- the loop --------------------------------------------------------
    def execute(self) -> RunResult:
        started = time.perf_counter()
        status = "failed"
        interrupted: Interrupted | None = None
        try:
            store.clean_orphans(self.state_dir, self.config.shm_dir)
            self.exe = self._make_executor()
            self.guard = SignalGuard(self._emergency_stop, raise_at_once=self.exe.name == "inline")
            with self.guard:
                try:
                    self._emit_start()
                    self._loop()
                    status = "failed" if self.errors else "succeeded"
                except Interrupted as exc:
                    interrupted = exc
                    status = "interrupted"
                    self._stop()
                finally:
                    self.exe.shutdown(cancel=status != "succeeded")
        except BaseException:
            self.store.close()
            self.events.close()
            raise
        wall = time.perf_counter() - started
        values, closers = self._read_targets() if interrupted is None else ({}, [])
        for name, output in self.outputs.items():
            if name not in values:  # what a failed or partial run left: nobody will read it
                for handle in output_handles(output):
                    self.store.release(handle)
        if interrupted is None and self.errors:
            status = "failed"  # a target's result could not be read back
        self.events.emit(
            "run_finished",
            level="info" if status == "succeeded" else "error",
            status=status,
            wall_s=round(wall, 6),
            succeeded=len(self.scheduler.done),
            failed=len(self.scheduler.failed),
            skipped=len(self.skipped),
        )
        self.events.close()
        if interrupted is not None:
            self.store.close()
            raise interrupted
        return RunResult(
            run_id=self.run_id,
            status=status,
            run_dir=self.run_dir,
            wall_s=wall,
            targets=list(self.graph.targets),
            values=values,
            errors={s: _stage_error(s, info) for s, info in self.errors.items()},
            metrics=self.metrics,
            skipped=dict(self.skipped),
            closer=_closer(closers, self.store),
        )

    def _loop(self) -> None:
        assert self.exe is not None and self.guard is not None
        scheduler = self.scheduler
        while True:
            self._plan_ready()
            self._dispatch()
            if scheduler.finished:
                return
            timeout = None
            if self.delayed:
                timeout = max(0.0, self.delayed[0][0] - time.monotonic())
            self.events.flush()
            for event in self.exe.wait(timeout, self.guard.wake_fd):
                if isinstance(event, Started):
                    self._on_started(event.spec, event.pid)
                else:
                    self._on_outcome(event)
            self.guard.check()
            self._release_due_retries()

    def _plan_ready(self) -> None:
        # Planning can finish a stage at once (an empty map), making more ready.
        while ready := self.scheduler.take_ready():
            self._plan(ready)

    def _dispatch(self) -> None:
        assert self.exe is not None
        while self.queue and self.exe.free_slots() > 0:
            spec = self.queue.popleft()
            pid = self.exe.submit(spec)
            if pid is not None:  # else queued in a worker: ``Started`` comes later
                self._on_started(spec, pid)

    def _on_started(self, spec: TaskSpec, pid: int) -> None:
        if spec.after is not None:  # chained: its stage became ready just now
            self._plan_ready()
        if spec.key.stage not in self.scheduler.running:
            return  # stopped meanwhile; its outcome, if any, is dropped
        self.events.emit(
            "task_started",
            stage=spec.key.stage,
            attempt=spec.attempt,
            worker_pid=pid,
            **_batch_fields(spec.key),
        )
        self._chain_after(spec)

    def _chain_after(self, spec: TaskSpec) -> None:
        """Queue the consumer that only this task holds back right behind it, in its worker.

        The worker then starts it the moment this task ends, with the result
        handed over inside the worker: a chain of stages runs without a
        driver round trip between links. One consumer per task (the worker
        runs one at a time); the others are planned when the result is in.
        """
        if spec.key.batch is not None or self.scheduler.stopped:
            return
        name = spec.key.stage
        for user in self.scheduler.consumers_of.get(name, ()):
            node = self.graph.nodes[user]
            if self.scheduler.waiting.get(user) != {name} or node.map_input is not None:
                continue
            if self._shared_input_bytes(name) >= _CHAIN_INPUTS_MAX:
                return  # its inputs are freed only once it is done: the link would overlap
            follow = self._task(TaskKey(user), after=spec.key)
            if self.exe is not None and self.exe.chain(follow):
                self.chained[user] = follow
            return

    # -- planning --------------------------------------------------------
    def _shared_input_bytes(self, name: str) -> int:
        """Bytes of shared memory that the inputs of running stage ``name`` occupy."""
        return sum(
            h.nbytes
            for u in self.graph.nodes[name].inputs.values()
            for h in output_handles(self.outputs[u])
            if h.transport != store.HELD
        )

    def _task(
        self, key: TaskKey, attempt: int = 1, *, size: int = 0, after: TaskKey | None = None
    ) -> TaskSpec:
        """The task ``key`` with its inputs as they are now (``after``'s result: pending).

        ``size`` is the batch size of a mapped stage's batch.
        """
        node = self.graph.nodes[key.stage]
        inputs: dict[str, Output | Pending] = {
            p: Pending(u) if after is not None and u == after.stage else self.outputs[u]
            for p, u in node.inputs.items()
        }
        timeout = node.stage.options.timeout or self.timeout
        if key.batch is None:
            return TaskSpec(key, attempt, inputs, node.params, time.time(), timeout=timeout,
                            resources=node.resources, keep=self._may_keep(key.stage),
                            after=after)
        length = inputs[node.map_input].length  # type: ignore[index,union-attr]
        items = (key.batch * size, min(length, (key.batch + 1) * size))
        return TaskSpec(key, attempt, inputs, node.params, time.time(), node.map_input, items,
                        timeout, node.resources, node.stage.options.concat)

    def _plan(self, stages: list[str]) -> None:
        for name in stages:
            if self.chained.pop(name, None) is not None:
                continue  # already queued in the worker that made its input
            node = self.graph.nodes[name]
            if node.map_input is None:
                spec = self._task(TaskKey(name))
                if any(_held(output) for output in spec.inputs.values()):
                    self.queue.appendleft(spec)  # first, while the worker holding it is idle
                else:
                    self.queue.append(spec)
                continue
            length = self._mapped_input(name).length
            if length is None:
                info = ErrorInfo(
                    "raised",
                    "TypeError",
                    f"stage {name!r} maps over {node.map_input!r}, whose value has no length; "
                    f"return a list, tuple, array or table from that stage",
                )
                self._failed(TaskKey(name), 1, info)
                continue
            size = self._batch_size(name)
            count = math.ceil(length / size)
            if count == 0:
                self.batches[name] = []
                self._apply(self.scheduler.finish(TaskKey(name)), TaskKey(name))
                continue
            self.scheduler.set_batches(name, count)
            self.batches[name] = [None] * count
            for index in range(count):
                self.queue.append(self._task(TaskKey(name, index), size=size))

    def _mapped_input(self, name: str) -> Output:
        node = self.graph.nodes[name]
        return self.outputs[node.inputs[node.map_input]]  # type: ignore[index]

    def _batch_size(self, name: str) -> int:
        """A mapped stage's batch size: its own, or about four batches per worker."""
        length = self._mapped_input(name).length or 0
        return self.graph.nodes[name].stage.options.batch_size or auto_batch_size(
            length, self.workers
        )

    def _may_keep(self, name: str) -> bool:
        """Whether the result of ``name`` may stay in its worker (see ``store.held``).

        Only for a result with exactly one consumer, reading it through one
        parameter, that can start as soon as this result exists (its other
        inputs are done, it is not mapped, so the worker that made the value
        is free to run it) and has no retries (a held value lives in one
        process); never for a requested output or with recycled workers.
        """
        if self.executor_name != "local" or self.max_tasks or name in self.scheduler.keep:
            return False
        users = self.scheduler.consumers_of.get(name, [])
        if len(users) != 1:
            return False
        node = self.graph.nodes[users[0]]
        if node.map_input is not None or node.stage.options.retries:
            return False
        if list(node.inputs.values()).count(name) != 1:
            return False
        return all(u == name or u in self.scheduler.done for u in node.inputs.values())

    # -- outcomes --------------------------------------------------------
    def _on_outcome(self, outcome: TaskOutcome) -> None:
        key = outcome.key
        if outcome.error is not None:
            self._on_error(outcome, outcome.error)
            return
        assert outcome.handle is not None
        m = outcome.metrics
        record = {
            "stage": key.stage,
            "attempt": outcome.attempt,
            "worker_pid": m.worker_pid,
            "wall_s": round(m.wall_s, 6),
            "cpu_s": round(m.cpu_s, 6),
            "max_rss_bytes": m.max_rss_bytes,
            "queue_wait_s": round(m.queue_wait_s, 6),
            "input_bytes": m.input_bytes,
            "output_bytes": m.output_bytes,
            "transport": m.transport,
            "cached": False,
            **_batch_fields(key),
        }
        if key.batch is not None:
            record["items"] = m.items
        self.metrics.append(record)
        self.events.emit("task_finished", **record)
        notice = self.store.fallback_notice(outcome.handle)
        if notice is not None:  # said once per run
            self.events.emit("store_fallback", level="warning", stage=key.stage, message=notice)
        if key.stage not in self.scheduler.running:
            self.store.release(outcome.handle)  # the stage failed or stopped meanwhile
            return
        if key.batch is None:
            self.outputs[key.stage] = outcome.handle
        else:
            self.batches[key.stage][key.batch] = outcome.handle
        self._apply(self.scheduler.finish(key), key)

    def _on_error(self, outcome: TaskOutcome, info: ErrorInfo) -> None:
        key = outcome.key
        for user in [u for u, s in self.chained.items() if s.after == key]:
            del self.chained[user]  # its worker skips it; planned again if this is retried
        options = self.graph.nodes[key.stage].stage.options
        retry = (
            outcome.attempt <= options.retries
            and key.stage in self.scheduler.running
            and not self.scheduler.stopped
            and _retryable(info, options.retry_on)
        )
        self.events.emit(
            "task_failed",
            level="warning" if retry else "error",
            stage=key.stage,
            attempt=outcome.attempt,
            error_type=info.error_type,
            error=info.message,
            traceback=info.traceback,
            **_batch_fields(key),
        )
        if not retry:
            self._failed(key, outcome.attempt, info, logged=True)
            return
        delay = options.retry_delay * 2 ** (outcome.attempt - 1) * random.uniform(0.5, 1.5)
        self.events.emit(
            "task_retrying",
            stage=key.stage,
            attempt=outcome.attempt + 1,
            delay_s=round(delay, 6),
            **_batch_fields(key),
        )
        spec = self._respec(outcome)
        heapq.heappush(self.delayed, (time.monotonic() + delay, next(self.sequence), spec))

    def _respec(self, outcome: TaskOutcome) -> TaskSpec:
        key = outcome.key
        size = self._batch_size(key.stage) if key.batch is not None else 0
        return self._task(key, outcome.attempt + 1, size=size)

    def _failed(self, key: TaskKey, attempt: int, info: ErrorInfo, *, logged: bool = False) -> None:
        if not logged:
            self.events.emit(
                "task_failed", level="error", stage=key.stage, attempt=attempt,
                error_type=info.error_type, error=info.message, traceback=info.traceback,
            )
        if key.stage in self.scheduler.running:
            self.errors.setdefault(key.stage, info)
        self._apply(self.scheduler.fail(key), key)
        if self.scheduler.stopped:
            self._drop_pending()

    def _apply(self, step: Step, key: TaskKey) -> None:
        if step.stage_done and key.stage in self.batches:
            concat = self.graph.nodes[key.stage].stage.options.concat
            self.outputs[key.stage] = Batched(tuple(self.batches.pop(key.stage)), concat)
        for name in step.released:
            output = self.outputs.pop(name, None)
            if output is not None:
                for handle in output_handles(output):
                    self.store.release(handle)
        for name, reason in step.skipped.items():
            self._skip(name, reason)

    def _skip(self, name: str, reason: str) -> None:
        if name not in self.skipped:
            self.skipped[name] = reason
            self.events.emit("task_skipped", stage=name, reason=reason)

    def _drop_pending(self) -> None:
        """Fail-fast or interrupt: queued tasks never start."""
        pending = [spec for spec in self.queue] + [spec for _, _, spec in self.delayed]
        self.queue.clear()
        self.delayed.clear()
        for spec in pending:
            stage = spec.key.stage
            if stage in self.scheduler.running:
                del self.scheduler.running[stage]
                self.scheduler.skipped[stage] = "stopped"
                self._skip(stage, "stopped")
                for handle in self.batches.pop(stage, None) or []:
                    if handle is not None:
                        self.store.release(handle)

    def _release_due_retries(self) -> None:
        now = time.monotonic()
        while self.delayed and self.delayed[0][0] <= now:
            self.queue.append(heapq.heappop(self.delayed)[2])

    def _stop(self) -> None:
        for name, reason in self.scheduler.stop().items():
            self._skip(name, reason)
        self._drop_pending()
        if self.exe is not None:
            self.exe.shutdown(cancel=True)

    def _emergency_stop(self) -> None:
        kill = getattr(self.exe, "kill_all", None)
        if kill is not None:
            kill()
        self.store.close()

    # -- edges -----------------------------------------------------------
    def _make_executor(self) -> Executor:
        funcs = {name: self.graph.nodes[name].stage.func for name in self.graph.selected}
        resources = {name: r.func for name, r in self.graph.resources.items()}
        if self.executor_name == "inline":
            from .executors.inline import InlineExecutor

            return InlineExecutor(funcs, self.config, resources)
        from .executors.local import LocalExecutor

        source = self.graph.pipeline.source
        return LocalExecutor(
            funcs,
            self.config,
            workers=self.workers,
            start_method=self.start_method,
            sources=[source] if source is not None else [],
            max_tasks_per_worker=self.max_tasks,
            resources=resources,
        )

    def _emit_start(self) -> None:
        self.events.emit(
            "run_started",
            pipeline=self.graph.pipeline.name,
            stages=len(self.graph.selected),
            workers=self.workers,
            executor=self.executor_name,
            start_method=self.start_method if self.executor_name == "local" else None,
            targets=list(self.graph.targets),
        )
        selected = set(self.graph.selected)
        for name in self.graph.order:
            if name not in selected:
                self._skip(name, "not_selected")

    def _read_targets(self) -> tuple[dict[str, Any], list[Any]]:
        from .executors.worker import concatenate

        values: dict[str, Any] = {}
        closers: list[Any] = []
        for name in self.graph.targets:
            output = self.outputs.get(name)
            if output is None:
                continue
            parts = []
            try:
                for handle in output_handles(output):
                    decoded = store.decode(handle, self.config, name)
                    closers.append(decoded)
                    parts.append(decoded.value)
            except Exception as exc:  # noqa: BLE001 - e.g. a result whose unpickling raises
                from .executors.worker import error_info

                exc.add_note(f"while reading back the result of stage {name!r}")
                info = error_info(exc, name)
                self.errors[name] = info
                self.events.emit(
                    "task_failed", level="error", stage=name, attempt=1,
                    error_type=info.error_type, error=info.message, traceback=info.traceback,
                )
                continue
            if isinstance(output, Batched):
                flat = [x for part in parts for x in part]
                values[name] = concatenate(flat) if output.concat else flat
            else:
                values[name] = parts[0]
        return values, closers


def hold_min_from_env() -> int:
    """``$DAGRUN_HOLD_MIN``: bytes from which a result may stay in its worker (``off``: never)."""
    text = os.environ.get("DAGRUN_HOLD_MIN", "").strip().lower()
    if not text:
        return store.HOLD_MIN
    if text in ("off", "never", "-1"):
        return -1
    try:
        return max(0, int(text))
    except ValueError:
        msg = f"DAGRUN_HOLD_MIN must be a number of bytes or 'off', got {text!r}"
        raise UsageError(msg) from None


def _held(output: Output) -> bool:
    return isinstance(output, store.Handle) and output.transport == store.HELD


def auto_batch_size(length: int, workers: int) -> int:
    """About ``_TASKS_PER_WORKER`` batches per worker: enough to balance, few enough to be cheap."""
    return max(1, math.ceil(length / (workers * _TASKS_PER_WORKER)))


def _batch_fields(key: TaskKey) -> dict[str, Any]:
    return {} if key.batch is None else {"batch": key.batch}


def _retryable(info: ErrorInfo, retry_on: tuple[type[BaseException], ...]) -> bool:
    if info.kind != "raised" or not retry_on:
        return True
    wanted = {f"{t.__module__}.{t.__qualname__}" for t in retry_on}
    return bool(wanted.intersection(info.type_names))


def _stage_error(stage: str, info: ErrorInfo) -> StageFailed:
    cls = {"crashed": WorkerCrashed, "timeout": StageTimeout}.get(info.kind, StageFailed)
    detail = info.message if info.kind != "raised" else f"{info.error_type}: {info.message}"
    error = cls(stage, detail)
    error.traceback = info.traceback  # type: ignore[attr-defined]
    if info.exception is not None:
        try:
            error.__cause__ = pickle.loads(info.exception)
        except Exception:  # noqa: BLE001 - the message and traceback text remain
            pass
    return error


def _closer(decoded: list[Any], owner: store.Store) -> Any:
    def close() -> None:
        for item in decoded:
            item.close()
        owner.close()

    return close
