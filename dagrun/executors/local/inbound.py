"""What workers send, handled in the order it was sent: log records, raw output, READY,
RAW markers and outcomes (see ``child``).

``Inbound`` is a part of ``pool.LocalExecutor``, built with the pool's
``PoolState`` and ``Watch`` and two callbacks of the pool: ``begin`` (a
worker that said READY starts its task's clock) and ``finish`` (an outcome
ends the worker's current task). It appends ``TaskLog``s to the pool's
events, returns a worker to the idle list after its last task, and retires
one that has run ``max_tasks_per_worker`` tasks. The pool calls
``receive`` and ``read_raw`` when a worker's fds are readable; ``Deaths``
calls ``drain`` and ``read_all_raw`` before it reports a worker gone.
"""

from __future__ import annotations

from collections.abc import Callable

from ...settings import Tuning
from .. import capture
from ..base import TaskLog, TaskOutcome
from . import exits, handle, wire
from .child import RAW, READY
from .handle import Line, Worker
from .state import PoolState, Watch


class Inbound:
    """Messages and output from the pool's workers."""

    def __init__(self, state: PoolState, watch: Watch, *,
                 begin: Callable[[Worker], None],
                 finish: Callable[[Worker, TaskOutcome | None], None],
                 numbers: Tuning) -> None:
        # The containers themselves, not the record: read on every message.
        self._idle = state.idle
        self._events = state.events
        self._writers = state.writers
        self._max_tasks = state.limits.max_tasks
        self._watch = watch
        self._begin = begin
        self._finish = finish
        self._per_wake = numbers.messages_per_wake
        self._term_grace = numbers.term_grace_s

    def receive(self, worker: Worker, *, read: bool = True) -> None:
        """Every message waiting from ``worker``, up to ``messages_per_wake``; the rest
        waits in its inbox for the next wake.

        ``read``: its pipe is readable, and is read once when the inbox runs dry.
        """
        for _ in range(self._per_wake):
            data = worker.inbox.take()
            if data is None:
                if not read:
                    return
                read = False
                try:
                    worker.inbox.fill()
                except (EOFError, OSError):
                    return  # died mid-send; the sentinel tells how
                data = worker.inbox.take()
                if data is None:
                    return  # part of a message: poll says when the rest is in
            if not self._handle(worker, data):
                return

    def drain(self, worker: Worker) -> bool:
        """Handle every message and byte the worker sent before it died (or was stopped).

        False when that retired the worker (its last outcome came in).
        """
        while True:
            data = worker.inbox.take()
            if data is None:
                try:
                    if not worker.conn.poll(0):
                        break
                    worker.inbox.fill()
                except (EOFError, OSError):
                    break
                continue
            if not self._handle(worker, data):
                return False
        self.read_all_raw(worker)
        return True

    def _handle(self, worker: Worker, data: bytes) -> bool:
        """One message from a worker; False when the worker was retired because of it."""
        if capture.is_record(data):
            self._lines(worker, [capture.decode(data)])
            return True
        if data == RAW:
            worker.raw_pending = True
            return True
        if data == READY:
            worker.ready = True
            worker.tail.clear()  # import-time output belongs to no task
            if worker.spec is not None:
                self._begin(worker)
            return True
        spec = worker.spec
        if spec is None:
            return True  # nothing was asked of it: cannot happen, nothing to report
        outcome = handle.outcome(data, spec, worker.pid)
        if worker.raw_pending:  # its raw lines precede its outcome
            worker.raw_pending = False
            self.read_all_raw(worker)
        else:  # what the pipes held was read as it came: only an unfinished line is left
            self._lines(worker, worker.rest())
        worker.tail.clear()
        self._finish(worker, outcome)
        worker.tasks_done += 1
        if worker.queue:
            return True  # it went straight on to its next task
        if self._max_tasks and worker.tasks_done >= self._max_tasks:
            self._retire(worker)
            return False
        self._idle.append(worker)
        return True

    def _retire(self, worker: Worker) -> None:
        """Stop a worker that has run its ``max_tasks_per_worker`` tasks (it holds none)."""
        worker.send(wire.STOP)
        worker.process.join(self._term_grace)
        exits.terminate(worker.process)
        self._writers.died(worker.pid)
        self._watch.forget(worker)

    def _lines(self, worker: Worker, lines: list[Line]) -> None:
        """Lines from a worker: part of its tail; ``TaskLog``s when a task of it runs."""
        spec = worker.spec if worker.ready else None
        for stream, level, message in lines:
            worker.tail.append(message)
            if spec is not None:
                self._events.append(TaskLog(spec.key, spec.attempt, worker.pid, stream, level,
                                            message))

    def read_raw(self, worker: Worker, fd: int) -> None:
        """What is readable now on ``worker``'s raw pipe ``fd``, as lines."""
        found, eof = worker.read_raw(fd)
        self._lines(worker, found)
        if eof:
            self._watch.unwatch(fd)

    def read_all_raw(self, worker: Worker) -> None:
        """Everything in the worker's fd 1/2 pipes now, the last unfinished line included."""
        for fd in list(worker.raw):
            found, eof = worker.read_raw(fd, drain=True)
            self._lines(worker, found)
            if eof:
                self._watch.unwatch(fd)
        self._lines(worker, worker.rest())

