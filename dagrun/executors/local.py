"""The local executor: a supervised pool of worker processes on this machine.

    runner ── submit(spec) ──▶ _Worker.conn ──▶ worker process: _worker_main
                                                   │ execute(spec) → TaskOutcome
    runner ◀── wait() ◀── conn (outcome) ◀─────────┘
              ▲
              └── process sentinels: a worker that dies is noticed at once

A task whose input was kept in a worker (a large result with one consumer,
see ``store.held``) goes to that worker, whatever it is doing; any other
task goes to the idle worker that wrote most of its large inputs, which
still has them mapped. A task ``chain``ed behind the one a worker is running
waits in the same pipe; the worker hands it the result of the task before
it, or, if that task failed, answers ``skipped`` without running it; if the
worker dies, chained tasks are dropped and the runner plans them again.

Each worker has its own pipe and runs one task at a time, so the executor
always knows which task a dead worker was running. Behind a task whose
function is known to be short (a few ms), one more task may be queued in
the worker's pipe, so short tasks do not wait for a driver round trip; a
queued task that never started is sent elsewhere if its worker dies. The
task that was running when a worker died: that task alone fails,
with how the worker died (exit code or signal), its peak memory (from
``wait4`` for our own children, else the last sample) and, when the
evidence points there (the memory cgroup's ``oom_kill`` count rose, or the
worker held most of the memory limit), "likely killed by the out-of-memory
killer"; a fresh worker takes its place. Messages are pickled to bytes
before anything is written, so a value that fails to pickle fails its task
and never leaves half a message in a pipe; a task whose arguments fail to
unpickle in the worker is reported as that task's error (or, if unpickling
kills the worker, as its crash). ``wait``
blocks in one ``poll`` object on every pipe and every sentinel together
(registered once per worker, not per call) and on the nearest task
deadline, so timeouts need no timer thread. Workers start lazily, up to
``workers``, and die with the driver (``PR_SET_PDEATHSIG`` plus end-of-file
on their pipe; under forkserver, whose workers are not the driver's
children, a thread blocked on a pidfd of the driver).
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing as mp
import os
import pickle
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from ..pipeline import ModuleSource
from ..store import HELD, Handle, StoreConfig
from ..store.config import segment_refs
from . import oom
from .base import (
    ErrorInfo,
    Event,
    ExecutorContext,
    Started,
    TaskMetrics,
    TaskOutcome,
    TaskSpec,
    output_handles,
)
from .machine import MachineValues

_TERM_GRACE_S = 1.0
_PR_SET_PDEATHSIG = 1
_SAMPLE_EVERY_S = 0.5  # peak-memory samples of workers we cannot wait4 (forkserver)
_STARTUP_GRACE_S = 30.0
_PREFETCH = 2  # tasks a worker may hold: the running one and one queued behind it
_SHORT_TASK_S = 0.005  # only tasks typically shorter than this get one queued behind them
_NEAR_MIN = 1 << 20  # results from this size on pull their consumers to the worker that wrote them
_READY = b"ready"  # a worker's first message: imports done, the timeout clock may start
_SKIPPED = b"skipped"  # a chained task whose predecessor failed was not run


@dataclass(frozen=True)
class WorkerInit:
    """Everything a fresh worker needs; stages travel pickled, loaded after their modules."""

    sources: tuple[ModuleSource, ...]
    funcs_blob: bytes  # pickled (stage funcs, @worker_init funcs), by reference
    config: StoreConfig
    driver_pid: int


class _Worker:
    def __init__(self, process: mp.process.BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.queue: deque[TaskSpec] = deque()  # the running task first, then prefetched ones
        self.deadline: float | None = None
        self.tasks_done = 0
        self.fds: tuple[int, ...] = ()
        self.peak_rss = 0  # highest sample during the current task (forkserver only)
        self.ready = False  # has said it finished starting up

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    @property
    def spec(self) -> TaskSpec | None:
        """The task this worker is running now."""
        return self.queue[0] if self.queue else None


def create(context: ExecutorContext) -> LocalExecutor:
    """The ``local`` executor of a run: a pool of ``context.workers`` processes."""
    return LocalExecutor(
        context.funcs,
        context.config,
        workers=context.workers,
        start_method=context.start_method,
        sources=context.sources,
        max_tasks_per_worker=context.max_tasks_per_worker,
        resources=context.resources,
    )


class LocalExecutor(MachineValues):
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
    ) -> None:
        super().__init__(config)
        self.workers = workers
        self.start_method = start_method or mp.get_start_method(allow_none=False)
        self._ctx = mp.get_context(self.start_method)
        if self.start_method == "forkserver":
            self._ctx.set_forkserver_preload(["dagrun.executors.local", "numpy", "pyarrow"])
        blob = pickle.dumps((dict(funcs), dict(resources or {})))
        self._init = WorkerInit(tuple(sources), blob, config, os.getpid())
        self._max_tasks = max_tasks_per_worker
        self._oom = oom.OomWatch()
        self._sample = self.start_method == "forkserver"  # not our children: no wait4
        self._sampled_at = 0.0
        self._poll = select.poll()
        self._watched: dict[int, tuple[_Worker, bool] | None] = {}  # fd -> (worker, is sentinel)
        self._idle: list[_Worker] = []
        self._busy: dict[Connection, _Worker] = {}
        self._events: list[Event] = []  # outcomes and starts, in the order they happened
        self._funcs = funcs
        self._typical: dict[Any, float] = {}  # function -> typical wall time of its tasks
        self._writer: dict[str, int] = {}  # large segment -> pid of the worker that wrote it

    # -- protocol --------------------------------------------------------
    def free_slots(self) -> int:
        unstarted = self.workers - len(self._idle) - len(self._busy)
        room = sum(_PREFETCH - len(w.queue) for w in self._busy.values() if self._can_queue(w))
        return len(self._idle) + unstarted + room

    def chain(self, spec: TaskSpec) -> bool:
        """Queue ``spec`` behind ``spec.after`` in its worker, when that task runs there alone."""
        worker = next((w for w in self._busy.values() if w.spec is not None
                       and w.spec.key == spec.after), None)
        if worker is None or len(worker.queue) != 1:
            return False
        if self._max_tasks and worker.tasks_done + 2 > self._max_tasks:
            return False
        try:
            payload = ForkingPickler.dumps(spec)
        except Exception:  # noqa: BLE001 - submitted the ordinary way, which reports it
            return False
        worker.queue.append(spec)
        try:
            worker.conn.send_bytes(payload)
        except (OSError, EOFError):
            pass  # the worker is dead: its sentinel reports it in wait()
        return True

    def submit(self, spec: TaskSpec) -> int | None:
        try:
            payload = ForkingPickler.dumps(spec)
        except Exception as exc:  # noqa: BLE001 - a parameter value that does not pickle
            from .worker import error_info

            exc.add_note(f"the arguments of stage {spec.key.stage!r} could not be pickled "
                         f"for a worker process; pass parameters that pickle")
            info = error_info(exc, spec.key.stage)
            self._events.append(
                TaskOutcome(spec.key, spec.attempt, None, info, TaskMetrics(os.getpid()))
            )
            return os.getpid()
        return self._place(spec, payload)

    def _place(self, spec: TaskSpec, payload: bytes) -> int | None:
        """Send a task to an idle or new worker, else queue it behind a short one.

        Returns the worker's pid when the task starts at once, None when it is
        queued (``wait`` reports it as ``Started`` when it begins).
        """
        holder = held_by(spec)
        if holder is not None:
            worker = self._worker(holder)
            if worker is None:
                self._lost_input(spec, holder)
                return os.getpid()
            if worker in self._idle:
                self._idle.remove(worker)
        elif self._idle:
            worker = self._idle.pop(self._nearest_idle(spec))
        elif len(self._busy) < self.workers:
            worker = self._start_worker()
        else:
            worker = min(
                (w for w in self._busy.values() if self._can_queue(w)),
                key=lambda w: len(w.queue),
            )
        worker.queue.append(spec)
        starts_now = len(worker.queue) == 1
        if starts_now:
            self._begin(worker)
            self._busy[worker.conn] = worker
        try:
            worker.conn.send_bytes(payload)
        except (OSError, EOFError):
            pass  # the worker is dead: its sentinel reports it in wait()
        return worker.pid if starts_now else None

    def _nearest_idle(self, spec: TaskSpec) -> int:
        """Index in ``_idle`` of the worker that wrote most of ``spec``'s input bytes.

        That worker still has those segments mapped: it reads them without
        faulting a page in. Ties (and tasks without large inputs) take the
        worker that went idle last.
        """
        best, best_bytes = len(self._idle) - 1, 0
        if len(self._idle) < 2 or not spec.inputs or not self._writer:
            return best
        made: dict[int, int] = {}
        for output in spec.inputs.values():
            for handle in output_handles(output):
                for ref in segment_refs(handle):
                    pid = self._writer.get(ref.name)
                    if pid is not None:
                        made[pid] = made.get(pid, 0) + ref.size
        for index, worker in enumerate(self._idle):
            if made.get(worker.pid, 0) > best_bytes:
                best, best_bytes = index, made[worker.pid]
        return best

    def _worker(self, pid: int) -> _Worker | None:
        """The live worker with this pid, idle or busy."""
        for worker in (*self._idle, *self._busy.values()):
            if worker.pid == pid:
                return worker
        return None

    def _lost_input(self, spec: TaskSpec, pid: int) -> None:
        message = (
            f"its input was kept in worker process {pid}, which has exited; run again, or "
            f"set DAGRUN_HOLD_MIN=off so large results always go to shared memory"
        )
        info = ErrorInfo("crashed", "WorkerCrashed", message)
        self._events.append(TaskOutcome(spec.key, spec.attempt, None, info,
                                        TaskMetrics(os.getpid())))

    def _begin(self, worker: _Worker) -> None:
        spec = worker.queue[0]
        # Start-up (imports) is not the task's run time, but may not hang forever either.
        worker.deadline = _deadline(spec, 0.0 if worker.ready else _STARTUP_GRACE_S)
        worker.peak_rss = 0

    def _can_queue(self, worker: _Worker) -> bool:
        """Queue behind this worker only if everything it holds is known to be short.

        Prefetching saves the driver round trip between short tasks; behind a
        long task it would leave the queued one waiting while other workers idle.
        """
        if len(worker.queue) >= _PREFETCH or not worker.ready:
            return False
        if self._max_tasks and worker.tasks_done + len(worker.queue) >= self._max_tasks:
            return False
        for spec in worker.queue:
            typical = self._typical.get(self._funcs.get(spec.key.stage))
            if typical is None or typical > _SHORT_TASK_S:
                return False
        return True

    def wait(self, timeout: float | None, wake: int | None = None) -> list[Event]:
        if not self._events:
            self._wait(timeout, wake)
        events, self._events = self._events, []
        return events

    def _wait(self, timeout: float | None, wake: int | None) -> None:
        if wake is not None and wake not in self._watched:
            self._watched[wake] = None
            self._poll.register(wake, select.POLLIN)
        deadline = min((w.deadline for w in self._busy.values() if w.deadline), default=None)
        if deadline is not None:
            until = max(0.0, deadline - time.monotonic())
            timeout = until if timeout is None else min(timeout, until)
        if not self._busy and timeout is None and wake is None:
            return
        if self._sample and self._busy:
            timeout = _SAMPLE_EVERY_S if timeout is None else min(timeout, _SAMPLE_EVERY_S)
        ready = self._poll.poll(None if timeout is None else math.ceil(timeout * 1000))
        if self._sample:
            self._sample_memory()
        died = []
        for fd, _ in ready:
            watched = self._watched.get(fd)
            if watched is None:
                continue
            worker, is_sentinel = watched
            if is_sentinel:
                died.append(worker)
            elif worker.conn in self._busy:
                self._receive(worker)
        for worker in died:
            if worker.conn in self._busy:
                self._crashed(worker)
            elif worker in self._idle:
                self._idle.remove(worker)  # an idle worker died: simply not reused
                _reap(worker.process)
                self._forget(worker)
        now = time.monotonic()
        for worker in list(self._busy.values()):
            if worker.deadline is not None and worker.deadline <= now:
                self._timed_out(worker)

    def shutdown(self, *, cancel: bool = False) -> None:
        workers = self._idle + list(self._busy.values())
        self._idle, self._busy = [], {}
        for worker in workers:
            if cancel or worker.spec is not None:
                _terminate(worker.process)
            else:
                try:
                    worker.conn.send(None)
                except (OSError, EOFError):
                    pass
        for worker in workers:
            worker.process.join(_TERM_GRACE_S)
            if worker.process.is_alive():
                _terminate(worker.process)
            self._forget(worker)

    def kill_all(self) -> None:
        """Kill every worker at once (a second Ctrl-C)."""
        for worker in self._idle + list(self._busy.values()):
            if worker.process.pid and worker.process.is_alive():
                os.kill(worker.process.pid, signal.SIGKILL)

    # -- internals -------------------------------------------------------
    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main, args=(child_conn, self._init), name="dagrun-worker", daemon=False
        )
        process.start()
        child_conn.close()
        worker = _Worker(process, parent_conn)
        worker.fds = (parent_conn.fileno(), process.sentinel)
        for fd, is_sentinel in zip(worker.fds, (False, True), strict=True):
            self._watched[fd] = (worker, is_sentinel)
            self._poll.register(fd, select.POLLIN)
        return worker

    def _forget(self, worker: _Worker) -> None:
        """Stop watching a worker that is gone; free its pipe and its process's fds."""
        for fd in worker.fds:
            if self._watched.pop(fd, None) is not None:
                self._poll.unregister(fd)
        worker.conn.close()
        if worker.process.exitcode is not None:
            worker.process.close()  # else the sentinel stays open until garbage collection

    def _receive(self, worker: _Worker) -> None:
        spec = worker.spec
        assert spec is not None
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):
            return  # died mid-send; the sentinel tells how
        if data == _READY:
            worker.ready = True
            worker.deadline = _deadline(spec)
            return
        try:
            # None: chained behind a task that failed, it did not run
            message = None if data == _SKIPPED else pickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - an outcome that fails to unpickle
            message = ErrorInfo(
                "raised", type(exc).__name__, f"the result could not be read: {exc}"
            )
        if isinstance(message, ErrorInfo):  # the worker could not even read the task
            message = TaskOutcome(spec.key, spec.attempt, None, message, TaskMetrics(worker.pid))
        self._finish(worker, message)
        worker.tasks_done += 1
        if worker.queue:
            return  # it went straight on to its next task
        if self._max_tasks and worker.tasks_done >= self._max_tasks:
            try:
                worker.conn.send(None)
            except (OSError, EOFError):
                pass
            worker.process.join(_TERM_GRACE_S)
            _terminate(worker.process)
            self._forget(worker)
        else:
            self._idle.append(worker)

    def _finish(self, worker: _Worker, outcome: TaskOutcome | None) -> None:
        """The worker's current task ended (``None``: a chained task that did not run)."""
        spec = worker.queue.popleft()
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

    def _learn(self, worker: _Worker, spec: TaskSpec, outcome: TaskOutcome) -> None:
        """Remember how long the stage's tasks take and where large results were written."""
        if outcome.handle is not None and outcome.handle.nbytes >= _NEAR_MIN:
            for ref in segment_refs(outcome.handle):
                self._writer[ref.name] = worker.pid
        if outcome.error is None:
            func = self._funcs.get(spec.key.stage)
            wall = outcome.metrics.wall_s
            known = self._typical.get(func)
            self._typical[func] = wall if known is None else 0.7 * known + 0.3 * wall

    def _crashed(self, worker: _Worker) -> None:
        exitcode, peak = _reap(worker.process)
        exact = peak is not None
        if peak is None:
            peak = worker.peak_rss or None
        oom_kills = self._oom.new_kills() if exitcode == -signal.SIGKILL else 0
        message = describe_exit(
            worker.pid, exitcode, peak_rss=peak, peak_exact=exact, oom_kills=oom_kills,
            memory_limit=self._oom.limit, started=worker.ready,
        )
        self._fail(worker, ErrorInfo("crashed", "WorkerCrashed", message))

    def _sample_memory(self) -> None:
        now = time.monotonic()
        if now - self._sampled_at < _SAMPLE_EVERY_S:
            return
        self._sampled_at = now
        for worker in self._busy.values():
            worker.peak_rss = max(worker.peak_rss, oom.peak_rss_of(worker.pid))

    def _timed_out(self, worker: _Worker) -> None:
        spec = worker.spec
        assert spec is not None
        _terminate(worker.process)
        message = (
            f"timed out after {spec.timeout:g} s; its worker (pid {worker.pid}) was stopped"
        )
        self._fail(worker, ErrorInfo("timeout", "StageTimeout", message))

    def _fail(self, worker: _Worker, info: ErrorInfo) -> None:
        spec = worker.spec
        assert spec is not None
        outcome = TaskOutcome(spec.key, spec.attempt, None, info, TaskMetrics(worker.pid))
        # Prefetched, never started: they go elsewhere; chained ones need this
        # task's result, so the runner plans them again once it has one.
        queued = [q for q in list(worker.queue)[1:] if q.after is None]
        worker.queue.clear()
        worker.queue.append(spec)
        self._finish(worker, outcome)
        self._forget(worker)
        for waiting in queued:
            pid = self._place(waiting, ForkingPickler.dumps(waiting))
            if pid is not None:
                self._events.append(Started(waiting, pid))


