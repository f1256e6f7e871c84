"""The one loop: scheduler + executor + ledger + events.

    validate graph ─▶ Scheduler.take_ready ─▶ plan (cache? batches?) ─▶ queue ─▶ executor.submit
          ▲                                                                           │
          └──── finish / fail / drop ◀── outcome, start, log ◀── executor.wait ◀──────┘

The loop blocks in ``executor.wait`` on worker results, worker deaths, the
nearest retry or deadline and the signal wake-up pipe together. Every
outcome is a scheduler transition; the transition says which stages became
ready (they are planned at once: no levels) and which results have no
consumer left (the ledger frees them at once, so memory follows the live
set). The loop is the one writer of the run's state: it fires every
scheduler transition, and applies what the planner decided about a stage
that ends without running (``decisions``: from the cache, an empty map,
failed before running) or splits into batches. Decisions are pure policies
(``policies``), state changes are the scheduler's, events are the
reporter's, values are the ledger's; the
executor is given, built by name (``executors.create``), so a new one plugs
in without touching this loop.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from .. import executors
from ..errors import Interrupted, RunTimedOut, ValidationError
from ..events.log import EventLog
from ..events.reporter import Reporter
from ..executors.base import (
    ErrorInfo,
    Executor,
    ExecutorContext,
    Started,
    TaskLog,
    TaskOutcome,
    TaskSpec,
)
from ..executors.collector import RunCollector
from ..graph.build import Graph, build_graph
from ..pipeline.loader import load
from ..pipeline.pipeline import Pipeline
from ..settings import RunOptions, put_in_force, usable_cpus
from . import planning
from .decisions import Batches, Decision, FromCache
from .incremental import RunCache
from .ledger import Ledger
from .lock import PipelineLock
from .result import RunResult
from .run_ends import RunEnds, bind_run_date
from .scheduler import Step, TaskKey
from .signals import SignalGuard

__all__ = ["run", "new_run_id", "usable_cpus"]


def run(
    pipeline: Pipeline | ModuleType | str | Path,
    *,
    params: Mapping[str, Any] | None = None,
    targets: Iterable[str] | None = None,
    console: IO[str] | None = None,
    **options: Any,
) -> RunResult:
    """Run a pipeline and return its ``RunResult`` (a context manager).

    ``pipeline`` is a ``Pipeline``, a module, a path to a ``.py`` file or a
    module name. ``params`` sets pipeline parameters; ``targets`` picks the
    stages to produce (default: those nothing else consumes). Options (all
    keyword): ``workers`` (default: the usable CPUs), ``executor`` (``local``,
    ``inline``, ``dask``, ``ray``, or any registered name) with ``address``
    (a cluster's address or client), ``start_method``, ``keep_going``,
    ``state_dir``, ``cache_dir``, ``no_cache``, ``force`` (stages recomputed
    with everything downstream), ``log_format`` (``console``, ``json`` or
    ``none``; events always go to the run's ``events.jsonl``), ``quiet``,
    ``timeout`` (default per-task seconds), ``max_runtime`` (the whole run's
    bound: status ``timed_out``), ``max_tasks_per_worker``, ``memory`` (the
    admission budget), ``run_date`` (the logical date stages named
    ``run_date`` receive), ``lock`` and ``wait``.

    Invalid input raises a ``UsageError`` before anything runs; stage
    failures do not raise: see ``RunResult.status`` and ``RunResult.errors``.
    With ``lock`` (the default) a second run of the same pipeline on the same
    state directory raises ``LockHeldError`` at once, or with ``wait`` waits.
    """
    settings = RunOptions.build(**options)
    executors.check(settings.executor)
    collector = RunCollector()
    outer_tuning = put_in_force(settings.tuning)  # every module reads the run's numbers
    try:
        pipe = load(pipeline)
        portable = settings.executor != "inline" and settings.start_method != "fork"
        graph = build_graph(pipe, params, targets, portable=portable)
        unknown = [name for name in settings.force if name not in graph.nodes]
        if unknown:
            msg = f"--force names unknown stage(s): {', '.join(map(repr, unknown))}"
            raise ValidationError([msg])
        run_date = bind_run_date(graph, settings.run_date)
        run_id = new_run_id()
        source = pipe.source
        key = (source.path or source.module) if source is not None else pipe.name
        if not settings.lock:
            return _Run(graph, settings, run_id, console, run_date, collector).execute()
        with PipelineLock(settings.state_dir, key, run_id, wait=settings.wait):
            return _Run(graph, settings, run_id, console, run_date, collector).execute()
    finally:
        collector.restore()
        put_in_force(outer_tuning)


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus random hex."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


class _Run:
    """One run's mutable state; ``execute`` drives it to an end."""

    def __init__(
        self, graph: Graph, options: RunOptions, run_id: str, console: IO[str] | None,
        run_date: Any, collector: RunCollector | None = None,
    ) -> None:
        self.graph, self.options, self.run_id, self.run_date = graph, options, run_id, run_date
        self.collector = collector
        self.run_dir = options.state_dir / "runs" / run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.events = EventLog(run_id, self.run_dir / "events.jsonl", log_format=options.log_format,
                               console=console, **({"quiet": True} if options.quiet else {}))
        self.report = Reporter(self.events)
        self.ends = RunEnds(graph, options, run_id, self.run_dir, self.events, self.report)
        self.exe: Executor | None = None
        self.cache: RunCache | None = None
        self.guard: SignalGuard | None = None
        self.deadline = None if options.max_runtime is None else time.monotonic() + (
            options.max_runtime)

    # -- the loop --------------------------------------------------------
    def execute(self) -> RunResult:
        started = time.perf_counter()
        status, stop = "failed", None
        try:
            self.exe = executors.create(self.options.executor, self._context())
            self.ledger = Ledger(self.exe)
            self.cache = cache = RunCache.open(self.graph, self.options, self.run_id,
                                               self.ledger, self.report, self.exe)
            self.scheduler, self.plan = planning.start(self.graph, self.options, self.ledger,
                                                       self.exe, cache)
            self.guard = SignalGuard(self._emergency_stop, raise_at_once=self.exe.in_driver)
            if self.collector is not None:
                self.collector.freeze()
            with self.guard:
                try:
                    self.ends.start(self.run_date, self.exe.start_method)
                    self._loop()
                    status = "failed" if self.plan.errors else "succeeded"
                except (Interrupted, RunTimedOut) as exc:
                    stop = exc
                    status = "interrupted" if isinstance(exc, Interrupted) else "timed_out"
                    self._stop()
                finally:
                    if not self.guard.urgent:  # a second signal: kill_all does it, at once
                        self.exe.shutdown(cancel=status != "succeeded")
        except BaseException:
            if self.exe is not None:
                self.exe.close()
            self.events.close()
            raise
        return self.ends.finish(
            status, stop, time.perf_counter() - started, ledger=self.ledger, executor=self.exe,
            cache=self.plan.cache, errors=self.plan.errors, tally=self.scheduler.tally())

    def _loop(self) -> None:
        assert self.guard is not None and self.exe is not None
        exe = self.exe
        plan, scheduler = self.plan, self.scheduler
        every = self.options.tuning.events_flush_s
        flushed = 0.0
        while True:
            self._plan_ready()
            self._dispatch()
            if scheduler.finished and not plan.waiting_on_cache:
                return
            timeout, now = self._timeout(), time.monotonic()
            if now - flushed >= every:
                self.events.flush()
                flushed = now
            else:  # flushed just now: the next flush is due soon, or as soon as nothing happens
                due = flushed + every - now
                timeout = due if timeout is None else min(timeout, due)
            for event in exe.wait(timeout, self.guard.wake_fd):
                if isinstance(event, TaskOutcome):
                    self._on_outcome(event)
                elif isinstance(event, Started):
                    self._on_started(event.spec, event.pid, event.host)
                elif isinstance(event, TaskLog):
                    self.report.log(event)
            self.guard.check()
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise RunTimedOut(self.options.max_runtime)
            plan.release_due()

    def _timeout(self) -> float | None:
        due = [t for t in (self.plan.next_due(), self.deadline) if t is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _plan_ready(self) -> None:
        # Planning can finish a stage at once (an empty map, a cache hit), making more ready.
        while True:
            ready = self.scheduler.take_ready()
            for name in ready:
                decision = self.plan.plan(name)
                if decision is not None:  # most stages are queued: nothing to apply
                    self._settle(decision)
            settled = self.plan.retry_cache_waits()
            for decision in settled:
                self._settle(decision)
            if not ready and not settled:
                return

    def _settle(self, decision: Decision) -> None:
        """Apply what planning decided about a stage: the scheduler makes each transition."""
        stage = decision.stage
        if isinstance(decision, Batches):
            self.ledger.expect_batches(stage, decision.count)
            if decision.count:  # its batches are queued: the stage is done when all are
                self.scheduler.set_batches(stage, decision.count)
                self.report.batches[stage] = decision.count
                return
            step = self.scheduler.finish(TaskKey(stage))  # nothing to map over: done, empty
            self.ledger.complete(stage, decision.concat)
            self._apply(step)
        elif isinstance(decision, FromCache):
            self.ledger.adopt(stage, decision.output)
            self.report.skip(stage, "cached")
            self._apply(self.scheduler.finish(TaskKey(stage)))
        else:  # FailedUnrun
            self.report.failed(TaskKey(stage), 1, decision.info, final=True)
            self._failed(TaskKey(stage), decision.info)

    def _dispatch(self) -> None:
        plan, exe = self.plan, self.exe
        assert exe is not None
        while plan.queue and exe.free_slots() > 0:
            spec = plan.pop_admitted()
            if spec is None:
                return  # the memory budget holds the rest back until a task ends
            plan.reserve(spec)
            worker = exe.submit(spec)
            if worker is not None:  # else queued in a worker: ``Started`` comes later
                self._on_started(spec, worker, None)
            elif exe.chains:  # an engine: chain ahead of the start
                plan.chain_after(spec)

    def _on_started(self, spec: TaskSpec, worker: int | str, host: str | None) -> None:
        if spec.after is not None:  # chained: its stage became ready just now
            self._plan_ready()
        if not self.scheduler.is_running(spec.key.stage):
            return  # stopped meanwhile; its outcome, if any, is dropped
        if spec.after is not None:
            self.plan.reserve(spec)
        stage = spec.key.stage
        self.report.started(spec, worker, host, self.plan.priority(stage),
                            self.plan.estimates.wall_s.get(stage))
        self.plan.chain_after(spec)

    # -- outcomes --------------------------------------------------------
    def _on_outcome(self, outcome: TaskOutcome) -> None:
        key, plan, exe = outcome.key, self.plan, self.exe
        assert exe is not None
        plan.unreserve(key)
        if outcome.error is not None:
            self._on_error(outcome, outcome.error)
            return
        assert outcome.handle is not None
        if not self.scheduler.is_running(key.stage):
            exe.release(outcome.handle)  # the stage failed or was dropped meanwhile
            return
        self.report.finished(outcome)
        notice = exe.notice(outcome.handle)
        if notice is not None:  # said once per run
            self.report.notice("store_fallback", key.stage, message=notice)
        self.ledger.record(key.stage, key.batch, outcome.handle)
        self._apply(self.scheduler.finish(key), key)
        plan.stored(key, outcome)

    def _on_error(self, outcome: TaskOutcome, info: ErrorInfo) -> None:
        key, plan = outcome.key, self.plan
        plan.unchain(key)
        delay = plan.retry_delay(outcome, info)
        self.report.failed(key, outcome.attempt, info, final=delay is None)
        if delay is None:
            self._failed(key, info)
            return
        self.report.retrying(key, outcome.attempt + 1, delay, alone=key in plan.alone)
        plan.retry_later(outcome, delay)

    def _failed(self, key: TaskKey, info: ErrorInfo) -> None:
        plan = self.plan
        plan.record_error(key.stage, info)
        if self.cache is not None:
            self.cache.failed(key.stage)
        self._apply(self.scheduler.fail(key), key)
        if self.scheduler.stopped:
            self._drop_pending()

    def _apply(self, step: Step, key: TaskKey | None = None) -> None:
        if step.stage_done and key is not None and key.batch is not None:  # its last batch
            self.ledger.complete(key.stage, self.graph.nodes[key.stage].stage.options.concat)
        for name in step.released:
            self.ledger.release(name)
        for name, reason in step.skipped.items():
            self.report.skip(name, reason)
        if self.scheduler.stopped:
            self._drop_pending()

    def _drop_pending(self) -> None:
        """Fail-fast or interrupt: tasks not yet started never start; their inputs go now."""
        for stage in self.plan.take_pending():
            self.ledger.release(stage)  # the batches it made so far
            self._apply(self.scheduler.drop(stage))

    def _stop(self) -> None:
        for name, reason in self.scheduler.stop().items():
            self.report.skip(name, reason)
        self._drop_pending()
        if self.exe is not None:
            self.exe.shutdown(cancel=True)

    def _emergency_stop(self) -> None:
        if self.exe is not None:
            self.exe.kill_all()
            self.exe.close()

    # -- edges -----------------------------------------------------------
    def _context(self) -> ExecutorContext:
        from ..store import StoreConfig

        graph, options = self.graph, self.options
        source = graph.pipeline.source
        return ExecutorContext(
            funcs={name: graph.nodes[name].stage.func for name in graph.selected},
            resources={name: r.func for name, r in graph.resources.items()},
            options={name: graph.nodes[name].stage.options for name in graph.selected},
            config=StoreConfig.for_run(self.run_id, options.state_dir, shm_dir=options.shm_dir,
                                       hold_min=options.tuning.hold_min,
                                       inline_max=options.tuning.inline_max),
            workers=options.workers,
            start_method=options.start_method,
            sources=(source,) if source is not None else (),
            max_tasks_per_worker=options.max_tasks_per_worker,
            address=options.address,
            settings=options.tuning,
        )
