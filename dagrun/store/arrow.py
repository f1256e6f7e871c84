"""Arrow tables and record batches (and pandas / polars frames) as IPC files in segments.

    Table/RecordBatch ─▶ IPC *file* format written straight into a segment
    pandas/polars frame ─▶ pa.Table (then as above)
    consumer: mmap PROT_READ ─▶ pa.py_buffer ─▶ pa.ipc.open_file ─▶ zero-copy Table

The file (random-access) format is read in place: every column buffer of
the decoded table points into the mapping, so ``pa.total_allocated_bytes()``
does not move. The size is measured first with a ``MockOutputStream`` so
the segment is allocated once, exactly. pandas and polars are never
imported unless the value is one of theirs (its type's module says so).
"""

from __future__ import annotations

from typing import Any

from ..values import ARROW_KINDS, kind
from . import segments
from .config import ArrowPayload, Handle, StoreConfig


def kind_of(value: Any) -> str | None:
    """``table|batch|pandas|series|polars`` for values that travel as Arrow, else None."""
    what = kind(value)
    return what if what in ARROW_KINDS else None


def as_arrow(value: Any, kind: str) -> Any:
    """``value`` (of an Arrow ``kind``) as a pyarrow Table or RecordBatch."""
    import pyarrow as pa

    if kind in ("table", "batch"):
        return value
    if kind == "pandas":
        return pa.Table.from_pandas(value)
    if kind == "series":
        return pa.Table.from_pandas(value.to_frame(name="__series__"))
    return value.to_arrow()  # polars


def write_ipc(sink: Any, data: Any) -> None:
    """Write a Table or RecordBatch to ``sink`` in the IPC file format."""
    import pyarrow as pa

    with pa.ipc.new_file(sink, data.schema) as writer:
        if isinstance(data, pa.RecordBatch):
            writer.write_batch(data)
        else:
            writer.write_table(data)


def encode_arrow(value: Any, kind: str, config: StoreConfig, stage: str) -> Handle | None:
    """Store ``value`` as an Arrow IPC file; None when it is small enough to pickle."""
    import pyarrow as pa

    data = as_arrow(value, kind)
    mock = pa.MockOutputStream()
    try:
        write_ipc(mock, data)
    except pa.ArrowInvalid:
        if not isinstance(data, pa.Table):
            raise
        data = data.unify_dictionaries()  # the file format wants one dictionary per column
        mock = pa.MockOutputStream()
        write_ipc(mock, data)
    size = mock.size()
    if size < config.inline_max:
        return None
    entry, ref, _fresh = segments.create(config, size, stage)
    with segments.filling(config, ref, entry):
        target = pa.py_buffer(entry.mm)
        with pa.FixedSizeBufferWriter(target) as out:
            write_ipc(out, data)
        del target
    extra = value.name if kind == "series" else None
    transport = "arrow" if ref.where == "shm" else "arrow+file"
    return Handle(transport, size, ArrowPayload(ref, size, kind, extra), data.num_rows)


def decode_arrow(payload: ArrowPayload, config: StoreConfig, stage: str) -> Any:
    """The stored value rebuilt over the read-only mapping (Arrow: zero-copy)."""
    import pyarrow as pa

    root = segments.open_read(config, payload.segment, stage)
    reader = pa.ipc.open_file(pa.py_buffer(root[: payload.size]))
    if payload.kind == "batch":
        return reader.get_batch(0)
    table = reader.read_all()
    if payload.kind == "table":
        return table
    if payload.kind == "pandas":
        return table.to_pandas(split_blocks=True)
    if payload.kind == "series":
        return table.to_pandas(split_blocks=True)["__series__"].rename(payload.extra)
    import polars as pl

    return pl.from_arrow(table, rechunk=False)
