"""Returning a large array costs one copy into shared memory, and the array is left
as it was: whether anything else references it cannot be known for certain, so its
pages are never freed while copied (``release`` stays available to the store)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.conftest import run_resource

MiB = 1 << 20


@pytest.fixture(autouse=True)
def through_shared_memory(monkeypatch):
    monkeypatch.setenv("DAGRUN_HOLD_MIN", "off")


def finished(result) -> dict[str, dict]:
    events = [json.loads(line) for line in result.events_path.read_text().splitlines()]
    return {e["stage"]: e for e in events if e["event"] == "task_finished"}


@pytest.mark.slow
def test_a_returned_array_is_copied_once(state_dir):
    """A returned 128 MiB array costs itself and one copy in the worker, no more."""
    with run_resource("returned", state_dir=state_dir, workers=1,
                      targets=["fresh_sum"]) as result:
        assert result["fresh_sum"] == 2.5 * 4096
        done = finished(result)
    assert done["fresh"]["transport"] == "shm"
    grew = done["fresh"]["max_rss_bytes"] - done["tiny"]["max_rss_bytes"]
    assert grew < 288 * MiB, grew / MiB  # the array and its copy: 256 MiB


@pytest.mark.slow
def test_an_array_still_referenced_elsewhere_is_left_intact(state_dir):
    with run_resource("returned", state_dir=state_dir, workers=1,
                      targets=["kept_intact"]) as result:
        assert result.status == "succeeded"
        assert result["kept_intact"] is True


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("chunk_pages", [1, 3, 1000])
def test_chunked_release_copies_every_byte(order, chunk_pages, tmp_path, monkeypatch):
    """Chunk edges fall where the source's pages do, whatever its alignment and order."""
    import numpy as np

    from dagrun import settings, store
    from dagrun.store import arrays

    numbers = replace(settings.tuning(), release_min=1, release_chunk=chunk_pages * arrays.PAGE)
    outer = settings.put_in_force(numbers)
    calls = []
    real = arrays.copy_releasing
    monkeypatch.setattr(arrays, "copy_releasing", lambda *a: calls.append(1) or real(*a))
    config = store.StoreConfig.for_run("release", tmp_path)
    owner = store.Store(config)
    try:
        rng = np.random.default_rng(7)
        source = np.asarray(rng.random((1001, 777), dtype=np.float32), order=order)
        expected = source.copy(order=order)
        box = [source]
        del source
        handle = store.encode(box.pop(), config, "produce", release=True)
        decoded = store.decode(handle, config, "consume")
        assert handle.transport == "shm"
        assert calls, "the copy did not take the releasing path"
        assert np.array_equal(decoded.value, expected)
        decoded.close()
    finally:
        owner.close()
        settings.put_in_force(outer)
