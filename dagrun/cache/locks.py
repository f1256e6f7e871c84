"""One POSIX record lock per cache key, so two runs do not compute one entry twice.

``lockf`` rather than ``flock``: a flock belongs to the open file, which a
worker process forked while the driver holds the lock would keep open (and
so keep the lock) long after the driver let go; a record lock belongs to the
process that took it and is never inherited. Within one process a key is
locked once (the runner keeps track).

The lock file (``<cache>/locks/<key>.lock``) is created once and never
removed while the cache lives: unlinking a lock file that another process
has just opened would let two holders lock two different inodes. The kernel
drops a lock when its holder dies, so a crashed run never blocks the next.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class KeyLock:
    """An exclusive lock on one key; a context manager, released on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False at once if another holds it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except (BlockingIOError, PermissionError):
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock back (closing the descriptor releases the record lock)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> KeyLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()
