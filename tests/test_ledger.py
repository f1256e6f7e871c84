"""The outputs ledger with an in-memory executor double: who holds each result, freeing
each reference exactly once, and reading targets back."""

from __future__ import annotations

from typing import Any

import pytest

from dagrun.control.ledger import Ledger
from dagrun.executors.base import Batched, RemoteRef
from dagrun.store import Decoded


class Held:
    """An executor double: values in a dict, every release and close counted."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values = values or {}
        self.released: list[str] = []
        self.closed: list[str] = []

    def release(self, ref: RemoteRef) -> None:
        self.released.append(ref.key)

    def read(self, ref: RemoteRef, stage: str) -> Decoded:
        if isinstance(self.values[ref.key], Exception):
            raise self.values[ref.key]
        return Decoded(self.values[ref.key], lambda: self.closed.append(ref.key))


def _ref(key: str, nbytes: int = 10) -> RemoteRef:
    return RemoteRef(key, nbytes=nbytes)


def test_a_stage_result_is_held_until_released_once():
    """A recorded result is the stage's output, counted live, and freed once by release."""
    exe = Held()
    ledger = Ledger(exe)
    ledger.record("a", None, _ref("a/1", 10))
    assert "a" in ledger and ledger["a"] == _ref("a/1", 10) and ledger.live_bytes == 10
    ledger.release("a")
    ledger.release("a")
    assert "a" not in ledger and exe.released == ["a/1"] and ledger.live_bytes == 0


def test_batches_become_one_output_in_batch_order():
    """Batches recorded out of order make one Batched output in batch order when complete."""
    ledger = Ledger(Held())
    ledger.expect_batches("m", 2)
    ledger.record("m", 1, _ref("m1", 3))
    assert "m" not in ledger
    ledger.record("m", 0, _ref("m0", 4))
    ledger.complete("m", concat=True)
    assert ledger["m"] == Batched((_ref("m0", 4), _ref("m1", 3)), True)
    assert ledger.live_bytes == 7 and "m" not in ledger.batches


def test_releasing_a_running_map_frees_the_batches_made_so_far():
    """A mapped stage dropped midway frees exactly the batches that came back."""
    exe = Held()
    ledger = Ledger(exe)
    ledger.expect_batches("m", 3)
    ledger.record("m", 2, _ref("m2"))
    ledger.release("m")
    assert exe.released == ["m2"] and ledger.batches == {} and ledger.live_bytes == 0


def test_an_adopted_output_is_held_and_freed_like_a_computed_one():
    """An output from the cache counts as live and is released through the executor."""
    exe = Held()
    ledger = Ledger(exe)
    ledger.adopt("c", _ref("cached", 5))
    assert ledger["c"] == _ref("cached", 5) and ledger.live_bytes == 5
    ledger.release("c")
    assert exe.released == ["cached"]


def test_release_all_keeps_the_targets_and_frees_everything_else_once():
    """At the run's end every output and stray batch is freed once, the kept ones not at all."""
    exe = Held()
    ledger = Ledger(exe)
    ledger.record("a", None, _ref("a"))
    ledger.record("t", None, _ref("t"))
    ledger.expect_batches("m", 2)
    ledger.record("m", 0, _ref("m0"))
    ledger.release_all(keep=["t"])
    ledger.release_all(keep=["t"])
    assert sorted(exe.released) == ["a", "m0"] and "t" in ledger and ledger.live_bytes == 10


def test_reading_a_target_back_gives_its_value_and_what_to_close():
    """A stage's value is read through the executor; what was opened is handed back to close."""
    exe = Held({"a": [1, 2]})
    ledger = Ledger(exe)
    ledger.record("a", None, _ref("a"))
    value, opened = ledger.read("a")
    assert value == [1, 2] and exe.closed == []
    for decoded in opened:
        decoded.close()
    assert exe.closed == ["a"]


def test_reading_a_mapped_target_joins_its_batches():
    """A mapped stage reads back as the flat list of its batches' results, in order."""
    exe = Held({"m0": [1, 2], "m1": [3]})
    ledger = Ledger(exe)
    ledger.expect_batches("m", 2)
    ledger.record("m", 0, _ref("m0"))
    ledger.record("m", 1, _ref("m1"))
    ledger.complete("m", concat=False)
    value, opened = ledger.read("m")
    assert value == [1, 2, 3] and len(opened) == 2


def test_a_read_that_fails_closes_what_it_opened_and_raises():
    """When one batch cannot be read, the batches already opened are closed and the error raised."""
    exe = Held({"m0": [1], "m1": ValueError("cannot unpickle")})
    ledger = Ledger(exe)
    ledger.expect_batches("m", 2)
    ledger.record("m", 0, _ref("m0"))
    ledger.record("m", 1, _ref("m1"))
    ledger.complete("m", concat=False)
    with pytest.raises(ValueError, match="cannot unpickle"):
        ledger.read("m")
    assert exe.closed == ["m0"]
