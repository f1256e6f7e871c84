"""What a task measures: wall and CPU time, and its peak memory read from /proc.

``TaskClock`` starts as a task starts; ``metrics`` gives the task's
``TaskMetrics``: the process's peak resident size during the task (the peak is
reset when it starts) and that peak over its size at the start (what the task
itself needed).
"""

from __future__ import annotations

import os
import resource
import time

from .base import TaskMetrics, TaskSpec


class _Memory:
    """This process's resident size now and its peak since the last ``reset`` (Linux /proc).

    Writing "5" to ``clear_refs`` resets the peak (``VmHWM``) to the current
    size, so each task's peak is its own rather than the worker's lifetime.
    ``VmHWM`` is read rather than ``getrusage``, whose ``ru_maxrss`` also
    counts the memory of the process that exec'd this one (under spawn, the
    driver's). The files stay open; /proc/self is per process, so a forked
    child opens its own.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._fds = {}
        for name, mode in (("clear_refs", os.O_WRONLY), ("statm", os.O_RDONLY),
                           ("status", os.O_RDONLY)):
            try:
                self._fds[name] = os.open(f"/proc/self/{name}", mode | os.O_CLOEXEC)
            except OSError:
                pass
        # getrusage is 5x cheaper than parsing status: trust it where it is not
        # inflated by the process this one was exec'd from (fork, forkserver).
        self._rusage = False
        if "clear_refs" in self._fds and "status" in self._fds:
            self.reset()
            self._rusage = self._rusage_peak() <= self._status_peak() + 16 * _PAGE

    def reset(self) -> int:
        """Reset the peak; the resident size now, in bytes (0 when unknown)."""
        fd = self._fds.get("clear_refs")
        if fd is not None:
            try:
                os.write(fd, b"5")
            except OSError:
                pass
        fd = self._fds.get("statm")
        if fd is None:
            return 0
        try:
            return int(os.pread(fd, 128, 0).split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return 0

    def peak(self) -> int:
        """The peak resident size since ``reset``, in bytes."""
        return self._rusage_peak() if self._rusage else self._status_peak()

    @staticmethod
    def _rusage_peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _status_peak(self) -> int:
        fd = self._fds.get("status")
        if fd is not None:
            try:
                text = os.pread(fd, 8192, 0)
                at = text.index(b"VmHWM:") + 6
                return int(text[at:text.index(b"kB", at)]) * 1024
            except (OSError, ValueError):
                pass
        return self._rusage_peak()


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class TaskClock:
    """Started as a task starts; ``metrics`` measures the task up to now (any executor)."""

    def __init__(self) -> None:
        self.started_at = time.time()
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.memory = _memory if _memory is not None else _this_memory()
        self.rss0 = self.memory.reset()

    def metrics(self, spec: TaskSpec, input_bytes: int = 0, output_bytes: int = 0,
                transport: str = "", items: int | None = None, worker: str | None = None,
                host: str | None = None, stored: bool | None = None) -> TaskMetrics:
        """The task's measurements, times rounded to the microsecond its events show."""
        wall, cpu = time.perf_counter() - self.wall0, time.process_time() - self.cpu0
        peak = self.memory.peak()
        return TaskMetrics(
            self.memory.pid,
            round(wall, 6),
            round(cpu, 6),
            peak,
            max(0, peak - self.rss0) if self.rss0 else 0,
            round(max(0.0, self.started_at - spec.submitted_at), 6),
            input_bytes,
            output_bytes,
            transport,
            self.started_at,
            items,
            worker,
            host,
            stored,
        )


_memory: _Memory | None = None


def _this_memory() -> _Memory:
    global _memory
    if _memory is None:
        _memory = _Memory()
    return _memory


def _forget_memory() -> None:
    """A forked child measures itself: its ``/proc/self`` files are opened anew."""
    global _memory
    _memory = None


# Rather than comparing pids on every task (a system call on its hot path).
os.register_at_fork(after_in_child=_forget_memory)
