"""One run at a time per pipeline and state directory (safe under cron).

The lock is an ``fcntl.flock`` on ``<state-dir>/locks/<pipeline>.lock``: the
kernel drops it when the holder exits however it dies, so a dead holder's lock
is simply taken over. The file records the holder (pid, run id, start time)
for the message the second run prints; with ``wait`` it says once, on
stderr, that it is waiting and for whom, then blocks (a signal ends the wait).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import time
from pathlib import Path
from types import TracebackType

from ..errors import LockHeldError


class PipelineLock:
    """Held for the whole run; ``wait=True`` blocks until the holder finishes."""

    def __init__(self, state_dir: Path, pipeline_key: str, run_id: str, *, wait: bool = False):
        digest = hashlib.sha256(pipeline_key.encode()).hexdigest()[:12]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(pipeline_key).stem)
        self.path = state_dir / "locks" / f"{safe}-{digest}.lock"
        self.run_id = run_id
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> PipelineLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown"
            if not self.wait:
                os.close(fd)
                msg = (
                    f"another run holds this pipeline's lock ({holder}; lock file {self.path}); "
                    f"wait for it to finish, or pass --wait to queue behind it"
                )
                raise LockHeldError(msg) from None
            print(
                f"dagrun: waiting for the run that holds this pipeline's lock ({holder}; "
                f"lock file {self.path})",
                file=sys.stderr,
                flush=True,
            )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:  # a signal ends the wait: give the descriptor back
                os.close(fd)
                raise
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()}, run {self.run_id}, since {started}".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
