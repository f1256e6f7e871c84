"""The worker process's side: start up, then run the tasks its pipe brings, one at a time.

    fd 1, fd 2 ──(raw bytes: C code, subprocesses)──────────────▶ driver (Lines)
    conn ◀── task spec, chained spec, None (stop)
    conn ──▶ READY, then per task: records (L...) ... [RAW] outcome (``wire``) | SKIPPED

Both directions use ``framing`` (``Connection``'s framing, read through a
buffer). Records (``capture.encode``) and outcomes share ``conn`` and one lock, so a
task's lines always precede its outcome and a line written by a stage's
thread never splits a message. The worker ignores SIGINT (the driver owns
Ctrl-C) and dies with the driver (``PR_SET_PDEATHSIG`` plus end-of-file on
its pipe; under forkserver, whose workers are not the driver's children, a
thread blocked on a pidfd of the driver).

``RAW`` precedes an outcome only when bytes are still unread in the fd 1/2
pipes as the task ends: the driver reads those pipes up to the outcome then,
and otherwise spares the two reads that would find them empty.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import pickle
import select
import signal
import struct
import termios
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

from ...pipeline.pipeline import ModuleSource
from ...settings import Tuning, put_in_force
from ...store import StoreConfig
from .. import capture, collector
from ..base import TaskOutcome
from . import framing, wire

READY = b"ready"  # a worker's first message: imports done, the timeout clock may start
SKIPPED = b"skipped"  # a chained task whose predecessor failed was not run
RAW = b"raw"  # bytes wait in the fd 1/2 pipes: read them before the outcome that follows
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerInit:
    """Everything a fresh worker needs; stages travel pickled, loaded after their modules."""

    sources: tuple[ModuleSource, ...]
    funcs_blob: bytes  # pickled (stage funcs, @worker_init funcs), by reference
    config: StoreConfig
    driver_pid: int
    numbers: Tuning  # the run's tuning, put in force in the worker


class _Sender:
    """Writes whole messages to the driver; records from any thread, outcomes from the loop."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn  # kept open: it owns the fd
        self._fd = conn.fileno()
        self._lock = threading.Lock()

    def send(self, data: bytes) -> None:
        with self._lock:
            try:
                framing.send(self._fd, data)
            except (OSError, EOFError, ValueError):
                pass  # the driver is gone; this worker dies with it

    def record(self, stream: str, level: str, message: str) -> None:
        self.send(capture.encode(stream, level, message))


def worker_main(conn: Connection, out: Connection, err: Connection, init: WorkerInit) -> None:
    """The worker process: capture output, import the pipeline, then serve tasks."""
    collector.in_worker()  # stages collect garbage as the caller set it, not as the run does
    # The driver owns signals: Ctrl-C reaches the whole process group, and the
    # driver alone decides what to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(init.driver_pid)
    put_in_force(init.numbers)  # a fresh interpreter (spawn, forkserver) has the defaults
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    out.close()
    err.close()
    sender = _Sender(conn)
    capture.install(sender.record)
    from ...pipeline.loader import import_source
    from ...pipeline.resources import Resources
    from ..failure import error_info
    from ..worker import execute

    for source in init.sources:
        import_source(source)
    funcs, resource_funcs = pickle.loads(init.funcs_blob)
    resources = Resources(resource_funcs)
    capture.flush()  # import-time output belongs to no task
    sender.send(READY)
    last: TaskOutcome | None = None  # the previous task's outcome, for a chained task
    inbox = framing.Inbox(conn.fileno())  # a task queued behind this one is read with it
    try:
        while True:
            try:
                data = inbox.next()
            except (EOFError, OSError):
                return
            try:
                spec = wire.read_task(data)
            except Exception as exc:  # noqa: BLE001 - the driver knows which task this was
                exc.add_note("while the worker unpickled the task's arguments")
                sender.send(wire.error_message(error_info(exc, "?")))
                last = None
                continue
            if spec is None:
                return
            if spec.after is not None:
                if last is None or last.key != spec.after or last.handle is None:
                    sender.send(SKIPPED)
                    last = None
                    continue
                spec = spec.resolved(last.handle)
            capture.task_starts()
            outcome = execute(spec, funcs[spec.key.stage], init.config, resources, in_worker=True)
            capture.flush()  # a last line without its newline is still this task's
            if _raw_pending():
                sender.send(RAW)
            last = outcome
            try:
                payload = wire.outcome_message(outcome)
            except Exception as exc:  # noqa: BLE001 - never leave the driver without an answer
                info = error_info(exc, spec.key.stage)
                payload = wire.outcome_message(
                    TaskOutcome(spec.key, spec.attempt, None, info, outcome.metrics))
                last = None
            sender.send(payload)
    finally:
        resources.close()
        capture.flush()


def _raw_pending() -> bool:
    """Whether bytes written to fd 1 or 2 are still unread by the driver (when unsure: yes)."""
    buffer = bytearray(4)
    for fd in (1, 2):
        try:
            fcntl.ioctl(fd, termios.FIONREAD, buffer)
        except OSError:
            return True  # not the pipe the driver reads (a stage replaced the fd)
        if struct.unpack("i", buffer)[0]:
            return True
    return False


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
