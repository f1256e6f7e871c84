"""The cache directory: round trips, damage found in constant time, races, locks, cleaning."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dagrun.cache import Cache, CacheCorrupt, Entry, KeyRecord, maintenance

KEY = "0123456789abcdef0123456789abcdef"


def read_bytes_so_far() -> int:
    """Bytes this process has read through read-type system calls (``rchar``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_directory_is_private(tmp_path: Path) -> None:
    """The cache directory is created 0700."""
    Cache(tmp_path / "c")
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "value",
    [
        np.arange(12.0).reshape(3, 4),
        np.asfortranarray(np.arange(12).reshape(3, 4)),
        np.array(7),
        np.zeros((0, 3)),
        np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
    ],
    ids=["c", "fortran", "0d", "empty", "structured"],
)
def test_arrays_come_back_read_only_and_equal(tmp_path: Path, value: np.ndarray) -> None:
    """Arrays round-trip with dtype, shape and order, read-only."""
    cache = Cache(tmp_path)
    entry = cache.write(KEY, value, stage="s")
    loaded = cache.load(cache.lookup(KEY))
    assert entry.kind == "npy" and loaded.dtype == value.dtype and loaded.shape == value.shape
    np.testing.assert_array_equal(loaded, value)
    assert loaded.flags.f_contiguous == value.flags.f_contiguous
    with pytest.raises(ValueError):
        loaded[...] = 0


def test_arrow_table_is_memory_mapped(tmp_path: Path) -> None:
    """A cached table is read in place: loading allocates no Arrow memory."""
    cache = Cache(tmp_path)
    table = pa.table({"a": np.arange(1_000_000), "b": [str(i % 7) for i in range(1_000_000)]})
    cache.write(KEY, table)
    del table
    before = pa.total_allocated_bytes()
    loaded = cache.load(cache.lookup(KEY))
    assert pa.total_allocated_bytes() == before
    assert loaded.num_rows == 1_000_000 and loaded.column("b")[8].as_py() == "1"


def test_other_kinds_round_trip(tmp_path: Path) -> None:
    """Record batches, pandas frames and series, and pickled values round-trip."""
    import pandas as pd

    cache = Cache(tmp_path)
    values = {
        "a" * 32: pa.record_batch({"x": [1, 2]}),
        "b" * 32: pd.DataFrame({"x": [1.5, 2.5]}),
        "c" * 32: pd.Series([1, 2], name="n"),
        "d" * 32: {"nested": [1, "two", (3.0,)]},
    }
    for key, value in values.items():
        cache.write(key, value)
    assert cache.load(cache.lookup("a" * 32)).equals(values["a" * 32])
    pd.testing.assert_frame_equal(cache.load(cache.lookup("b" * 32)), values["b" * 32])
    pd.testing.assert_series_equal(cache.load(cache.lookup("c" * 32)), values["c" * 32])
    assert cache.load(cache.lookup("d" * 32)) == values["d" * 32]


def test_entry_is_small_and_picklable(tmp_path: Path) -> None:
    """An Entry pickles to a few hundred bytes, whatever the value's size."""
    entry = Cache(tmp_path).write(KEY, np.zeros(1 << 20))
    assert pickle.loads(pickle.dumps(entry)) == entry and len(pickle.dumps(entry)) < 400


def test_truncated_entry_is_found_without_reading_it(tmp_path: Path) -> None:
    """A truncated 64 MiB entry is reported after reading a few KiB, then treated as a miss."""
    cache = Cache(tmp_path)
    entry = cache.write(KEY, np.ones(8 << 20))
    start = read_bytes_so_far()
    assert cache.lookup(KEY) == entry
    assert read_bytes_so_far() - start < 64 << 10
    os.truncate(entry.path, entry.size - 1)
    start = read_bytes_so_far()
    with pytest.raises(CacheCorrupt, match="truncated") as info:
        cache.lookup(KEY)
    assert read_bytes_so_far() - start < 64 << 10
    assert KEY in info.value.path
    assert cache.lookup(KEY) is None
    assert cache.write(KEY, np.ones(3)).size > 0  # the recomputed value can be stored


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_damaged_header_and_footer_are_found(tmp_path: Path) -> None:
    """A flipped byte in the header or in an Arrow footer fails the lookup."""
    cache = Cache(tmp_path)
    entry = cache.write(KEY, np.arange(100_000))
    flip_byte(entry.path, 20)
    with pytest.raises(CacheCorrupt, match="header"):
        cache.lookup(KEY)
    entry = cache.write(KEY, pa.table({"a": np.arange(100_000)}))
    flip_byte(entry.path, entry.size - 10)
    with pytest.raises(CacheCorrupt, match="footer"):
        cache.lookup(KEY)


