"""Round trips through the store to a consumer in another process (fork and spawn).

Each value is encoded here (the producer), decoded in a real other process,
and checked there: equality with dtype/shape/schema, that every data buffer
lies in a read-only shared mapping of one of our segments (no hidden copy),
that writing raises, and that Arrow reads allocate nothing.
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import pickle
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from dagrun.store import Store, StoreConfig, decode, encode
from tests.store_helpers import serve

N = 40_000  # rows: large enough (> 64 KiB) for every value to leave the pickle path


def _structured() -> np.ndarray:
    dt = np.dtype([("a", "i4"), ("b", "f8"), ("c", "S3"), ("d", "f4", (2,))])
    arr = np.zeros(N, dt)
    arr["a"] = np.arange(N)
    arr["b"] = np.linspace(0, 1, N)
    arr["c"] = b"xyz"
    return arr


def _numeric(dtype: str) -> Callable[[], np.ndarray]:
    return lambda: (np.arange(N * 2) % 251).astype(dtype)


ARRAYS: dict[str, Callable[[], np.ndarray]] = {
    **{dt: _numeric(dt) for dt in ["bool", "int8", "uint16", "int32", "int64", "float16"]},
    **{dt: _numeric(dt) for dt in ["float32", "float64", "complex64", "complex128"]},
    "datetime64": lambda: np.arange(N).astype("datetime64[ns]"),
    "timedelta64": lambda: np.arange(N, dtype="timedelta64[s]"),
    "unicode": lambda: np.array([f"s{i}" for i in range(N)], dtype="U8"),
    "structured": _structured,
    "fortran": lambda: np.asfortranarray(np.arange(N * 4, dtype=float).reshape(400, -1)),
    "3d": lambda: np.arange(N * 6, dtype="int32").reshape(20, 30, -1),
    "strided-view": lambda: np.arange(N * 8, dtype=float).reshape(800, -1)[::2, ::3],
    "reversed-view": lambda: np.arange(N, dtype=float)[::-1],
}


def _arrow_table() -> pa.Table:
    ids = np.arange(N)
    return pa.table(
        {
            "id": ids,
            "nested": pa.array([[i, i + 1] if i % 3 else None for i in range(N)]),
            "struct": pa.array([{"x": i, "y": str(i)} for i in range(N)]),
            "dict": pa.array([("a", "b", "c")[i % 3] for i in range(N)]).dictionary_encode(),
            "nulls": pa.array([None if i % 10 else float(i) for i in range(N)]),
            "when": pa.array([datetime.date(2024, 1, 1)] * N),
        }
    )


def _chunked_dictionary() -> pa.Table:
    # Two chunks with different dictionaries: the IPC file format needs them unified.
    first = pa.array(["a", "b"] * (N // 2)).dictionary_encode()
    second = pa.array(["c", "d"] * (N // 2)).dictionary_encode()
    return pa.table({"d": pa.chunked_array([first, second]), "v": np.arange(2 * N)})


def _pandas() -> Any:
    import pandas as pd

    return pd.DataFrame(
        {"a": np.arange(N), "b": np.linspace(0, 1, N), "c": [f"r{i}" for i in range(N)]},
        index=pd.RangeIndex(5, 5 + N, name="row"),
    )


def _series() -> Any:
    import pandas as pd

    return pd.Series(np.arange(N, dtype=float), name="speed")


def _polars() -> Any:
    import polars as pl

    return pl.DataFrame({"a": np.arange(N), "b": [f"r{i}" for i in range(N)]})


OTHERS: dict[str, tuple[Callable[[], Any], str]] = {
    "arrow-table": (_arrow_table, "arrow"),
    "arrow-batch": (lambda: _arrow_table().to_batches()[0], "arrow"),
    "arrow-zero-rows": (lambda: pa.table({"x": pa.array([], pa.int64())}), "pickle"),
    "arrow-chunked-dictionary": (_chunked_dictionary, "arrow"),
    "pandas": (_pandas, "arrow"),
    "pandas-series": (_series, "arrow"),
    "polars": (_polars, "arrow"),
    "dict": (lambda: {"x": np.ones(N), "meta": {"n": 3}, "t": _arrow_table()}, "shm+arrow+pickle"),
    "list": (lambda: [np.arange(N), "label", np.zeros((3, 3))], "shm+pickle"),
    "tuple": (lambda: (np.arange(N, dtype="f4"), np.arange(N, dtype="i8")), "shm+pickle"),
    "arrow-array": (lambda: pa.array(np.arange(N)), "shm+pickle"),
    "large-pickle": (lambda: list(range(N)), "pickle"),
    "large-bytes": (lambda: bytearray(b"q" * N * 4), "shm"),
    "large-immutable-bytes": (lambda: bytes(b"r" * N * 4), "shm"),
    "small-int": (lambda: 42, "pickle"),
    "small-array": (lambda: np.arange(10), "pickle"),
    "zero-d": (lambda: np.array(3.5), "pickle"),
    "empty-array": (lambda: np.empty((0, 7)), "pickle"),
    "object-array": (lambda: np.array([{"a": 1}, None] * 10, dtype=object), "pickle"),
}


@pytest.fixture
def config(tmp_path: Any) -> Iterator[StoreConfig]:
    """A run's store configuration; its Store is closed (and checked empty) afterwards."""
    cfg = StoreConfig.for_run(f"t-{uuid.uuid4().hex[:8]}", tmp_path / "state")
    store = Store(cfg)
    yield cfg
    store.close()
    assert not [n for n in os.listdir(cfg.shm_dir) if n.startswith(cfg.prefix)]


