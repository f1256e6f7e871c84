"""Keeping a cache directory in shape: listing, trimming, cleaning and verifying entries.

    trim(cache, max_size)           least recently used entries go until it fits (a run's end)
    clean(cache, older_than, ...)   also entries unused for a while, a dead writer's
                                    leftovers in tmp/, and trash/ (``dagrun clean --cache``)
    verify(cache)                   hash every entry in full; damaged ones go
    clear(cache)                    every entry and manifest

An entry's last use is its ``meta.json``'s modification time, which a lookup
touches.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CacheCorrupt
from .entries import Cache
from .hashing import hash_file

STALE_TMP_S = 3600.0  # a tmp/ directory this old belongs to a writer that died

Listed = tuple[str, Path, float, int]  # key, directory, last use, bytes


@dataclass(frozen=True)
class CleanReport:
    """What a clean or a trim removed and what it kept."""

    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept: int = 0
    kept_bytes: int = 0


def entries(cache: Cache) -> list[Listed]:
    """Every committed entry as (key, directory, last use, bytes), least recent first."""
    found = []
    for directory in (cache.root / "entries").glob("*/*"):
        try:
            used = (directory / "meta.json").stat().st_mtime
            size = sum(p.stat().st_size for p in directory.iterdir())
        except OSError:
            used, size = 0.0, 0
        found.append((directory.name, directory, used, size))
    return sorted(found, key=lambda item: item[2])


def trim(cache: Cache, max_size: int) -> CleanReport:
    """Remove least recently used entries until ``cache`` holds at most ``max_size`` bytes."""
    kept = entries(cache)
    removed, freed, total = _trim(cache, kept, max_size)
    return CleanReport(removed, freed, len(kept), total)


def clean(cache: Cache, older_than: float | None = None,
          max_size: int | None = None) -> CleanReport:
    """Remove entries unused for ``older_than`` seconds, then LRU ones beyond ``max_size``,
    and what dead writers left."""
    cache.recheck_layout()
    now = time.time()
    removed, freed = [], 0
    kept = entries(cache)
    if older_than is not None:
        old = [e for e in kept if now - e[2] > older_than]
        kept = [e for e in kept if now - e[2] <= older_than]
        for _, directory, _, size in old:
            cache.discard(directory)
            removed.append(str(directory))
            freed += size
    trimmed, trimmed_bytes, total = _trim(cache, kept, max_size)
    removed += trimmed
    freed += trimmed_bytes
    for stale in (cache.root / "tmp").iterdir():
        try:
            if now - stale.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass
    shutil.rmtree(cache.root / "trash", ignore_errors=True)
    (cache.root / "trash").mkdir(exist_ok=True, mode=0o700)
    return CleanReport(removed, freed, len(kept), total)


def clear(cache: Cache) -> CleanReport:
    """Remove every entry and manifest."""
    report = clean(cache, older_than=-1.0)
    shutil.rmtree(cache.root / "manifests", ignore_errors=True)
    (cache.root / "manifests").mkdir(exist_ok=True, mode=0o700)
    return report


def verify(cache: Cache) -> list[CacheCorrupt]:
    """Hash every entry in full; remove and return the damaged ones."""
    bad: list[CacheCorrupt] = []
    for key, directory, _, _ in entries(cache):
        try:
            found = cache.lookup(key)
        except CacheCorrupt as exc:
            bad.append(exc)
            continue
        if found is not None and hash_file(found.path) != found.checksum:
            bad.append(cache.damaged(key, directory, "its checksum does not match"))
    return bad


def _trim(cache: Cache, kept: list[Listed], max_size: int | None) -> tuple[list[str], int, int]:
    """Discard ``kept``'s oldest entries (it is sorted by last use) beyond ``max_size``;
    (the directories removed, their bytes, the bytes left). ``kept`` loses them."""
    removed: list[str] = []
    freed = 0
    total = sum(e[3] for e in kept)
    while max_size is not None and kept and total > max_size:
        _, directory, _, size = kept.pop(0)
        cache.discard(directory)
        removed.append(str(directory))
        freed += size
        total -= size
    return removed, freed, total
