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

from pathlib import Path
from typing import Any

from ..errors import CacheCorrupt, UnhashableParameter
from .entries import Cache, CacheTarget, CleanReport, Corrupt, Entry
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
    "Cache",
    "CacheCorrupt",
    "CacheTarget",
    "CleanReport",
    "Corrupt",
    "Entry",
    "KeyLock",
    "KeyRecord",
    "Reason",
    "Unhashable",
    "UnhashableParameter",
    "describe_changes",
    "explain",
    "hash_path",
    "hash_value",
    "pipeline_key",
    "plan_keys",
    "project_root",
]


def adopted(entry: Entry) -> tuple[tuple[str, Entry], int | None]:
    """A payload a worker can load ``entry`` from, and the value's length along axis 0."""
    root = str(Path(entry.path).parents[3])  # <root>/entries/<xx>/<key>/<data file>
    value = Cache(root).load(entry)  # a mapping: nothing is read but the header
    try:
        length = len(value) if getattr(value, "ndim", 1) else None
    except TypeError:
        length = None
    return (root, entry), length


def load_adopted(payload: tuple[str, Entry]) -> Any:
    """The value of an adopted entry, memory-mapped and read-only."""
    root, entry = payload
    return Cache(root).load(entry)