class Consumer:
    """A consumer process that decodes handles and reports back."""

    def __init__(self, method: str) -> None:
        ctx = mp.get_context(method)
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child,))
        self.process.start()
        child.close()

    def check(self, handle: Any, config: StoreConfig, expected: Any) -> dict[str, Any]:
        self.conn.send((handle, config, pickle.dumps(expected, protocol=5)))
        assert self.conn.poll(30), "consumer did not answer"
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send(None)
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _assert_report(report: dict[str, Any], handle: Any, config: StoreConfig) -> None:
    assert "error" not in report, report
    assert report["pid"] != os.getpid()
    assert report["equal"]
    assert report["allocated"] in (0, None)  # Arrow reads are zero-copy
    # bytes and bytearray own their memory: they are copied out of the mapping.
    copied = getattr(handle.payload, "kind", None) in ("bytes", "bytearray")
    if handle.transport != "pickle" and not copied:
        assert report["mappings"], "no data buffer found"
    for found in report["mappings"] if handle.transport != "pickle" and not copied else []:
        assert found is not None
        perms, path = found
        assert perms.startswith("r-") and perms.endswith("s"), found  # read-only, shared
        assert os.path.basename(path).startswith(config.prefix), found
    if report["writes_raise"] is not None:
        assert report["writes_raise"]
        # A mapped input is read-only in the kernel: even the flag cannot be turned back.
        assert report["flag_locked"] or handle.transport == "pickle"
    if "shares_root" in report and handle.transport == "shm":
        assert report["shares_root"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ARRAYS))
def test_array_round_trip_fork(name: str, config: StoreConfig) -> None:
    """A numpy array of each dtype/layout reaches a forked consumer mapped read-only."""
    value = ARRAYS[name]()
    handle = encode(value, config, "producer")
    assert handle.transport == "shm"
    assert handle.nbytes == value.nbytes and handle.length == len(value)
    consumer = Consumer("fork")
    try:
        _assert_report(consumer.check(handle, config, value), handle, config)
    finally:
        consumer.stop()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OTHERS))
def test_other_round_trip_fork(name: str, config: StoreConfig) -> None:
    """Arrow, frames, containers and small values pick their transport and round-trip."""
    if name == "polars":
        pytest.skip("polars' thread pool makes forking after its use unsafe; see the spawn test")
    make, transport = OTHERS[name]
    value = make()
    handle = encode(value, config, "producer")
    assert handle.transport == transport
    consumer = Consumer("fork")
    try:
        _assert_report(consumer.check(handle, config, value), handle, config)
    finally:
        consumer.stop()