def test_verify_catches_a_flipped_byte_in_the_middle(tmp_path: Path) -> None:
    """A flip deep inside the data passes the constant-time lookup; verify finds and drops it."""
    cache = Cache(tmp_path)
    entry = cache.write(KEY, np.arange(1_000_000))
    cache.write("f" * 32, np.arange(10))
    flip_byte(entry.path, entry.size // 2)
    assert cache.lookup(KEY) == entry
    bad = maintenance.verify(cache)
    assert [b.reason for b in bad] == ["its checksum does not match"]
    assert cache.lookup(KEY) is None and cache.lookup("f" * 32) is not None


def test_damaged_metadata_is_a_miss(tmp_path: Path) -> None:
    """Unparseable metadata is reported as damage."""
    cache = Cache(tmp_path)
    entry = cache.write(KEY, [1, 2, 3])
    (Path(entry.path).parent / "meta.json").write_text("{not json")
    with pytest.raises(CacheCorrupt, match="metadata"):
        cache.lookup(KEY)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
def test_pickle_of_another_user_is_never_loaded(tmp_path: Path) -> None:
    """A pickle entry whose file belongs to another user is refused, not unpickled."""
    cache = Cache(tmp_path)
    entry = cache.write(KEY, {"a": 1})
    os.chown(entry.path, 65534, 65534)
    with pytest.raises(CacheCorrupt, match="another user"):
        cache.lookup(KEY)


WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from dagrun.cache import Cache
    cache, start = Cache(sys.argv[1]), float(sys.argv[2])
    time.sleep(max(0.0, start - time.time()))
    for i in range(30):
        cache.write(f"{i:032x}", np.full(1 << 20, i, dtype=np.int64), stage="s")
    """
)


@pytest.mark.slow
def test_concurrent_writers_of_one_key_never_corrupt(tmp_path: Path) -> None:
    """Two processes writing the same 30 keys at once leave 30 intact, correct entries."""
    start = time.time() + 1.0
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(start)])
        for _ in range(2)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    cache = Cache(tmp_path)
    assert maintenance.verify(cache) == []
    for i in range(30):
        value = cache.load(cache.lookup(f"{i:032x}"))
        assert value.shape == (1 << 20,) and int(value[0]) == int(value[-1]) == i
    assert list((tmp_path / "tmp").iterdir()) == []


HOLDER = textwrap.dedent(
    """
    import sys
    from dagrun.cache import Cache
    with Cache(sys.argv[1]).lock(sys.argv[2]):
        print("held", flush=True)
        sys.stdin.read()
    """
)


@pytest.mark.slow
def test_lock_per_key_excludes_another_process(tmp_path: Path) -> None:
    """While another process holds a key's lock, try_lock fails and lock() waits for it."""
    cache = Cache(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), KEY],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cache.try_lock(KEY) is None
        other = cache.try_lock("e" * 32)
        assert other is not None
        other.release()
        holder.stdin.close()  # the holder releases, then exits
        start = time.monotonic()
        with cache.lock(KEY) as lock:
            assert lock.held
        assert time.monotonic() - start < 30
    finally:
        holder.kill() if holder.poll() is None else None
        holder.wait(timeout=30)
        holder.stdout.close()
    lock = cache.try_lock(KEY)
    assert lock is not None
    lock.release()


def _write_in_child(target: object) -> None:
    target.write(np.arange(5))  # type: ignore[attr-defined]


@pytest.mark.slow
def test_target_writes_from_a_worker_process(tmp_path: Path) -> None:
    """A CacheTarget travels to another process and stores the value there."""
    cache = Cache(tmp_path)
    target = pickle.loads(pickle.dumps(cache.target(KEY, "s")))
    child = multiprocessing.get_context("spawn").Process(target=_write_in_child, args=(target,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(cache.load(cache.lookup(KEY)), np.arange(5))


def test_clean_older_than_and_max_size(tmp_path: Path) -> None:
    """clean drops entries unused for a while, then the least recently used beyond a size."""
    cache = Cache(tmp_path)
    entries: list[Entry] = []
    for i in range(4):
        entries.append(cache.write(f"{i:032x}", np.zeros(1 << 16)))  # 512 KiB each
        meta = Path(entries[-1].path).parent / "meta.json"
        os.utime(meta, (time.time() - (4 - i) * 1000, time.time() - (4 - i) * 1000))
    os.utime(Path(entries[0].path).parent / "meta.json", (1, 1))  # long unused
    report = maintenance.clean(cache, older_than=7 * 86400)
    assert len(report.removed) == 1 and cache.lookup(entries[0].key) is None
    report = maintenance.clean(cache, max_size=2 * entries[1].size + 4096)
    assert len(report.removed) == 1 and cache.lookup(entries[1].key) is None
    assert cache.lookup(entries[2].key) is not None and cache.lookup(entries[3].key) is not None
    assert report.kept == 2


def test_manifest_records_the_last_key(tmp_path: Path) -> None:
    """record/previous keep the last components per pipeline and stage."""
    cache = Cache(tmp_path)
    assert cache.previous("p", "s") is None
    cache.record("p", "s", KeyRecord("k1", {"params": {"n": "1"}}))
    cache.record("p", "s", KeyRecord("k2", {"params": {"n": "2"}}))
    assert cache.previous("p", "s") == KeyRecord("k2", {"params": {"n": "2"}})
    assert cache.previous("other", "s") is None


def test_cached_array_loads_in_milliseconds(tmp_path: Path) -> None:
    """Looking up and loading a cached 256 MiB array costs a mapping, not a read."""
    cache = Cache(tmp_path)
    cache.write(KEY, np.ones(32 << 20))
    start = time.perf_counter()
    value = cache.load(cache.lookup(KEY))
    elapsed = time.perf_counter() - start
    print(f"lookup+load of 256 MiB: {elapsed * 1000:.2f} ms")
    assert value.nbytes == 256 << 20 and elapsed < 0.05
