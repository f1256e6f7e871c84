"""The pool: start, feed, watch and replace worker processes (see the package docstring).

``LocalExecutor`` is the one owner of the pool's state; its parts are
objects it builds once and calls through a few public methods:

    LocalExecutor ── owns ──▶ PoolState (state): idle, busy, events, limits, writers
      │                       Watch (state): the poll and whose each fd is
      │                       MachineValues (..machine): the run's store
      │                       placement state: _posted, _room, _typical
      ├─ receive, read_raw ──────────▶ Inbound (inbound): messages and raw output
      │                                  │ begin, finish ◀── callbacks of the pool
      └─ died, timed_out, sample_memory ▶ Deaths (deaths): gone and stuck workers
                                           │ drain, read_all_raw ──▶ Inbound
                                           │ finish, place ◀── callbacks of the pool

The parts keep references to ``PoolState``'s containers, which are changed
in place and never replaced (``wait`` hands the runner a copy of the events
and clears them). The pool keeps the placement (``submit``, ``chain``,
``free_slots``), the task lifecycle (``_begin``, ``_finish``) and the
worker lifecycle (starting, ``shutdown``).

The pool *has* a ``MachineValues`` rather than being one: the store is the
same for the inline executor, and the pool adds to it only that a released
value leaves the ``writers`` map (``release``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...pipeline.pipeline import ModuleSource
from ...settings import Tuning, default_start_method, tuning
from ...store import Decoded, Handle, StoreConfig
from ..base import (
    Capabilities,
    ErrorInfo,
    Event,
    Ref,
    Started,
    TaskKey,
    TaskMetrics,
    TaskOutcome,
    TaskSpec,
)
from ..failure import error_info
from ..machine import MachineValues
from . import exits, handle, wire
from .child import WorkerInit
from .deaths import Deaths
from .handle import PRELOAD, Worker
from .inbound import Inbound
from .placement import Limits, WorkerView, Writers, held_by, may_chain, may_queue, place
from .state import PoolState, Watch

# The pool's tuning numbers (their reasons are in ``settings.Tuning``):


class LocalExecutor(Capabilities):
    """A pool of worker processes that survives crashes and enforces timeouts."""

    name = "local"

    def __init__(
        self,
        funcs: Mapping[str, Callable[..., Any]],
        config: StoreConfig,
        *,
        workers: int,
        start_method: str | None = None,
        sources: Sequence[ModuleSource] = (),
        max_tasks_per_worker: int | None = None,
        resources: Mapping[str, Callable[[], Any]] | None = None,
        numbers: Tuning | None = None,
    ) -> None:
        self._values = MachineValues(config)  # first: it clears a dead driver's leftovers
        self.config = config
        self.workers = workers
        self.start_method = start_method or default_start_method()
        self._ctx = mp.get_context(self.start_method)
        if self.start_method == "forkserver":
            named = [s.module for s in sources if s.path is None]
            self._ctx.set_forkserver_preload([*PRELOAD, *named])
        blob = pickle.dumps((dict(funcs), dict(resources or {})))
        numbers = numbers or tuning()  # the run's, in force while it runs
        self._init = WorkerInit(tuple(sources), blob, config, os.getpid(), numbers)
        self._startup_grace = numbers.startup_grace_s
        self._sample_every = numbers.sample_every_s
        self._term_grace = numbers.term_grace_s
        state = PoolState(Limits(numbers.prefetch, numbers.short_task_s, max_tasks_per_worker),
                          Writers(numbers.near_min))
        # The state's containers and parts' methods, bound once: the hot path reads them here.
        self._limits = state.limits
        self.writers = state.writers  # large segment -> pid of the worker that wrote it
        self._idle = state.idle
        self._busy = state.busy
        self._events = state.events
        self._watch = Watch()
        self._posted: list[Worker] = []  # workers with tasks not written yet
        self._room: Worker | None = None  # where ``free_slots`` found room just now
        self._funcs = funcs
        self._typical: dict[Any, float] = {}  # function -> typical wall time of its tasks
        inbound = Inbound(state, self._watch, begin=self._begin, finish=self._finish,
                          numbers=numbers)
        deaths = Deaths(state, self._watch, inbound, finish=self._finish, place=self._place,
                        numbers=numbers)
        self._receive = inbound.receive
        self._read_raw = inbound.read_raw
        self._died = deaths.died
        self._timed_out = deaths.timed_out
        self._sample_memory = deaths.sample_memory

    # -- protocol --------------------------------------------------------
    def free_slots(self) -> int:
        free = self.workers - len(self._busy)  # idle workers and those not started yet
        if free > 0:
            return free  # the runner asks again after each submit: no need to count queues
        # One is enough: the runner asks again after each submit, and the room a worker
        # has left depends on how long the tasks it was given take.
        self._room = self._roomiest()  # the next ``submit`` goes there (nothing changes between)
        return 0 if self._room is None else 1

    def could_chain(self, after: TaskKey) -> bool:
        """Whether ``chain`` would take a task to run behind ``after`` now."""
        return self._chain_behind(after) is not None

    def chain(self, spec: TaskSpec) -> bool:
        """Queue ``spec`` behind ``spec.after`` in its worker, when that task runs there alone."""
        worker = self._chain_behind(spec.after)
        if worker is None:
            return False
        try:
            payload = wire.task_message(spec)
        except Exception:  # noqa: BLE001 - submitted the ordinary way, which reports it
            return False
        worker.hold(spec, self._typical_of(spec))
        self._room = None
        self._post(worker, payload)
        return True

    def _chain_behind(self, after: TaskKey | None) -> Worker | None:
        worker = next((w for w in self._busy.values()
                       if w.spec is not None and w.spec.key == after), None)
        if worker is None or not may_chain(self._view(worker), self._limits):
            return None
        return worker

    def submit(self, spec: TaskSpec) -> int | None:
        try:
            payload = wire.task_message(spec)
        except Exception as exc:  # noqa: BLE001 - a parameter value that does not pickle
            exc.add_note(f"the arguments of stage {spec.key.stage!r} could not be pickled "
                         f"for a worker process; pass parameters that pickle")
            self._never_ran(spec, error_info(exc, spec.key.stage))
            return None
        return self._place(spec, payload)

    def wait(self, timeout: float | None, wake: int | None = None) -> list[Event]:
        events = self._events
        if not events:
            self._wait(timeout, wake)
        happened = events.copy()  # the list itself is the parts' too: kept, emptied
        events.clear()
        return happened

    def release(self, ref: Ref) -> None:
        """``ref`` has no consumer left: freed, and no longer draws tasks to its writer."""
        self.writers.released(ref)
        self._values.release(ref)

    def read(self, ref: Handle, stage: str) -> Decoded:
        """The value behind ``ref``, in this process (a requested output)."""
        return self._values.read(ref, stage)

    def notice(self, ref: Ref) -> str | None:
        """A remark said once per run: values spill to disk because shared memory is short."""
        return self._values.notice(ref)

    def close(self) -> None:
        """Free every value of the run still held; the pool is not used after."""
        self._values.close()
        # The parts call back into the pool; once the pool lets go of them, reference
        # counting frees all of it (a finished run must not wait for the cycle collector).
        del self._receive, self._read_raw, self._died, self._timed_out, self._sample_memory

    def shutdown(self, *, cancel: bool = False) -> None:
        workers = self._idle + list(self._busy.values())
        self._idle.clear()
        self._busy.clear()
        for worker in workers:
            if cancel or worker.spec is not None:
                exits.terminate(worker.process)
            else:
                worker.send(wire.STOP)
        for worker in workers:
            worker.process.join(self._term_grace)
            exits.terminate(worker.process)
            self._watch.forget(worker)

    def kill_all(self) -> None:
        """SIGKILL every worker; only signals are sent (this runs on a second Ctrl-C)."""
        for worker in (*self._idle, *self._busy.values()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(worker.pid, signal.SIGKILL)

    # -- placing tasks ---------------------------------------------------
    def _place(self, spec: TaskSpec, payload: bytes) -> int | None:
        """Send a task where ``placement.place`` says; its worker's pid if it starts now."""
        if not self.writers and held_by(spec) is None:  # nothing pins or draws it: no records
            if self._idle:
                return self._start_on(self._idle.pop(), spec, payload)
            roomiest, self._room = self._room or self._roomiest(), None
            if roomiest is not None and len(self._busy) >= self.workers:
                return self._start_on(roomiest, spec, payload)
        busy = {w.pid: w for w in self._busy.values()}
        where = place(spec, [w.pid for w in self._idle], [self._view(w) for w in busy.values()],
                      size=self.workers, limits=self._limits, writers=self.writers)
        if where.lost is not None:
            self._never_ran(spec, exits.lost_input_info(where.lost))
            return None
        if where.idle is not None:
            worker = self._idle.pop(where.idle)
        elif where.new:
            worker = self._start_worker()
        else:
            assert where.busy is not None  # a placement names one of idle, new, busy
            worker = busy[where.busy]
        return self._start_on(worker, spec, payload)

    def _roomiest(self) -> Worker | None:
        """The busy worker that may queue a task and holds the least work (as ``place`` picks)."""
        best, least = None, None
        for worker in self._busy.values():
            view = self._view(worker)
            if may_queue(view, self._limits) and (least is None or (view.held_s, view.held)
                                                  < least):
                best, least = worker, (view.held_s, view.held)
        return best

    def _start_on(self, worker: Worker, spec: TaskSpec, payload: bytes) -> int | None:
        """Hand ``spec`` to ``worker``; its pid if it starts now (not queued behind another)."""
        worker.hold(spec, self._typical_of(spec))
        starts_now = len(worker.queue) == 1
        if starts_now:
            self._begin(worker)
            self._busy[worker.conn] = worker
            worker.send(payload)
            return worker.pid
        self._post(worker, payload)
        return None

    def _post(self, worker: Worker, payload: bytes) -> None:
        """Send a queued task with the worker's others of this round, before the pool waits
        (it cannot start before the worker's running task ends anyway)."""
        if not worker.outbox:
            self._posted.append(worker)
        worker.post(payload)

    def flush(self) -> None:
        """Write the tasks submitted since the last call: one write per worker."""
        for worker in self._posted:
            worker.flush()
        self._posted.clear()

    def _view(self, worker: Worker) -> WorkerView:
        return WorkerView(worker.pid, len(worker.queue), None if worker.unknown else
                          worker.held_s, worker.ready, worker.tasks_done)

    def _typical_of(self, spec: TaskSpec) -> float | None:
        return self._typical.get(self._funcs.get(spec.key.stage))

    def _never_ran(self, spec: TaskSpec, info: ErrorInfo) -> None:
        """A task that fails before any worker ran it (no pid: ``Started`` is never sent)."""
        self._events.append(TaskOutcome(spec.key, spec.attempt, None, info, TaskMetrics(0)))

    def _begin(self, worker: Worker) -> None:
        spec = worker.queue[0]
        if worker.ready:
            worker.deadline = time.monotonic() + spec.timeout if spec.timeout else None
        else:  # start-up (imports) is not the task's run time, but may not hang forever
            worker.deadline = time.monotonic() + self._startup_grace
        worker.peak_rss = 0

    # -- waiting -------------------------------------------------------------
    def _wait(self, timeout: float | None, wake: int | None) -> None:
        self.flush()
        self._room = None  # workers may finish or die meanwhile
        if wake is not None:
            self._watch.wake(wake)
        deadline = min((w.deadline for w in self._busy.values() if w.deadline), default=None)
        if deadline is not None:
            until = max(0.0, deadline - time.monotonic())
            timeout = until if timeout is None else min(timeout, until)
        if not self._busy and timeout is None and wake is None:
            return
        if self._busy:
            every = self._sample_every
            timeout = every if timeout is None else min(timeout, every)
        # Messages read in an earlier wake but not handled yet: no waiting while they wait.
        waiting = [w for w in (*self._busy.values(), *self._idle) if w.inbox.has_message()]
        if waiting:
            timeout = 0
        found = self._watch.poll(timeout)  # resolved: see ``Watch.poll``
        self._sample_memory()
        for worker in waiting:
            if not worker.gone:
                self._receive(worker, read=False)
        died = []
        for fd, worker, what in found:
            if worker.gone:
                continue
            if what == "sentinel":
                died.append(worker)
            elif what == "conn":
                self._receive(worker)
            else:
                self._read_raw(worker, fd)
        for worker in died:
            if not worker.gone:
                self._died(worker)
        now = time.monotonic()
        for worker in list(self._busy.values()):
            if worker.deadline is not None and worker.deadline <= now:
                self._timed_out(worker)

    def _finish(self, worker: Worker, outcome: TaskOutcome | None) -> None:
        """The worker's current task ended (``None``: a chained task that did not run)."""
        spec = worker.take()
        if outcome is not None:
            self._events.append(outcome)
            self._learn(worker, spec, outcome)
        if worker.queue:
            self._begin(worker)
            following = worker.queue[0]
            if following.after is None or (outcome is not None and outcome.error is None):
                self._events.append(Started(following, worker.pid))
            # else its predecessor failed: the worker skips it (nothing to report)
        else:
            del self._busy[worker.conn]
            worker.deadline = None

    def _learn(self, worker: Worker, spec: TaskSpec, outcome: TaskOutcome) -> None:
        """Remember how long the stage's tasks take and where large results were written."""
        self.writers.wrote(outcome.handle, worker.pid)
        if outcome.error is None:
            func = self._funcs.get(spec.key.stage)
            wall = outcome.metrics.wall_s
            known = self._typical.get(func)
            self._typical[func] = wall if known is None else 0.7 * known + 0.3 * wall

    # -- processes -------------------------------------------------------------
    def _start_worker(self) -> Worker:
        worker = handle.start(self._ctx, self._init)
        self._watch.add(worker)
        return worker
