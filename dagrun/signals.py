"""Turn SIGINT / SIGTERM into an orderly stop of the run.

The first signal is recorded and wakes the runner, which is blocked in the
executor's ``wait``: the handler does not raise, so no data structure is left
half-updated; a wake-up pipe (``signal.set_wakeup_fd``) makes the blocking
wait return. The runner then stops scheduling, terminates workers and frees
every intermediate. A second signal runs ``on_second`` (kill every worker,
free the store) and exits at once with 128 + signum. Only the main thread can
own signals; elsewhere the guard does nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

from .errors import Interrupted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    """Context manager owning SIGINT/SIGTERM while a run is in progress."""

    def __init__(self, on_second: Callable[[], None], *, raise_at_once: bool = False) -> None:
        self.on_second = on_second
        self.raise_at_once = raise_at_once
        self.signum: int | None = None
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
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._previous_wakeup)
        for fd in (self.wake_fd, self._write_fd):
            if fd is not None:
                os.close(fd)
        self.wake_fd = self._write_fd = None

    def check(self) -> None:
        """Raise ``Interrupted`` if a signal arrived."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            try:
                self.on_second()
            finally:
                os._exit(128 + self.signum)
        self.signum = signum
        if self.raise_at_once:
            raise Interrupted(signum)
