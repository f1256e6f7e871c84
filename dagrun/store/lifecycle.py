"""The parent's side: release values as the DAG goes, remove everything at the end.

State held by ``Store`` (in the driver only):

    pending   path -> SegmentRef   released, but a user view still held it (flock);
                                   retried on every later release and at close
    seq       int                  orders the free pool (oldest is trimmed first)
    budget    int                  bytes the free pool may keep for reuse

    release(handle):  each segment ─ nobody holds it ─▶ parked in the free pool
                                   │                    (or truncated + unlinked if
                                   │                     the pool is full)
                                   └ still held ──────▶ pending
    close():          every name with the run's prefix, in shm_dir and spill_dir,
                      is unlinked, including what crashed workers never reported

``clean_orphans`` finds names ``dagrun-<pid>-<start>-…`` whose driver (pid
*and* start time, so a reused pid does not count) is gone, and removes them.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..settings import tuning
from . import segments
from .config import Handle, SegmentRef, StoreConfig, process_start, segment_refs


class Store:
    """The parent's side of a run's intermediates: it alone frees them."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._pending: dict[str, SegmentRef] = {}
        self._seq = 0
        self._noticed = False
        self._budget = self._pool_budget()

    def _pool_budget(self) -> int:
        if self.config.pool_bytes >= 0:
            return self.config.pool_bytes
        try:
            st = os.statvfs(self.config.shm_dir)
        except OSError:
            return 0
        return min(tuning().pool_max, st.f_blocks * st.f_frsize // 4)

    def _path(self, ref: SegmentRef) -> str:
        return os.path.join(self.config.directory(ref.where), ref.name)

    def release(self, handle: Handle) -> None:
        """Free one value (its segments go to the free pool or away); safe to call twice."""
        if self._pending:
            earlier = list(self._pending.items())
            self._pending.clear()
            for path, ref in earlier:
                self._retire(path, ref)
        for ref in {r.name: r for r in segment_refs(handle)}.values():
            self._retire(self._path(ref), ref)

    def _retire(self, path: str, ref: SegmentRef) -> None:
        recycle_as = None
        if 0 < ref.size <= min(self._budget, tuning().recycle_max):
            self._seq += 1
            recycle_as = segments.free_name(self.config.prefix, self._seq, ref.size)
        outcome = segments.retire(path, recycle_as)
        if outcome == "busy":
            self._pending[path] = ref
        elif outcome == "recycled":
            self._trim_pool()

    def _trim_pool(self) -> None:
        """Keep the newest parked segments within the budget; remove the rest."""
        mark = f"{self.config.prefix}f-"
        parked = []
        for directory in (self.config.shm_dir, self.config.spill_dir):
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            parked += [(n, directory) for n in names if n.startswith(mark)]
        parked.sort(reverse=True)  # the sequence number sorts newest first
        total = 0
        for count, (name, directory) in enumerate(parked):
            total += max(0, segments.parse_free_size(name[len(mark) :]))
            if total <= self._budget and count < tuning().max_free:
                continue
            # Claim it first (as a producer would), so no producer writes into what we free.
            doomed = os.path.join(directory, f"{self.config.prefix}x-{secrets.token_hex(8)}")
            try:
                os.rename(os.path.join(directory, name), doomed)
            except FileNotFoundError:
                continue
            segments.remove(doomed)

    def fallback_notice(self, handle: Handle) -> str | None:
        """A message the first time a value of this run spilled to disk, else None."""
        transport = handle.transport
        if self._noticed or "file" not in transport or "file" not in transport.split("+"):
            return None
        self._noticed = True
        reason = segments.fallback_reason(self.config) or f"{self.config.shm_dir} is too small"
        return f"{reason}: intermediates go to memory-mapped files in {self.config.spill_dir}"

    def close(self) -> None:
        """Free every value of the run, including leftovers of crashed workers."""
        for directory in (self.config.shm_dir, self.config.spill_dir):
            for name in _names(directory, self.config.prefix):
                segments.remove(os.path.join(directory, name))
        self._pending.clear()
        segments.purge(self.config.prefix)


def _names(directory: str, prefix: str) -> list[str]:
    try:
        return [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return []


def _owner_alive(pid: int, start: int) -> bool:
    if os.path.isdir("/proc/self"):
        now = process_start(pid)
        return now is not None and (start == 0 or now == start)
    try:  # pragma: no cover - no /proc
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_orphans(state_dir: str | Path | None = None, shm_dir: str = "/dev/shm") -> list[str]:
    """Remove segments whose driver process is gone; return the names removed.

    Looks in ``shm_dir`` and, when given, ``<state_dir>/spill``; only files
    owned by the current user are touched.
    """
    directories = [shm_dir]
    if state_dir is not None:
        directories.append(str(Path(state_dir) / "spill"))
    removed = []
    for directory in directories:
        for name in _names(directory, "dagrun-"):
            fields = name.split("-", 3)
            try:
                pid, start = int(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                continue
            if _owner_alive(pid, start):
                continue
            path = os.path.join(directory, name)
            try:
                if os.lstat(path).st_uid != os.geteuid():
                    continue
            except FileNotFoundError:
                continue
            if segments.remove(path):
                removed.append(name)
    return removed
