"""Cached stage results for incremental runs (SPEC section 6).

    plan_keys(graph) ──▶ {stage: KeyRecord}   Merkle chain of keys (plan.py),
                                               code fingerprints (fingerprint.py),
                                               value and file hashes (hashing.py)
    Cache(dir)       ──▶ lookup / load / write / lock / record / clean / verify
                                               (entries.py, codec.py, locks.py)
    explain(...)     ──▶ {stage: Reason}       would it run, and why

The runner's part, per selected stage in order::

    rec = keys[name]
    if rec.volatile or forced: run it (and do not store a volatile result)
    else:
        found = cache.lookup(rec.key)        # constant time
        raises CacheCorrupt -> emit cache_corrupt(stage, path, reason); a miss
        Entry   -> task_skipped(reason="cached"); consumers get cache.load(entry)
        None    -> with cache.lock(rec.key): look up again, else run and
                   cache.write(rec.key, value, stage=name), or in the worker
                   cache.target(rec.key, name).write(value)
    cache.record(pipeline_key(graph), name, rec)  # after the stage succeeded

Downstream of a ``cache=False`` stage, call ``plan_keys(graph, outputs={stage:
value})`` once its value exists, so consumers are keyed by its content.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CacheCorrupt, UnhashableParameter
from ..store import Handle
from . import maintenance
from .entries import Cache, CacheTarget, Corrupt, Entry
from .hashing import Unhashable, hash_path, hash_value
from .locks import KeyLock
from .plan import (
    CACHE_FORMAT_VERSION,
    KeyRecord,
    Reason,
    describe_changes,
    explain,
    pipeline_key,
    plan_keys,
    project_root,
)

__all__ = [
    "CACHE_FORMAT_VERSION",
    "Adopted",
    "Cache",
    "CacheCorrupt",
    "CacheTarget",
    "Corrupt",
    "Entry",
    "KeyLock",
    "KeyRecord",
    "Reason",
    "Unhashable",
    "UnhashableParameter",
    "adopted_handle",
    "describe_changes",
    "explain",
    "hash_path",
    "maintenance",
    "hash_value",
    "pipeline_key",
    "plan_keys",
    "project_root",
]


@dataclass(frozen=True)
class Adopted:
    """A cache entry its consumers map themselves: the payload of a ``"cache"`` handle."""

    root: str
    entry: Entry

    def load(self) -> Any:
        """The entry's value, memory-mapped and read-only."""
        return Cache(self.root).load(self.entry)


def adopted_handle(entry: Entry) -> Handle:
    """A handle on ``entry``: whoever reads it maps the entry's file, nothing is copied."""
    root = str(Path(entry.path).parents[3])  # <root>/entries/<xx>/<key>/<data file>
    value = Cache(root).load(entry)  # a mapping: nothing is read but the header
    try:
        length = len(value) if getattr(value, "ndim", 1) else None
    except TypeError:
        length = None
    return Handle("cache", entry.size, Adopted(root, entry), length)
