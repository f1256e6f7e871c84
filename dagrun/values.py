"""What kind of value is this: one answer for the store, the map split and the concat join.

``kind`` names a value without importing pandas, polars or pyarrow (the
type's module says whose it is)::

    kind          what                          travels as    a map splits it into
    ───────────── ───────────────────────────── ───────────── ─────────────────────
    "array"       numpy.ndarray                 shm           elements (axis 0)
    "table"       pyarrow.Table                 arrow         row chunks
    "batch"       pyarrow.RecordBatch           arrow         row chunks
    "pandas"      pandas.DataFrame              arrow         row chunks
    "series"      pandas.Series                 arrow         elements
    "polars"      polars.DataFrame              arrow         row chunks
    "list"        list / tuple                  pickle        elements
    "other"       anything else                 pickle        (not splittable)

The concat rule (``@stage(map=..., concat=True)``): the joined result is
what a vectorised function over the whole input would return.

- A map over **elements** (array rows, list items) stacks the per-element
  results: numpy arrays and scalars (numpy or Python numbers) with
  ``np.stack`` (four 8x8 results give 4x8x8, scalars give shape ``(n,)``);
  anything else stays a list. ``stack_batch`` does this per batch, in the
  worker, so every batch is already one chunk of rows.
- A map over **row chunks** (tables, frames) concatenates the chunk results.
- Joining batches is then always concatenation of chunks: ``concatenate``.
"""

from __future__ import annotations

import numbers
import typing
from typing import Any

ARROW_KINDS = frozenset({"table", "batch", "pandas", "series", "polars"})
CHUNKED_KINDS = frozenset({"table", "batch", "pandas", "polars"})  # split by row chunks


def kind(value: Any) -> str:
    """``array|table|batch|pandas|series|polars|list|other`` for ``value``."""
    cls = type(value)
    module = cls.__module__
    name = cls.__name__
    if module == "numpy" and name == "ndarray":
        return "array"
    if module.startswith("pyarrow"):
        if name == "Table":
            return "table"
        if name == "RecordBatch":
            return "batch"
    elif module.startswith("pandas"):
        if name == "DataFrame":
            return "pandas"
        if name == "Series":
            return "series"
    elif module.startswith("polars") and name == "DataFrame":
        return "polars"
    if isinstance(value, list | tuple):
        return "list"
    return "other"


def row_chunk(value: Any, start: int, stop: int) -> Any:
    """Rows ``[start, stop)`` of a table or frame as a zero-copy slice; None for other kinds."""
    what = kind(value)
    if what in ("table", "batch", "polars"):
        return value.slice(start, stop - start)
    if what == "pandas":
        return value.iloc[start:stop]
    return None


def rows(value: Any) -> int:
    """How many rows ``value`` adds once chunks are concatenated."""
    if isinstance(value, list):
        return len(value)
    num_rows = getattr(value, "num_rows", None)
    if isinstance(num_rows, int):
        return num_rows
    shape = getattr(value, "shape", None)
    if shape is not None:
        return shape[0] if len(shape) else 1
    return 1


def _stackable(value: Any) -> bool:
    if type(value).__module__ == "numpy":
        return kind(value) == "array" or isinstance(value, numbers.Number)
    return isinstance(value, numbers.Number)


def stack_batch(results: list[Any]) -> Any:
    """One batch of a map over elements, joined as one chunk of rows (see the module doc).

    numpy arrays and scalars are stacked along a new axis 0; anything else
    (or a mix) stays the list of results. Arrays of different shapes raise
    ``ValueError`` saying so.
    """
    if not results or not all(_stackable(r) for r in results):
        return list(results)
    import numpy as np

    shapes = {np.shape(r) for r in results}
    if len(shapes) > 1:
        shown = ", ".join(str(s) for s in sorted(shapes, key=str)[:3])
        msg = (
            f"concat=True stacks the per-element results into one array, but they have "
            f"different shapes ({shown}); return one shape per element, or drop concat=True "
            f"to get the list of results"
        )
        raise ValueError(msg)
    return np.stack([np.asarray(r) for r in results])


def concatenate(parts: list[Any]) -> Any:
    """Join chunks of rows into one value (``concat=True``); ``[]`` for no chunks.

    numpy arrays are concatenated along axis 0 (0-d ones count as one row);
    Arrow tables without copying (schemas unified: a column that is all null
    in one chunk still joins); record batches become one table; Arrow arrays
    one chunked array; pandas / polars frames and series with their
    ``concat``; lists are flattened. Anything else stays the list of parts.
    """
    if not parts:
        return parts
    first = parts[0]
    what = kind(first)
    if what == "array":
        import numpy as np

        return np.concatenate([np.atleast_1d(p) for p in parts])
    if what in ("table", "batch"):
        import pyarrow as pa

        if what == "batch":
            return pa.Table.from_batches(parts)
        return pa.concat_tables(parts, promote_options="default")
    if what in ("pandas", "series"):
        import pandas as pd

        return pd.concat(parts)
    if what == "polars" or (
        type(first).__module__.startswith("polars") and type(first).__name__ == "Series"
    ):
        import polars as pl

        return pl.concat(parts, how="vertical_relaxed")
    if type(first).__module__.startswith("pyarrow"):
        import pyarrow as pa

        if isinstance(first, pa.Array):
            return pa.chunked_array(parts, type=first.type)
        if isinstance(first, pa.ChunkedArray):
            return pa.chunked_array([c for p in parts for c in p.chunks], type=first.type)
    if isinstance(first, list):
        return [x for p in parts for x in p]
    return parts


def _unsplittable(annotation: Any) -> bool:
    if annotation in (int, float, complex, bool, str, bytes, dict, set, frozenset):
        return True
    origin = typing.get_origin(annotation)
    return origin in (dict, set, frozenset)


def unsplittable_annotation(annotation: Any) -> bool:
    """True when an input annotated so cannot be mapped over (``int``, ``dict[...]``...).

    Unions are unsplittable only when every member is; an unknown or missing
    annotation is taken as splittable (the value decides at run time).
    """
    import types

    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(members) and all(_unsplittable(a) for a in members)
    return _unsplittable(annotation)
