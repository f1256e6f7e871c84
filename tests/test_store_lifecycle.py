"""Lifetimes of segments: release, recycling, close, crashes, orphans, fallback, privacy."""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import signal
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from dagrun.store import (
    SegmentExistsError,
    SegmentMissingError,
    Store,
    StoreConfig,
    StoreFull,
    active,
    clean_orphans,
    decode,
    empty,
    encode,
    segments,
    zeros,
)

BIG = 1 << 20  # bytes: well above the inline limit


def ours(config: StoreConfig) -> list[str]:
    """Names of this run in its shm directory and spill directory."""
    found = []
    for directory in (config.shm_dir, config.spill_dir):
        try:
            found += [n for n in os.listdir(directory) if n.startswith(config.prefix)]
        except FileNotFoundError:
            pass
    return sorted(found)


def make_config(tmp_path: Path, **options: Any) -> StoreConfig:
    return StoreConfig.for_run(f"t-{uuid.uuid4().hex[:8]}", tmp_path / "state", **options)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[StoreConfig, Store]]:
    """A run's config and Store; closing it must leave nothing behind."""
    config = make_config(tmp_path)
    store = Store(config)
    yield config, store
    store.close()
    assert ours(config) == []


def test_release_without_pool_unlinks_everything(tmp_path: Path) -> None:
    """With recycling off, releasing each value removes its segments; twice is harmless."""
    config = make_config(tmp_path, pool_bytes=0)
    store = Store(config)
    values = [
        np.ones(BIG // 8),
        pa.table({"x": np.arange(BIG // 8)}),
        {"a": np.ones(BIG // 8), "b": [np.zeros(BIG // 8)]},
        list(range(BIG // 8)),
    ]
    handles = [encode(v, config, "s") for v in values]
    assert len(ours(config)) == 5
    for handle in handles:
        decoded = decode(handle, config, "t")
        decoded.close()
        del decoded
        store.release(handle)
        store.release(handle)
    assert ours(config) == []
    store.close()


def test_released_segment_is_recycled_then_closed(run: tuple[StoreConfig, Store]) -> None:
    """A released segment is parked and reused (same inode) by the next similar value."""
    config, store = run
    first = encode(np.ones(BIG // 8), config, "s")
    inode = os.stat(os.path.join(config.shm_dir, first.payload.segment.name)).st_ino
    store.release(first)
    assert [n for n in ours(config) if n.startswith(config.prefix + "f-")]
    second = encode(np.full(BIG // 8, 2.0), config, "s")
    path = os.path.join(config.shm_dir, second.payload.segment.name)
    assert os.stat(path).st_ino == inode
    assert ours(config) == [second.payload.segment.name]
    decoded = decode(second, config, "t")
    assert float(decoded.value.sum()) == 2.0 * (BIG // 8)
    decoded.close()


def test_view_kept_past_close_is_never_recycled(run: tuple[StoreConfig, Store]) -> None:
    """A view user code keeps is not overwritten: its segment is pending, not reused."""
    config, store = run
    handle = encode(np.ones(BIG // 8), config, "s")
    decoded = decode(handle, config, "t")
    kept = decoded.value[10:20]
    decoded.close()
    store.release(handle)
    assert handle.payload.segment.name in ours(config)  # busy: not parked, not truncated
    other = encode(np.full(BIG // 8, 7.0), config, "s")
    assert other.payload.segment.name != handle.payload.segment.name
    assert (kept == 1.0).all()
    del kept
    store.release(other)  # retries pending segments too
    assert handle.payload.segment.name not in ours(config)


def test_decode_after_release_is_a_clear_error(tmp_path: Path) -> None:
    """Reading a released value raises SegmentMissingError naming the stage."""
    config = make_config(tmp_path, pool_bytes=0)
    store = Store(config)
    handle = encode(np.ones(BIG // 8), config, "s")
    store.release(handle)
    with pytest.raises(SegmentMissingError, match="'late'"):
        decode(handle, config, "late")
    store.close()


def test_segments_are_private(run: tuple[StoreConfig, Store]) -> None:
    """Segments are 0600 and names carry 128 random bits."""
    config, _ = run
    handle = encode(np.ones(BIG // 8), config, "s")
    name = handle.payload.segment.name
    assert stat.S_IMODE(os.stat(os.path.join(config.shm_dir, name)).st_mode) == 0o600
    assert len(name.rsplit("-", 1)[1]) == 32


def test_name_collision_is_an_error(
    run: tuple[StoreConfig, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An existing file under a new segment's name is refused, never attached."""
    config, _ = run
    monkeypatch.setattr(segments.secrets, "token_hex", lambda n: "0" * (2 * n))
    path = os.path.join(config.shm_dir, f"{config.prefix}s-{'0' * 32}")
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    with pytest.raises(SegmentExistsError, match="refusing to attach"):
        encode(np.ones(BIG // 8), config, "s")
    assert os.path.getsize(path) == 0  # untouched


def test_empty_outside_a_stage_is_plain_numpy() -> None:
    """Outside ``active``, empty/zeros are ordinary numpy arrays."""
    arr = empty((BIG // 8,))
    assert arr.flags.owndata
    assert not zeros(3).any()


def test_empty_is_handed_over_without_copy(run: tuple[StoreConfig, Store]) -> None:
    """An array from ``empty`` (or a view of it) is returned by name: no new segment."""
    config, store = run
    with active(config, "p"):
        arr = empty((256, 512), dtype="f8", order="F")
        arr[:] = 3.0
    (name,) = ours(config)
    handle = encode({"out": arr[:, ::2], "n": 1}, config, "p")
    assert handle.transport == "shm+pickle"
    assert handle.payload.parts[0].payload.segment.name == name
    assert ours(config) == [name]
    del arr
    decoded = decode(handle, config, "q")
    assert decoded.value["out"].shape == (256, 256)
    assert (decoded.value["out"] == 3.0).all()
    decoded.close()
    del decoded
    store.release(handle)


def test_zeros_are_zero_in_a_recycled_segment(run: tuple[StoreConfig, Store]) -> None:
    """``zeros`` clears a recycled segment, which holds an earlier value."""
    config, store = run
    store.release(encode(np.full(BIG // 8, 9.0), config, "s"))
    with active(config, "p"):
        arr = zeros(BIG // 8)
    assert not arr.any()
    del arr


def test_unreturned_allocation_is_freed_by_its_creator(run: tuple[StoreConfig, Store]) -> None:
    """A scratch ``empty`` array that is never returned disappears when it dies."""
    config, _ = run
    with active(config, "p"):
        scratch = empty(BIG // 8)
    assert ours(config)
    del scratch
    assert ours(config) == []


def _crash_after_writing(config: StoreConfig, how: str) -> None:
    encode(np.ones(BIG // 8), config, "w")
    with active(config, "w"):
        scratch = empty(BIG // 8)  # noqa: F841 - alive when the process dies
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(1)


@pytest.mark.parametrize("how", ["exit", "kill"])
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_close_removes_what_a_crashed_worker_wrote(
    run: tuple[StoreConfig, Store], how: str, method: str
) -> None:
    """Segments of a worker that died without reporting are removed by ``close``."""
    config, store = run
    process = mp.get_context(method).Process(target=_crash_after_writing, args=(config, how))
    process.start()
    process.join(30)
    assert process.exitcode in (1, -signal.SIGKILL)
    assert len(ours(config)) == 2
    store.close()
    assert ours(config) == []


def _driver(state_dir: str, shm_dir: str, conn: Any) -> None:
    config = StoreConfig.for_run("orphan", state_dir, shm_dir=shm_dir)
    encode(np.ones(BIG // 8), config, "s")
    spill = StoreConfig.for_run("orphan", state_dir, shm_dir=os.path.join(state_dir, "none"))
    encode(np.ones(BIG // 8), spill, "s")
    conn.send(config.prefix)
    signal.pause()


@pytest.mark.slow
def test_clean_orphans_removes_a_killed_drivers_segments(
    run: tuple[StoreConfig, Store], tmp_path: Path
) -> None:
    """After a driver is SIGKILLed, clean_orphans removes its segments and spill files only."""
    config, _ = run
    live = encode(np.ones(BIG // 8), config, "s")
    state = str(tmp_path / "other")
    parent, child = mp.get_context("spawn").Pipe()
    process = mp.get_context("spawn").Process(target=_driver, args=(state, config.shm_dir, child))
    process.start()
    assert parent.poll(30)
    prefix = parent.recv()
    assert prefix.startswith(f"dagrun-{process.pid}-")
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    removed = clean_orphans(state, shm_dir=config.shm_dir)
    assert len(removed) == 2 and all(n.startswith(prefix) for n in removed)
    assert os.listdir(os.path.join(state, "spill")) == []
    assert live.payload.segment.name in ours(config)  # a live driver's run is kept


def test_clean_orphans_sees_through_a_reused_pid(tmp_path: Path) -> None:
    """A name with a live pid but another start time belongs to a dead driver."""
    name = f"dagrun-{os.getpid()}-1-stale-s-{uuid.uuid4().hex}"
    path = Path("/dev/shm") / name
    path.write_bytes(b"x")
    assert name in clean_orphans(None)
    assert not path.exists()


def test_fallback_to_spill_files_when_shm_is_missing(tmp_path: Path) -> None:
    """Without a shm dir values go to private mmapped files and say so once."""
    config = make_config(tmp_path, shm_dir=str(tmp_path / "no-shm"))
    store = Store(config)
    handle = encode(np.arange(BIG // 8), config, "s")
    table = encode(pa.table({"x": np.arange(BIG // 8)}), config, "s")
    assert handle.transport == "file" and table.transport == "arrow+file"
    assert stat.S_IMODE(os.stat(config.spill_dir).st_mode) == 0o700
    for name in ours(config):
        assert stat.S_IMODE(os.stat(os.path.join(config.spill_dir, name)).st_mode) == 0o600
    notice = store.fallback_notice(handle)
    assert notice is not None and "no-shm" in notice
    assert store.fallback_notice(table) is None
    decoded = decode(handle, config, "t")
    assert int(decoded.value[-1]) == BIG // 8 - 1
    with pytest.raises(ValueError):
        decoded.value[0] = 1
    decoded.close()
    store.close()
    assert ours(config) == []


def test_fallback_when_shm_is_too_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shm dir with too little free space (like Docker's 64 MB) spills the value."""
    config = make_config(tmp_path)
    real = os.statvfs

    class Tiny:
        f_bavail, f_frsize, f_blocks = 16, 4096, 16384

    monkeypatch.setattr(os, "statvfs", lambda p: Tiny() if p == config.shm_dir else real(p))
    store = Store(config)
    handle = encode(np.ones(BIG // 8), config, "s")
    assert handle.transport == "file"
    assert "too little free space" in (store.fallback_notice(handle) or "")
    store.close()
    assert ours(config) == []


def test_no_room_anywhere_is_store_full_naming_the_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When neither shm nor disk has room the error is StoreFull, not a SIGBUS."""
    config = make_config(tmp_path)

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(StoreFull, match="'heavy'"):
        encode(np.ones(BIG // 8), config, "heavy")
    assert ours(config) == []


def _decode_in_child(handle: Any, config: StoreConfig) -> None:
    decoded = decode(handle, config, "child")
    assert float(decoded.value[0]) == 1.0
    decoded.close()
    del decoded
    os._exit(0)


@pytest.mark.slow
def test_forked_child_does_not_release_the_parents_lock(run: tuple[StoreConfig, Store]) -> None:
    """A child forked while the parent holds a view cannot drop the parent's hold."""
    config, store = run
    handle = encode(np.ones(BIG // 8), config, "s")
    decoded = decode(handle, config, "parent")
    process = mp.get_context("fork").Process(target=_decode_in_child, args=(handle, config))
    process.start()
    process.join(30)
    assert process.exitcode == 0
    store.release(handle)
    assert handle.payload.segment.name in ours(config)  # still held by the parent's view
    assert (decoded.value == 1.0).all()
    decoded.close()
    del decoded
    store.release(handle)
    assert handle.payload.segment.name not in ours(config)
