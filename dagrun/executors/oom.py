"""Evidence about memory for a worker that died: cgroup OOM kills, limits, peak RSS.

A SIGKILL that dagrun did not send is often the kernel's out-of-memory
killer, but not always; ``OomWatch`` reads the memory cgroup's ``oom_kill``
counter (cgroup v2 ``memory.events``, or v1 ``memory.oom_control``) when
the executor starts and again when a worker dies, so a rise means an OOM
kill happened in this run's cgroup meanwhile. ``limit`` is the memory
available to the run: the cgroup's limit or the machine's RAM, whichever is
smaller. Everything here is Linux-only and degrades to "no evidence".
"""

from __future__ import annotations

import os
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 1 << 60


class OomWatch:
    """Counts OOM kills in this process's memory cgroup since it was created."""

    def __init__(self) -> None:
        self._events, self._limit_file = _cgroup_files()
        self._seen = self._count()
        self.limit = _memory_limit(self._limit_file)

    def new_kills(self) -> int:
        """OOM kills counted and not yet claimed; each call for a dead worker claims one.

        Two workers killed at once both read a kill (2, then 1): the second is
        not mistaken for a kill from elsewhere.
        """
        count = self._count()
        if count is None or self._seen is None:
            return 0
        unclaimed = max(0, count - self._seen)
        if unclaimed:
            self._seen += 1
        return unclaimed

    def _count(self) -> int | None:
        if self._events is None:
            return None
        try:
            text = self._events.read_text()
        except OSError:
            return None
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return None


def _cgroup_files() -> tuple[Path | None, Path | None]:
    """(file with the ``oom_kill`` counter, file with the limit) for this process."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    v2 = next((line[3:] for line in lines if line.startswith("0::")), None)
    v1 = next((line.split(":", 2)[2] for line in lines if ":memory:" in line), None)
    candidates = []
    if v2 is not None:  # our own cgroup, then the namespace root (a container's view)
        for base in (_CGROUP_ROOT / v2.lstrip("/"), _CGROUP_ROOT):
            candidates.append((base / "memory.events", base / "memory.max"))
    if v1 is not None:
        mount = _CGROUP_ROOT / "memory"
        for base in (mount / v1.lstrip("/"), mount):
            candidates.append((base / "memory.oom_control", base / "memory.limit_in_bytes"))
    for events, limit in candidates:
        if events.is_file():
            return events, limit
    return None, None


def _memory_limit(limit_file: Path | None) -> int | None:
    ram = None
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    cgroup = None
    if limit_file is not None:
        try:
            text = limit_file.read_text().strip()
            cgroup = int(text) if text.isdigit() and int(text) < _UNLIMITED else None
        except OSError:
            pass
    known = [v for v in (ram, cgroup) if v]
    return min(known) if known else None


def peak_rss_of(pid: int) -> int:
    """Peak RSS in bytes of a live process (``VmHWM``), or 0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