@pytest.mark.slow
def test_whole_matrix_spawn(config: StoreConfig) -> None:
    """Every value of the matrix also round-trips to a spawned consumer."""
    consumer = Consumer("spawn")
    try:
        cases = [(n, f()) for n, f in ARRAYS.items()] + [(n, f()) for n, (f, _) in OTHERS.items()]
        for name, value in cases:
            handle = encode(value, config, "producer")
            report = consumer.check(handle, config, value)
            try:
                _assert_report(report, handle, config)
            except AssertionError as exc:
                raise AssertionError(f"{name}: {exc}") from exc
    finally:
        consumer.stop()


def test_lengths(config: StoreConfig) -> None:
    """``length`` is len along axis 0, num_rows, or len() of a container; None for 0-d."""
    assert encode(np.ones((N, 3)), config, "s").length == N
    assert encode(np.array(1.0), config, "s").length is None
    assert encode(_arrow_table(), config, "s").length == N
    assert encode([np.ones(N), 1, 2], config, "s").length == 3
    assert encode(_pandas(), config, "s").length == N


def test_arrow_decode_in_process_is_zero_copy(config: StoreConfig) -> None:
    """Decoding a table allocates no Arrow memory, also in the producing process."""
    table = _arrow_table()
    handle = encode(table, config, "producer")
    before = pa.total_allocated_bytes()
    decoded = decode(handle, config, "consumer")
    assert pa.total_allocated_bytes() == before
    assert decoded.value.equals(table)
    decoded.close()


def test_small_values_touch_no_file(config: StoreConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small values are one pickle inside the handle: no filesystem call at all."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("filesystem touched on the small path")

    for name in ("open", "stat", "statvfs", "listdir"):
        monkeypatch.setattr(os, name, forbidden)
    for value in (1, "x", {"a": [1, 2]}, np.arange(100), None):
        handle = encode(value, config, "s")
        assert handle.transport == "pickle"
        assert equal_small(decode(handle, config, "t").value, value)


def equal_small(a: Any, b: Any) -> bool:
    return bool(np.array_equal(a, b)) if isinstance(b, np.ndarray) else a == b


def test_decoded_small_array_is_read_only(config: StoreConfig) -> None:
    """A pickled array input is read-only as well."""
    value = decode(encode(np.arange(5), config, "s"), config, "t").value
    with pytest.raises(ValueError, match="read-only"):
        value[0] = 1


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
def test_bytes_like_values_keep_their_type(kind: str, config: StoreConfig) -> None:
    """A large bytes / bytearray / memoryview is stored as is and read back as its own type."""
    raw = bytes(range(256)) * (N // 32)
    value = {"bytes": raw, "bytearray": bytearray(raw),
             "memoryview": memoryview(bytearray(raw)).cast("I", (len(raw) // 64, 16))}[kind]
    handle = encode(value, config, "producer")
    assert handle.transport == "shm" and handle.nbytes == len(raw)
    decoded = decode(handle, config, "consumer")
    try:
        got = decoded.value
        assert type(got) is type(value)
        if kind == "memoryview":
            assert got.readonly and got.format == "I" and got.shape == value.shape
            assert got.tobytes() == raw
        else:
            assert got == raw
    finally:
        del got
        decoded.close()


def test_a_large_plain_python_value_is_one_pickle(config: StoreConfig) -> None:
    """A list of ints pickles once into a segment: no per-object hook (the tree) runs."""
    from dagrun.store.config import BlobPayload

    value = list(range(N))
    handle = encode(value, config, "producer")
    assert handle.transport == "pickle" and isinstance(handle.payload, BlobPayload)
    assert handle.payload.kind == "pickle" and handle.length == N
    decoded = decode(handle, config, "consumer")
    try:
        assert decoded.value == value
    finally:
        decoded.close()
