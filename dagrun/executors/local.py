"""The local executor: a supervised pool of worker processes on this machine.

    runner ── submit(spec) ──▶ _Worker.conn ──▶ worker process: _worker_main
                                                   │ execute(spec) → TaskOutcome
    runner ◀── wait() ◀── conn (outcome) ◀─────────┘
              ▲
              └── process sentinels: a worker that dies is noticed at once

Each worker has its own pipe and runs one task at a time, so the executor
always knows which task a dead worker was running: that task alone fails,
with how the worker died, and a fresh worker takes its place. ``wait``
blocks in one ``poll`` object on every pipe and every sentinel together
(registered once per worker, not per call) and on the nearest task
deadline, so timeouts need no timer thread. Workers start lazily, up to
``workers``, and die with the driver (``PR_SET_PDEATHSIG`` plus end-of-file
on their pipe).
"""

from __future__ import annotations

import ctypes
import math
import multiprocessing as mp
import os
import pickle
import select
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from ..pipeline import ModuleSource
from ..store import StoreConfig
from .base import ErrorInfo, TaskMetrics, TaskOutcome, TaskSpec

_TERM_GRACE_S = 1.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerInit:
    """Everything a fresh worker needs; stages travel pickled, loaded after their modules."""

    sources: tuple[ModuleSource, ...]
    funcs_blob: bytes
    config: StoreConfig
    driver_pid: int


class _Worker:
    def __init__(self, process: mp.process.BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.spec: TaskSpec | None = None
        self.deadline: float | None = None
        self.tasks_done = 0
        self.fds: tuple[int, ...] = ()

    @property
    def pid(self) -> int:
        return self.process.pid or 0


class LocalExecutor:
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
    ) -> None:
        self.workers = workers
        self.start_method = start_method or mp.get_start_method(allow_none=False)
        self._ctx = mp.get_context(self.start_method)
        if self.start_method == "forkserver":
            self._ctx.set_forkserver_preload(["dagrun.executors.local", "numpy", "pyarrow"])
        self._init = WorkerInit(tuple(sources), pickle.dumps(dict(funcs)), config, os.getpid())
        self._max_tasks = max_tasks_per_worker
        self._poll = select.poll()
        self._watched: dict[int, tuple[_Worker, bool] | None] = {}  # fd -> (worker, is sentinel)
        self._idle: list[_Worker] = []
        self._busy: dict[Connection, _Worker] = {}
        self._outcomes: list[TaskOutcome] = []

    # -- protocol --------------------------------------------------------
    def free_slots(self) -> int:
        return self.workers - len(self._busy)

    def submit(self, spec: TaskSpec) -> int:
        worker = self._idle.pop() if self._idle else self._start_worker()
        worker.spec = spec
        worker.deadline = time.monotonic() + spec.timeout if spec.timeout else None
        self._busy[worker.conn] = worker
        try:
            worker.conn.send(spec)
        except (OSError, EOFError):
            pass  # the worker is dead: its sentinel reports it in wait()
        return worker.pid

    def wait(self, timeout: float | None, wake: int | None = None) -> list[TaskOutcome]:
        if not self._outcomes:
            self._wait(timeout, wake)
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

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
        ready = self._poll.poll(None if timeout is None else math.ceil(timeout * 1000))
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
        """Stop watching a worker that is gone or going."""
        for fd in worker.fds:
            if self._watched.pop(fd, None) is not None:
                self._poll.unregister(fd)
        worker.conn.close()

    def _receive(self, worker: _Worker) -> None:
        try:
            outcome = worker.conn.recv()
        except (EOFError, OSError):
            return  # died mid-send; the sentinel tells how
        except Exception as exc:  # noqa: BLE001 - an outcome that fails to unpickle
            spec = worker.spec
            assert spec is not None
            info = ErrorInfo("raised", type(exc).__name__, f"the result could not be read: {exc}")
            outcome = TaskOutcome(spec.key, spec.attempt, None, info, TaskMetrics(worker.pid))
        self._finish(worker, outcome)
        worker.tasks_done += 1
        if self._max_tasks and worker.tasks_done >= self._max_tasks:
            worker.conn.send(None)
            self._forget(worker)
            worker.process.join(_TERM_GRACE_S)
            _terminate(worker.process)
        else:
            self._idle.append(worker)

    def _finish(self, worker: _Worker, outcome: TaskOutcome) -> None:
        del self._busy[worker.conn]
        worker.spec = None
        worker.deadline = None
        self._outcomes.append(outcome)

    def _crashed(self, worker: _Worker) -> None:
        worker.process.join(_TERM_GRACE_S)
        spec = worker.spec
        assert spec is not None
        message = describe_exit(worker.pid, worker.process.exitcode)
        self._fail(worker, ErrorInfo("crashed", "WorkerCrashed", message))

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
        self._finish(worker, outcome)
        self._forget(worker)


def describe_exit(pid: int, exitcode: int | None) -> str:
    """How a worker process ended, in words."""
    if exitcode is None:
        return f"its worker process (pid {pid}) stopped responding"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        text = f"its worker process (pid {pid}) was killed by {name}"
        if -exitcode == signal.SIGKILL:
            text += " (if nobody sent it, likely killed by the out-of-memory killer)"
        return text
    return f"its worker process (pid {pid}) exited with code {exitcode} while running it"


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


def _worker_main(conn: Connection, init: WorkerInit) -> None:
    # The driver owns signals: Ctrl-C reaches the whole process group, and the
    # driver alone decides what to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(init.driver_pid)
    from ..loader import import_source
    from .worker import error_info, execute

    for source in init.sources:
        import_source(source)
    funcs: dict[str, Callable[..., Any]] = pickle.loads(init.funcs_blob)
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        if spec is None:
            return
        outcome = execute(spec, funcs[spec.key.stage], init.config)
        try:
            conn.send(outcome)
        except Exception as exc:  # noqa: BLE001 - never leave the driver without an answer
            info = error_info(exc, spec.key.stage)
            conn.send(TaskOutcome(spec.key, spec.attempt, None, info, outcome.metrics))
