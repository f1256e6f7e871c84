"""Peak memory of a process tree plus ``/dev/shm``, sampled every ~10 ms by a thread.

What is counted, at each sample::

    sum over this process and all its descendants of RssAnon   (private memory)
  + bytes used on the /dev/shm tmpfs                           (shared memory,
                                                                mapped or not)

``RssShmem`` is left out on purpose: shared pages are already counted once by
``/dev/shm`` (summing per-process RSS would count a block mapped by three
processes three times), and ``RssFile`` (libraries, page cache) is not data.
The descendants are re-listed every few samples, so workers started during
the run are seen. ``/dev/shm`` is machine-wide: another user's segments
created during a run would be counted too, which is why results are medians.
"""

from __future__ import annotations

import os
import threading
import time

import psutil

SHM = "/dev/shm"


def _rss_anon(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def shm_used() -> int:
    """Bytes in use on the /dev/shm tmpfs (0 where there is none)."""
    try:
        st = os.statvfs(SHM)
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class MemoryMonitor:
    """Context manager: ``baseline`` at entry, ``peak`` while inside, ``delta`` between."""

    def __init__(self, root: int | None = None, interval: float = 0.01, relist_every: int = 5):
        self.root = psutil.Process(root or os.getpid())
        self.interval = interval
        self.relist_every = relist_every
        self.pids: list[int] = []
        self.baseline = 0
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-monitor", daemon=True)

    def _relist(self) -> None:
        try:
            kids = self.root.children(recursive=True)
        except psutil.Error:
            kids = []
        self.pids = [self.root.pid, *(k.pid for k in kids)]

    def sample(self) -> int:
        """One reading: private memory of the tree + /dev/shm in use."""
        return sum(_rss_anon(p) for p in self.pids) + shm_used()

    def _loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            if n % self.relist_every == 0:
                self._relist()
            self.peak = max(self.peak, self.sample())
            self.samples += 1
            n += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> MemoryMonitor:
        self._relist()
        self.baseline = self.peak = self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._relist()
        self.peak = max(self.peak, self.sample())
        self._stop.set()
        self._thread.join()

    @property
    def delta(self) -> int:
        """Peak above the reading taken at entry."""
        return self.peak - self.baseline


def wait_quiet(seconds: float = 0.2) -> None:
    """Give freed memory a moment to be returned before the next baseline."""
    time.sleep(seconds)
