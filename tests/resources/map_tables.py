"""Mapping over an Arrow table (row chunks) and a pandas frame."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from dagrun import stage


@stage
def events(rows: int = 10_000) -> pa.Table:
    """``rows`` rows: ``id`` 0..rows-1, ``value`` id / rows, ``name`` a short string."""
    ids = pa.array(range(rows), pa.int64())
    return pa.table({
        "id": ids,
        "value": pc.divide(pc.cast(ids, pa.float64()), max(rows, 1)),
        "name": pc.cast(pc.multiply(ids, 7), pa.string()),
    })


@stage(map="events", batch_size=3000)
def chunks(events: pa.Table) -> dict:
    """What one call receives: a zero-copy slice of rows of the whole (mapped) table."""
    column = events.column("id")
    first = column.chunk(0) if column.num_chunks else None
    allocated = pa.total_allocated_bytes()
    events.slice(0, 10)  # slicing again allocates nothing either
    return {
        "type": type(events).__name__,
        "rows": events.num_rows,
        "first": column[0].as_py() if events.num_rows else None,
        "offset": first.offset if first is not None else None,
        "buffer_bytes": first.buffers()[1].size if first is not None else None,
        "allocated_by_slice": pa.total_allocated_bytes() - allocated,
    }


@stage(map="events", batch_size=3000, concat=True)
def selected(events: pa.Table, threshold: float = 0.5) -> pa.Table:
    """Rows whose value exceeds ``threshold``, with a computed column; joined back."""
    kept = events.filter(pc.greater(events["value"], threshold))
    return kept.append_column("double", pc.multiply(kept["id"], 2))


@stage(map="events", batch_size=4000, concat=True)
def as_batches(events: pa.Table) -> pa.RecordBatch:
    """Each chunk as one record batch; concatenated into a table."""
    return events.combine_chunks().to_batches()[0]


@stage(map="events", batch_size=3000)
def fragile(events: pa.Table, bad_id: int = -1) -> int:
    """Fails on the chunk holding ``bad_id``."""
    if pc.any(pc.equal(events["id"], bad_id)).as_py():
        raise ValueError(f"id {bad_id} is bad")
    return events.num_rows


@stage
def frame(rows: int = 10_000):
    """The same rows as a pandas DataFrame (it travels as Arrow, arrives as pandas)."""
    return events(rows).to_pandas()


@stage(map="frame", batch_size=2500, concat=True)
def frame_rows(frame):
    """Each chunk is a row slice of the frame (keeping its index); concatenated with pandas."""
    return frame[frame["id"] % 2 == 0]
