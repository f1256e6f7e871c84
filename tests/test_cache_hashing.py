"""Value hashing: layout, type and slice bounds count; unhashable values raise."""

from __future__ import annotations

import enum
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dagrun.cache import Unhashable, hash_path, hash_value


class Colour(enum.Enum):
    RED = 1
    BLUE = 2


def test_two_slices_of_one_arrow_array_differ() -> None:
    """Slices at different offsets of one array hash differently, equal slices alike."""
    array = pa.array(range(100), type=pa.int64())
    assert hash_value(array.slice(0, 10)) != hash_value(array.slice(10, 10))
    assert hash_value(array.slice(10, 10)) == hash_value(array.slice(10, 10))
    strings = pa.array([str(i) for i in range(100)])
    assert hash_value(strings.slice(0, 10)) != hash_value(strings.slice(10, 10))


def test_arrow_type_and_length_count() -> None:
    """The same bytes as another Arrow type, or a shorter table, hash differently."""
    assert hash_value(pa.array([1, 2], pa.int64())) != hash_value(pa.array([1, 2], pa.uint64()))
    table = pa.table({"a": [1, 2, 3]})
    assert hash_value(table) != hash_value(table.slice(0, 2))
    assert hash_value(table) == hash_value(pa.table({"a": [1, 2, 3]}))


def test_numpy_dtype_shape_and_order_count() -> None:
    """dtype, shape and memory order are part of an array's hash."""
    a = np.arange(12, dtype=np.int64)
    assert hash_value(a) != hash_value(a.view(np.float64))
    assert hash_value(a.reshape(3, 4)) != hash_value(a.reshape(4, 3))
    c = a.reshape(3, 4)
    assert hash_value(c) != hash_value(np.asfortranarray(c))
    assert hash_value(c) == hash_value(c.copy())


def test_non_contiguous_array_hashes_its_visible_values() -> None:
    """A strided view hashes what it shows: equal views alike, different ones not."""
    big = np.arange(10_000, dtype=np.float32).reshape(100, 100)
    view = big[::2, ::3]
    assert not view.flags.c_contiguous and not view.flags.f_contiguous
    assert hash_value(view) == hash_value(big.copy()[::2, ::3])
    assert hash_value(view) != hash_value(big[1::2, ::3])


def test_plain_data_and_containers() -> None:
    """Containers hash by structure and content; dicts and sets ignore insertion order."""
    assert hash_value({"a": 1, "b": 2}) == hash_value({"b": 2, "a": 1})
    assert hash_value({1, 2, 3}) == hash_value({3, 2, 1})
    assert hash_value((1, "a")) != hash_value(("1a",))
    assert hash_value([1, 2]) != hash_value((1, 2))
    assert hash_value(1) != hash_value(1.0) != hash_value(True)
    assert hash_value(Colour.RED) != hash_value(Colour.BLUE)
    assert hash_value(Path("a")) != hash_value("a")


def test_frames_hash_through_arrow() -> None:
    """pandas and polars frames hash by content."""
    import pandas as pd
    import polars as pl

    assert hash_value(pd.DataFrame({"a": [1, 2]})) == hash_value(pd.DataFrame({"a": [1, 2]}))
    assert hash_value(pd.DataFrame({"a": [1, 2]})) != hash_value(pd.DataFrame({"a": [1, 3]}))
    assert hash_value(pl.DataFrame({"a": [1, 2]})) != hash_value(pl.DataFrame({"a": [2, 2]}))


def test_unhashable_values_raise() -> None:
    """An object with no content hash raises rather than hashing to a constant."""
    with pytest.raises(Unhashable, match="builtins.object"):
        hash_value(object())
    with pytest.raises(Unhashable):
        hash_value({"key": [lambda: 1]})


def test_path_hash_follows_content(tmp_path: Path) -> None:
    """A file's hash follows its bytes; a directory's its names and contents."""
    f = tmp_path / "d" / "x.txt"
    f.parent.mkdir()
    f.write_text("one")
    first, tree = hash_path(f), hash_path(f.parent)
    f.write_text("two")
    assert hash_path(f) != first and hash_path(f.parent) != tree
    assert hash_path(tmp_path / "missing") == "missing"


def test_hash_rate_of_a_large_array() -> None:
    """Hashing a 256 MiB contiguous array runs at memory speed (no copy)."""
    array = np.ones(256 << 17, dtype=np.float64)  # 256 MiB
    hash_value(array)
    start = time.perf_counter()
    hash_value(array)
    rate = array.nbytes / (time.perf_counter() - start) / 1e9
    print(f"hash rate: {rate:.1f} GB/s")
    assert rate > 2.0
