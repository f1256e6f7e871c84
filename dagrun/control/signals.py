"""SIGINT / SIGTERM at every phase of a command: import, validation, lock wait, run, teardown.

Outside a run (``install_process_handlers``, used by the CLI) both signals
raise ``KeyboardInterrupt`` where the program is, as Python does for Ctrl-C
by default; nothing of a run is held then, and user code's ``except
Exception`` cannot swallow it. ``exit_code`` is then ``128 + signum`` (130 /
143). A region that must not be cut (freeing shared memory after a run) runs
under ``deferred()``: a signal is recorded and raised when the region ends.

During a run, ``SignalGuard`` owns both signals:

    signal ─▶ handler: record, return ─▶ wake-up fd ─▶ executor.wait returns
                                                      └▶ runner: guard.check()
                                                           1st: raise Interrupted → orderly stop
                                                           2nd: on_second(), os._exit(128+n)

The handler itself never touches the store or the workers (it may have cut
into the middle of their updates). It raises only at safe points, judged
from the interrupted frames: the first signal raises ``Interrupted`` only
inside a stage's own code running inline (as Ctrl-C would in a plain
script); the second raises ``_Emergency`` anywhere but inside the store,
and the guard's ``__exit__`` (or ``check``) then runs ``on_second`` and
exits. Two signals less than the tuning's ``signal_merge_s`` apart are one: ``timeout`` and a
terminal deliver one SIGTERM / SIGINT to the driver and again through its
process group. Only the main thread can own signals; elsewhere the guard
does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType

from ..errors import Interrupted
from ..settings import tuning

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_PACKAGE = str(Path(__file__).resolve().parent.parent)
_STORE = str(Path(__file__).resolve().parent.parent / "store")
_WORKER = str(Path(__file__).resolve().parent.parent / "executors" / "worker.py")


class _Emergency(BaseException):
    """A second signal: leave now (``SignalGuard`` turns it into ``on_second`` and exit)."""


class _State:
    """The process's signals: the last one that counted, and a deferred one."""

    def __init__(self) -> None:
        self.last: tuple[int, float] | None = None  # (signum, monotonic time)
        self.deferring = 0
        self.pending: int | None = None

    def counts(self, signum: int) -> bool:
        """Record ``signum`` unless it repeats the last one within ``signal_merge_s``."""
        now = time.monotonic()
        if self.last is not None and now - self.last[1] < tuning().signal_merge_s:
            return False
        self.last = (signum, now)
        return True


_state = _State()


def exit_code() -> int:
    """The exit code for a command a signal stopped: 128 + the last signal (SIGINT if none)."""
    return 128 + (_state.last[0] if _state.last is not None else signal.SIGINT)


def exiting() -> None:
    """The process is about to exit: after a signal, ignore its echoes from now on.

    Python resets handlers to the default at interpreter exit, so the second
    copy of a signal that lands then would kill the process (-15 instead of
    143); ignored handlers are kept.
    """
    if _state.last is not None and threading.current_thread() is threading.main_thread():
        for signum in _SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def install_process_handlers() -> None:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` (once per ``signal_merge_s``), for the CLI."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in _SIGNALS:
        signal.signal(signum, _process_handler)


def _process_handler(signum: int, frame: FrameType | None) -> None:
    if not _state.counts(signum):
        return
    if _state.deferring:
        _state.pending = signum
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run a region a signal must not cut; a signal that came meanwhile raises at its end."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    if not _state.deferring and _state.pending is not None:
        _state.pending = None
        raise KeyboardInterrupt


class SignalGuard:
    """Context manager owning SIGINT/SIGTERM while a run is in progress.

    ``raise_at_once`` (the inline executor): the first signal also raises
    ``Interrupted`` inside the stage's own code, which runs in this process.
    """

    def __init__(self, on_second: Callable[[], None], *, raise_at_once: bool = False) -> None:
        self.on_second = on_second
        self.raise_at_once = raise_at_once
        self.signum: int | None = None
        self.urgent = False  # a second signal came: leave at the next safe point
        self.wake_fd: int | None = None
        self._write_fd: int | None = None
        self._previous: dict[int, object] = {}
        self._previous_wakeup = -1
        self._active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> SignalGuard:
        if not self._active:
            return self
        self.wake_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        os.set_blocking(self.wake_fd, False)
        self._previous_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._active:
            self.on_second = _nothing
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._previous_wakeup)
        for fd in (self.wake_fd, self._write_fd):
            if fd is not None:
                os.close(fd)
        self.wake_fd = self._write_fd = None
        if self.urgent or isinstance(exc, _Emergency):
            self._leave()
        # A guard serves once. Its callback is usually a bound method of its owner, who holds the
        # guard: dropping it lets reference counting free the owner's whole run at once instead of
        # leaving it (a graph, a plan, every handle) to a later full collection.
        self.on_second = _nothing

    def check(self) -> None:
        """At a safe point of the loop: leave on a second signal, raise ``Interrupted`` on one."""
        if self.urgent:
            self._leave()
        if self.signum is not None:
            raise Interrupted(self.signum)

    def _leave(self) -> None:
        try:
            self.on_second()
        finally:
            os._exit(128 + (self.signum or signal.SIGINT))

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not _state.counts(signum):
            return
        if self.signum is None:
            self.signum = signum
            if self.raise_at_once and _in_stage_code(frame):
                raise Interrupted(signum)
            return
        self.urgent = True
        if not _in_store(frame):
            raise _Emergency


def _frames(frame: FrameType | None) -> Iterator[str]:
    while frame is not None:
        yield frame.f_code.co_filename
        frame = frame.f_back


def _in_store(frame: FrameType | None) -> bool:
    """Whether the store's own code was running (its state may be half-updated)."""
    return frame is None or any(name.startswith(_STORE) for name in _frames(frame))


def _in_stage_code(frame: FrameType | None) -> bool:
    """Whether a stage's own code was running, called by the task runner (inline)."""
    outside = False
    for name in _frames(frame):
        if name.startswith(_PACKAGE):
            return outside and name == _WORKER
        outside = True
    return False


def _nothing() -> None:
    pass
