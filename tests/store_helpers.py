"""Helpers for the store tests: a consumer process that decodes and reports checks.

The consumer runs in another real process (fork or spawn); it sends back
plain data (booleans, strings, numbers) so the assertions stay in the test.
"""

from __future__ import annotations

import mmap
import os
import pickle
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from dagrun.store import Handle, StoreConfig, decode


def mapping_of(address: int) -> tuple[str, str] | None:
    """(permissions, path) of the mapping of this process holding ``address``."""
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[1], fields[5].strip() if len(fields) > 5 else ""
    return None


def addresses(value: Any) -> list[int]:
    """Addresses of the data buffers behind ``value`` (arrays, Arrow, containers)."""
    if isinstance(value, np.ndarray):  # small ones travel pickled, inside the handle
        return [value.__array_interface__["data"][0]] if value.nbytes >= 64 * 1024 else []
    if isinstance(value, dict):
        return [a for v in value.values() for a in addresses(v)]
    if isinstance(value, list | tuple):
        return [a for v in value for a in addresses(v)]
    module = type(value).__module__
    if module.startswith("pandas"):  # numeric columns come back zero-copy
        frame = value.to_frame() if value.ndim == 1 else value
        return [
            frame[c].to_numpy().__array_interface__["data"][0]
            for c in frame.columns
            if frame[c].dtype.kind in "iuf"
        ]
    if module.startswith("polars"):  # numeric columns come back zero-copy
        numeric = [c for c in value.columns if value[c].dtype.is_numeric()]
        return [a for c in numeric for a in addresses(value[c].to_arrow())]
    if module.startswith("pyarrow") and hasattr(value, "buffers"):
        return [b.address for b in value.buffers() if b is not None and b.size]
    if module.startswith("pyarrow"):
        found = []
        for column in value.columns:
            chunks = column.chunks if hasattr(column, "chunks") else [column]
            for chunk in chunks:
                found += [b.address for b in chunk.buffers() if b is not None and b.size]
        return found
    return []


def equal(a: Any, b: Any) -> bool:
    """Deep equality that also compares dtypes, shapes and schemas."""
    if isinstance(b, np.ndarray) and b.dtype.hasobject:
        return isinstance(a, np.ndarray) and a.shape == b.shape and a.tolist() == b.tolist()
    if isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
        )
    if isinstance(b, dict):
        return isinstance(a, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in b)
    if isinstance(b, list | tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(equal(x, y) for x, y in zip(a, b, strict=True))
        )
    module = type(b).__module__
    if module.startswith("pyarrow"):
        same = a.equals(b) or a.to_pylist() == b.to_pylist()  # dictionaries may be unified

        def kind(x: Any) -> Any:
            return x.schema.names if hasattr(x, "schema") else x.type

        return type(a) is type(b) and kind(a) == kind(b) and same
    if module.startswith(("pandas", "polars")):
        return type(a) is type(b) and a.equals(b)
    return a == b


def _write_checks(value: Any) -> tuple[bool | None, bool | None]:
    """(every write raises, no array can be made writeable again) over the arrays seen."""
    arrays = []
    if isinstance(value, np.ndarray):
        arrays = [value]
    elif isinstance(value, dict):
        arrays = [v for v in value.values() if isinstance(v, np.ndarray)]
    elif isinstance(value, list | tuple):
        arrays = [v for v in value if isinstance(v, np.ndarray)]
    arrays = [a for a in arrays if a.size and not a.dtype.hasobject]
    if not arrays:
        return None, None
    raises = locked = True
    for arr in arrays:
        try:
            arr[...] = arr  # any write at all
            raises = False
        except ValueError:
            pass
        if arr.nbytes < 64 * 1024:
            continue  # pickled inside the handle: a private copy, read-only by flag only
        try:
            arr.flags.writeable = True  # refused when the memory itself is read-only
            locked = False
            arr.flags.writeable = False
        except ValueError:
            pass
    return raises, locked


def check(handle: Handle, config: StoreConfig, expected: Any) -> dict[str, Any]:
    """Decode ``handle`` here and describe what came back."""
    import pyarrow as pa

    before = pa.total_allocated_bytes()
    decoded = decode(handle, config, "consumer")
    value = decoded.value
    allocated = pa.total_allocated_bytes() - before
    if type(value).__module__.startswith(("pandas", "polars")):
        allocated = None  # conversion to a frame may copy; only Arrow reads must not
    report = {
        "equal": equal(value, expected),
        "allocated": allocated,
        "mappings": [mapping_of(a) for a in addresses(value)],
        "writes_raise": _write_checks(value)[0],
        "flag_locked": _write_checks(value)[1],
        "pid": os.getpid(),
    }
    if isinstance(value, np.ndarray) and isinstance(value.base, np.ndarray):
        root = value.base
        report["shares_root"] = isinstance(root.base, mmap.mmap) and bool(
            np.shares_memory(value, root)
        )
    del value
    decoded.close()
    return report


def serve(conn: Connection) -> None:
    """Consumer loop: receive (handle, config, pickled expected), send back ``check``."""
    while (message := conn.recv()) is not None:
        handle, config, blob = message
        try:
            conn.send(check(handle, config, pickle.loads(blob)))
        except Exception as exc:  # noqa: BLE001 - report, the test asserts
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
    conn.close()
