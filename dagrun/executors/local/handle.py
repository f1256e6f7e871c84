"""One worker process as the driver sees it: the process, its three pipes, its tasks.

``start`` makes the process with its result pipe (``conn``) and the pipes
its fd 1 and fd 2 are redirected to (see ``child.worker_main``); ``read_raw``
turns what arrived on those into lines; ``close`` frees every fd. Which
start method a pool uses by default is decided here too.

The driver's end of ``conn`` is read and written through ``framing``
(``Connection``'s framing, one read per wake for every message waiting).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from ...settings import tuning
from .. import capture
from ..base import TaskOutcome, TaskSpec
from . import framing, wire
from .child import SKIPPED, WorkerInit, worker_main

RAW_READ = 1 << 16  # bytes read from a worker's fd 1/2 at a time
# Imported once by the fork server so each forked worker starts with them loaded.
PRELOAD = ("dagrun.executors.local.child", "dagrun.store", "numpy", "pyarrow")

Line = tuple[str, str, str]  # (stream, level, message)


class Worker:
    """A worker process, its pipes, and the tasks it holds (the running one first)."""

    def __init__(self, process: mp.process.BaseProcess, conn: Connection,
                 raw: dict[int, tuple[Connection, capture.Lines]]) -> None:
        self.process = process
        self.pid: int = process.pid or 0
        self.conn = conn
        self.raw = raw  # read end's fd -> (its connection, its line splitter)
        self.queue: deque[TaskSpec] = deque()
        self._typical: deque[float | None] = deque()  # typical wall time of each held task
        self.held_s = 0.0  # their sum, the unknown ones left out
        self.unknown = 0  # how many of them have no typical time yet
        self.deadline: float | None = None
        self.tasks_done = 0
        self.peak_rss = 0  # highest sample during the current task
        self.ready = False  # has said it finished starting up
        self.raw_pending = False  # said bytes wait in its fd 1/2 pipes (``child.RAW``)
        # Its last lines, for a crash's error.
        self.tail: deque[str] = deque(maxlen=tuning().tail_lines)
        self.fd = conn.fileno()
        self.inbox = framing.Inbox(self.fd)  # what it sent that is not handled yet
        self.gone = False  # closed: its fd numbers may already belong to a new worker
        self.outbox = bytearray()  # small messages not written yet (``flush`` writes them)

    @property
    def spec(self) -> TaskSpec | None:
        """The task this worker is running now."""
        return self.queue[0] if self.queue else None

    def hold(self, spec: TaskSpec, typical: float | None) -> None:
        """``spec`` joins the tasks it holds (``typical``: how long such a task takes, if known)."""
        self.queue.append(spec)
        self._typical.append(typical)
        if typical is None:
            self.unknown += 1
        else:
            self.held_s += typical

    def take(self) -> TaskSpec:
        """The first task it holds (the running one), no longer held."""
        self._let_go(self._typical.popleft())
        return self.queue.popleft()

    def drop_queued(self) -> list[TaskSpec]:
        """The tasks queued behind the running one, no longer held."""
        queued = []
        while len(self.queue) > 1:
            self._let_go(self._typical.pop())
            queued.append(self.queue.pop())
        return queued[::-1]

    def _let_go(self, typical: float | None) -> None:
        if not self._typical:
            self.held_s, self.unknown = 0.0, 0  # holds nothing: no rounding error stays
        elif typical is None:
            self.unknown -= 1
        else:
            self.held_s -= typical

    def watched(self) -> dict[int, str]:
        """fd -> what it is (``conn``, ``sentinel``, ``raw``), for the pool's poll."""
        fds = {self.conn.fileno(): "conn", self.process.sentinel: "sentinel"}
        fds.update({fd: "raw" for fd in self.raw})
        return fds

    def send(self, payload: bytes) -> None:
        """One message to the worker, written now."""
        self.post(payload)
        self.flush()

    def post(self, payload: bytes) -> None:
        """One message to the worker, written with the others at the next ``flush``."""
        if len(payload) > framing.SMALL:
            self.flush()
            try:
                framing.send(self.fd, payload)
            except (OSError, ValueError):
                pass  # the worker is dead: its sentinel reports it
            return
        self.outbox += framing.frame(payload)

    def flush(self) -> None:
        """Write the posted messages, in one write where the pipe has room."""
        if self.outbox:
            data, self.outbox = self.outbox, bytearray()
            if self.gone:
                return  # its fd number may already be another worker's
            try:
                framing.write_all(self.fd, data)
            except (OSError, ValueError):
                pass  # the worker is dead: its sentinel reports it

    def read_raw(self, fd: int, *, drain: bool = False) -> tuple[list[Line], bool]:
        """Complete lines now readable on raw pipe ``fd`` (all of it with ``drain``); at EOF?"""
        _, lines = self.raw[fd]
        found: list[Line] = []
        while True:
            try:
                data = os.read(fd, RAW_READ)
            except BlockingIOError:
                return found, False
            except OSError:
                data = b""
            if not data:  # end of file: every writer is gone
                return found, True
            found += [(lines.stream, lines.level, line) for line in lines.feed(data)]
            if not drain:
                return found, False

    def rest(self) -> list[Line]:
        """The unfinished last line of each raw pipe (a task ended, or the worker died)."""
        return [(lines.stream, lines.level, line)
                for _, lines in self.raw.values() for line in lines.rest()]

    def close(self) -> None:
        """Free its pipes, and its process's fds once it has exited."""
        self.gone = True
        self.conn.close()
        for reader, _ in self.raw.values():
            reader.close()
        if self.process.exitcode is not None:
            self.process.close()  # else the sentinel stays open until garbage collection


def start(ctx: Any, init: WorkerInit) -> Worker:
    """A new worker process of ``ctx`` (a multiprocessing context), starting up."""
    parent_conn, child_conn = ctx.Pipe(duplex=True)
    out_r, out_w = ctx.Pipe(duplex=False)
    err_r, err_w = ctx.Pipe(duplex=False)
    process = ctx.Process(target=worker_main, args=(child_conn, out_w, err_w, init),
                          name="dagrun-worker", daemon=False)
    process.start()
    for end in (child_conn, out_w, err_w):
        end.close()
    raw = {}
    for reader, stream in ((out_r, "stdout"), (err_r, "stderr")):
        os.set_blocking(reader.fileno(), False)
        raw[reader.fileno()] = (reader, capture.Lines(stream))
    return Worker(process, parent_conn, raw)


def outcome(data: bytes, spec: TaskSpec, pid: int) -> TaskOutcome | None:
    """The outcome message ``data`` of ``spec`` (None: a chained task that did not run)."""
    if data == SKIPPED:
        return None
    return wire.read_outcome(data, spec, pid)