def held_by(spec: TaskSpec) -> int | None:
    """The pid of the worker keeping one of ``spec``'s inputs (see ``store.held``), if any."""
    for output in spec.inputs.values():
        if isinstance(output, Handle) and output.transport == HELD:
            return output.payload.pid
    return None


def describe_exit(
    pid: int,
    exitcode: int | None,
    *,
    peak_rss: int | None = None,
    peak_exact: bool = True,
    oom_kills: int = 0,
    memory_limit: int | None = None,
    started: bool = True,
) -> str:
    """How a worker process ended, in words, with the evidence about memory.

    "likely killed by the out-of-memory killer" is said only for a SIGKILL
    that dagrun did not send (dagrun's own kills are timeouts and reported as
    such) and only when the memory cgroup counted new OOM kills, or the
    worker's peak memory was at least half the memory limit.
    """
    when = "while running it" if started else "while starting up, before it could run it"
    if exitcode is None:
        text = f"its worker process (pid {pid}) stopped responding {when}"
    elif exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        text = f"its worker process (pid {pid}) was killed by {name} {when}"
        if -exitcode == signal.SIGSEGV:
            text += " (a crash in native code)"
    else:
        text = f"its worker process (pid {pid}) exited with code {exitcode} {when}"
    if peak_rss:
        text += f"; peak memory {'' if peak_exact else 'at least '}{oom.format_bytes(peak_rss)}"
    if exitcode == -signal.SIGKILL:
        high = bool(peak_rss and memory_limit and peak_rss >= memory_limit // 2)
        if oom_kills:
            text += (
                "; likely killed by the out-of-memory killer (the memory cgroup counted "
                f"{oom_kills} new OOM kill{'s' if oom_kills > 1 else ''})"
            )
        elif high:
            text += (
                "; likely killed by the out-of-memory killer (it used at least half of the "
                f"{oom.format_bytes(memory_limit or 0)} memory limit)"
            )
        else:
            text += "; the signal did not come from dagrun"
    return text


def _deadline(spec: TaskSpec, grace: float = 0.0) -> float | None:
    return time.monotonic() + spec.timeout + grace if spec.timeout else None


def _reap(process: mp.process.BaseProcess) -> tuple[int | None, int | None]:
    """Exit code and peak RSS (bytes) of a worker whose sentinel fired.

    Our own children (fork, spawn) are reaped with ``wait4``, whose rusage
    holds the peak RSS since the task began (``execute`` resets it); the exit
    status is handed to multiprocessing's ``Popen`` so it does not wait again.
    Forkserver workers are not our children: their exit code comes from
    multiprocessing and the peak is unknown here.
    """
    pid = process.pid
    popen = getattr(process, "_popen", None)
    if pid and popen is not None and getattr(popen, "returncode", 0) is None:
        deadline = time.monotonic() + _TERM_GRACE_S
        while True:
            try:
                got, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                break  # not ours (forkserver), or already reaped
            if got == pid:
                popen.returncode = os.waitstatus_to_exitcode(status)
                return popen.returncode, usage.ru_maxrss * 1024
            if time.monotonic() >= deadline:
                break
            time.sleep(0.001)  # the sentinel fires a moment before the process is reapable
    process.join(_TERM_GRACE_S)
    if process.is_alive():  # it closed its pipes but lives on: stop it
        _terminate(process)
        return None, None
    return process.exitcode, None


def _terminate(process: mp.process.BaseProcess) -> None:
    if not process.is_alive():
        return
    process.terminate()
    process.join(_TERM_GRACE_S)
    if process.is_alive():
        process.kill()
        process.join()


def _die_with_parent(driver_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        os._exit(0)
    if os.getppid() != driver_pid:
        _watch_driver(driver_pid)


def _watch_driver(driver_pid: int) -> None:
    """Die with the driver when it is not our parent (forkserver).

    A forkserver worker's parent is the fork server, which outlives a SIGKILLed
    driver as long as any worker holds its "alive" pipe: the death signal alone
    would leave such workers running. A daemon thread blocks on a pidfd of the
    driver (or, without pidfds, checks it once a second) and kills this worker.
    """
    try:
        fd: int | None = os.pidfd_open(driver_pid)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while True:
                time.sleep(1.0)
                try:
                    os.kill(driver_pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="dagrun-driver-watch", daemon=True).start()


def _worker_main(conn: Connection, init: WorkerInit) -> None:
    # The driver owns signals: Ctrl-C reaches the whole process group, and the
    # driver alone decides what to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(init.driver_pid)
    from ..loader import import_source
    from ..resources import Resources
    from .worker import error_info, execute

    for source in init.sources:
        import_source(source)
    funcs, resource_funcs = pickle.loads(init.funcs_blob)
    resources = Resources(resource_funcs)
    _reply(conn, _READY, pickled=False)
    last: TaskOutcome | None = None  # the previous task's outcome, for a chained task
    try:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                return
            try:
                spec = pickle.loads(data)
            except Exception as exc:  # noqa: BLE001 - the driver knows which task this was
                exc.add_note("while the worker unpickled the task's arguments")
                _reply(conn, error_info(exc, "?"))
                last = None
                continue
            if spec is None:
                return
            if spec.after is not None:
                if last is None or last.key != spec.after or last.handle is None:
                    _reply(conn, _SKIPPED, pickled=False)
                    last = None
                    continue
                spec = spec.resolved(last.handle)
            outcome = execute(spec, funcs[spec.key.stage], init.config, resources, in_worker=True)
            last = outcome
            try:
                payload = ForkingPickler.dumps(outcome)
            except Exception as exc:  # noqa: BLE001 - never leave the driver without an answer
                info = error_info(exc, spec.key.stage)
                payload = ForkingPickler.dumps(
                    TaskOutcome(spec.key, spec.attempt, None, info, outcome.metrics)
                )
                last = None
            conn.send_bytes(payload)
    finally:
        resources.close()


def _reply(conn: Connection, message: Any, *, pickled: bool = True) -> None:
    try:
        conn.send_bytes(ForkingPickler.dumps(message) if pickled else message)
    except (OSError, EOFError):
        pass
