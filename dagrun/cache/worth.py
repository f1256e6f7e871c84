"""Whether a result is worth storing: writing it must not cost more than computing it again.

A result is stored unless writing it would take more than the tuning's
``cache_write_free_s`` *and* more than ``cache_write_share`` of the time its
stage took: a 1 GiB array made in 0.1 s is cheaper to make again than to
write, a 1 GiB array that took five minutes is not. The write rate is this
cache directory's own, measured once by writing and reading back a probe
entry (the same work ``Cache.write`` does: the data, then its checksum) and
remembered in ``<cache>/write_rate.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..settings import tuning

RATE_FILE = "write_rate.json"


def worth_storing(nbytes: int, compute_s: float, bytes_per_s: float,
                  free_s: float, share: float) -> bool:
    """Whether to write a result of ``nbytes`` that took ``compute_s`` to make (pure)."""
    if nbytes <= 0 or bytes_per_s <= 0:
        return True
    write_s = nbytes / bytes_per_s
    return write_s <= free_s or write_s <= share * compute_s


def size_of(value: Any) -> int:
    """Bytes a large value occupies (arrays, Arrow tables, frames); 0 when not cheap to know,
    which stores it (small values are what has no cheap size)."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    usage = getattr(value, "memory_usage", None)  # pandas
    if callable(usage) and type(value).__module__.startswith("pandas"):
        try:
            return int(usage(index=True, deep=False).sum())
        except Exception:  # noqa: BLE001 - unknown: store it
            return 0
    return 0


def write_rate(root: Path, write: Any) -> float:
    """Bytes per second the cache at ``root`` writes (``write(value)`` stores a probe entry
    and returns its directory); measured once, then read back."""
    path = root / RATE_FILE
    try:
        return float(json.loads(path.read_text())["bytes_per_s"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    import numpy as np

    probe = np.ones(tuning().cache_probe_bytes // 8)
    started = time.perf_counter()
    directory = write(probe)
    rate = probe.nbytes / max(time.perf_counter() - started, 1e-6)
    _remove_tree(directory)
    tmp = path.with_name(f".{RATE_FILE}.{os.getpid()}")
    tmp.write_text(json.dumps({"bytes_per_s": rate, "measured": time.time()}))
    os.replace(tmp, path)
    return rate


def _remove_tree(directory: Path) -> None:
    import shutil

    shutil.rmtree(directory, ignore_errors=True)
