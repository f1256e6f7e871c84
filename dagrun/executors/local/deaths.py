"""How the pool learns that a worker is gone or stuck, and what becomes of its tasks.

A worker whose sentinel fired is drained first (an outcome written just
before dying is an outcome), then its task fails with how the worker died;
a task past its deadline is drained the same way, then its worker is
stopped. The tasks queued behind a lost one go to other workers; chained
ones are planned again by the runner.

``Deaths`` is a part of ``pool.LocalExecutor``, built with the pool's
``PoolState`` and ``Watch``, its ``Inbound`` (to drain a worker) and two
callbacks of the pool: ``finish`` (the worker's current task ended) and
``place`` (a task queued behind a lost one goes elsewhere). It owns the
out-of-memory watch and the memory samples; the pool calls ``died``,
``timed_out`` and ``sample_memory`` from its ``poll`` loop.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from ...settings import Tuning
from .. import oom
from ..base import OOM, ErrorInfo, Started, TaskMetrics, TaskOutcome, TaskSpec
from . import exits, wire
from .handle import Worker
from .inbound import Inbound
from .state import PoolState, Watch


class Deaths:
    """Deaths, timeouts and memory samples of the pool's workers."""

    def __init__(self, state: PoolState, watch: Watch, inbound: Inbound, *,
                 finish: Callable[[Worker, TaskOutcome | None], None],
                 place: Callable[[TaskSpec, bytes], int | None],
                 numbers: Tuning) -> None:
        self._busy = state.busy
        self._idle = state.idle
        self._events = state.events
        self._writers = state.writers
        self._watch = watch
        self._inbound = inbound
        self._finish = finish
        self._place = place
        self._startup_grace = numbers.startup_grace_s
        self._sample_every = numbers.sample_every_s
        self._oom = oom.OomWatch()
        self._sampled_at = 0.0

    def died(self, worker: Worker) -> None:
        """A worker's sentinel fired: read what it sent first, then report what it was running."""
        if not self._inbound.drain(worker):
            return
        if worker.conn in self._busy:
            exitcode = exits.reap(worker.process)
            oom_kills = self._oom.new_kills() if exitcode == -signal.SIGKILL else 0
            peak, limit = worker.peak_rss or None, self._oom.limit
            message = exits.describe_exit(
                worker.pid, exitcode, peak_rss=peak, peak_exact=False, oom_kills=oom_kills,
                memory_limit=limit, started=worker.ready, output=list(worker.tail),
            )
            # The typed cause, not the message's words, is what the planner's retry reads.
            oom = exits.oom_likely(exitcode, peak_rss=peak, oom_kills=oom_kills,
                                   memory_limit=limit)
            info = ErrorInfo("crashed", "WorkerCrashed", message, cause=OOM if oom else None)
            self._fail(worker, info)
        elif worker in self._idle:
            self._idle.remove(worker)  # an idle worker died: simply not reused
            exits.reap(worker.process)
            self._writers.died(worker.pid)
            self._watch.forget(worker)

    def timed_out(self, worker: Worker) -> None:
        """A busy worker's deadline passed: its task fails (timeout, or a start-up that hung)."""
        if not self._inbound.drain(worker):  # its outcome may be in the pipe already
            return
        spec = worker.spec
        if spec is None or worker.deadline is None or worker.deadline > time.monotonic():
            return
        exits.terminate(worker.process)
        self._inbound.read_all_raw(worker)
        tail = list(worker.tail)
        if worker.ready:
            self._fail(worker, exits.timeout_info(worker.pid, spec.timeout or 0.0, tail))
        else:
            self._fail(worker, ErrorInfo("crashed", "WorkerCrashed", exits.describe_startup_hang(
                worker.pid, self._startup_grace, tail)))

    def _fail(self, worker: Worker, info: ErrorInfo) -> None:
        spec = worker.spec
        assert spec is not None
        outcome = TaskOutcome(spec.key, spec.attempt, None, info, TaskMetrics(worker.pid))
        # Prefetched, never started: they go elsewhere; chained ones need this
        # task's result, so the runner plans them again once it has one.
        queued = [q for q in worker.drop_queued() if q.after is None]
        self._finish(worker, outcome)
        self._writers.died(worker.pid)
        self._watch.forget(worker)
        for waiting in queued:
            pid = self._place(waiting, wire.task_message(waiting))
            if pid is not None:
                self._events.append(Started(waiting, pid))

    def sample_memory(self) -> None:
        """Each busy worker's peak memory, sampled at most every ``sample_every_s``."""
        now = time.monotonic()
        if now - self._sampled_at < self._sample_every:
            return
        self._sampled_at = now
        for worker in self._busy.values():
            worker.peak_rss = max(worker.peak_rss, oom.peak_rss_of(worker.pid))
