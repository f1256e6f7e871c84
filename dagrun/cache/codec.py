"""How a value is written into a cache entry's data file and mapped back.

    numpy array (not object dtype) ─▶ value.npy    np.load(mmap_mode="r")
    Arrow Table / RecordBatch      ─▶ value.arrow  IPC file format, pa.memory_map
    pandas / polars frame, Series  ─▶ value.arrow  (through Arrow; converted back)
    anything else                  ─▶ value.pkl    pickle protocol 5

Each kind also names the magic bytes its file starts and ends with, which a
lookup checks in constant time (``MAGIC``). Arrays and tables come back
read-only and memory-mapped: a cached 1 GiB input costs a mapping.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

# kind -> (file name, magic at the start, magic at the end)
MAGIC: dict[str, tuple[str, bytes, bytes]] = {
    "npy": ("value.npy", b"\x93NUMPY", b""),
    "table": ("value.arrow", b"ARROW1", b"ARROW1"),
    "batch": ("value.arrow", b"ARROW1", b"ARROW1"),
    "pandas": ("value.arrow", b"ARROW1", b"ARROW1"),
    "series": ("value.arrow", b"ARROW1", b"ARROW1"),
    "polars": ("value.arrow", b"ARROW1", b"ARROW1"),
    "pickle": ("value.pkl", b"\x80", b"."),
}


def kind_of(value: Any) -> str:
    """The entry kind ``value`` is stored as."""
    module = type(value).__module__
    if module.startswith("numpy"):
        import numpy as np

        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            return "npy"
    from ..store import arrow_kind

    return arrow_kind(value) or "pickle"


def write(path: Path, kind: str, value: Any) -> dict[str, Any]:
    """Write ``value`` to ``path`` (flushed to disk); return extra metadata to keep."""
    extra: dict[str, Any] = {}
    if kind in ("npy", "pickle"):
        with open(path, "wb") as f:
            if kind == "npy":
                import numpy as np

                np.lib.format.write_array(f, value, allow_pickle=False)
                extra = {"dtype": value.dtype.str, "shape": list(value.shape)}
            else:
                pickle.dump(value, f, protocol=5)
    else:
        import pyarrow as pa

        from ..store import as_arrow, write_ipc

        if kind == "series":
            extra["name"] = value.name if isinstance(value.name, str | None) else None
        with pa.OSFile(str(path), "wb") as sink:
            write_ipc(sink, as_arrow(value, kind))
    return extra


def read(path: Path, kind: str, meta: dict[str, Any]) -> Any:
    """Map the value back, read-only where the kind allows."""
    if kind == "npy":
        import numpy as np

        if os.path.getsize(path) == 0 or 0 in meta.get("shape", [1]):
            array = np.load(path, allow_pickle=False)
            array.flags.writeable = False
            return array
        return np.load(path, mmap_mode="r", allow_pickle=False)
    if kind == "pickle":
        with open(path, "rb") as f:
            return pickle.load(f)
    import pyarrow as pa

    reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
    if kind == "batch":
        return reader.get_batch(0)
    table = reader.read_all()
    if kind == "pandas":
        return table.to_pandas()
    if kind == "series":
        series = table.to_pandas()["__series__"]
        series.name = meta.get("name")
        return series
    if kind == "polars":
        import polars as pl

        return pl.from_arrow(table)
    return table
