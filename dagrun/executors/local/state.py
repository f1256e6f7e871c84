"""What the pool owns and its parts share: one state record and the fds its ``poll`` watches.

``LocalExecutor`` makes a ``PoolState`` and a ``Watch`` and hands them to
its parts (``Inbound``, ``Deaths``) once, at construction. The record is
frozen: its containers are changed in place and never replaced, so a part
that kept a reference to one (``state.events``, say) always sees the pool's
own, and the hot path reads it without going through the record again.

``Watch`` is the pool's ``select.poll`` with what each fd is: a worker's
``conn``, its ``sentinel`` or one of its ``raw`` fd 1 / fd 2 pipes, or the
runner's wake fd (``None``). A worker is ``forget``-ten when it is gone:
its fds leave the poll and the worker closes them.
"""

from __future__ import annotations

import math
import select
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from ..base import Event
from .handle import Worker
from .placement import Limits, Writers


@dataclass(frozen=True, slots=True)
class PoolState:
    """The pool's workers and what it has to report, as its parts see them."""

    limits: Limits
    writers: Writers  # large segment -> pid of the worker that wrote it
    idle: list[Worker] = field(default_factory=list)  # the one that went idle last, last
    busy: dict[Connection, Worker] = field(default_factory=dict)  # holding at least one task
    events: list[Event] = field(default_factory=list)  # outcomes, starts and lines, in order


class Watch:
    """The fds the pool waits on, and whose each one is."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._fds: dict[int, tuple[Worker, str] | None] = {}  # fd -> (worker, what)

    def add(self, worker: Worker) -> None:
        """Watch a new worker's pipes and sentinel."""
        for fd, what in worker.watched().items():
            self._fds[fd] = (worker, what)
            self._poll.register(fd, select.POLLIN)

    def wake(self, fd: int) -> None:
        """Watch the runner's wake fd too (from now on: it stays for the pool's life)."""
        if fd not in self._fds:
            self._fds[fd] = None
            self._poll.register(fd, select.POLLIN)

    def unwatch(self, fd: int) -> None:
        """Stop watching a worker's ``fd`` (a raw pipe at end of file, or a gone worker's)."""
        if self._fds.pop(fd, None) is not None:
            self._poll.unregister(fd)

    def forget(self, worker: Worker) -> None:
        """Stop watching a worker that is gone; free its pipes and its process's fds."""
        for fd in [fd for fd, w in self._fds.items() if w is not None and w[0] is worker]:
            self.unwatch(fd)
        worker.close()

    def poll(self, timeout: float | None) -> list[tuple[int, Worker, str]]:
        """The workers' fds readable within ``timeout`` s: (fd, worker, what), resolved at
        once (handling one fd can close others, whose numbers a new worker reuses)."""
        ready = self._poll.poll(None if timeout is None else math.ceil(timeout * 1000))
        fds = self._fds
        return [(fd, watched[0], watched[1]) for fd, _ in ready
                if (watched := fds.get(fd)) is not None]
