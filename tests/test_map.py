"""Fan-out (``@stage(map=...)``): order, batching, empty inputs, failures, zero-copy
elements and concatenation, over numpy arrays (axis 0) and Arrow tables (row chunks)."""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import dagrun
from dagrun.control.policies import auto_batch_size
from dagrun.executors.worker import concatenate
from dagrun.pipeline.stage import as_stage
from dagrun.values import stack_batch
from tests.conftest import run_resource as run

FAST = [
    pytest.param(("inline", None), id="inline"),
    pytest.param(("local", "fork"), id="fork"),
]
COLS = 1000




def batch_events(result, stage: str, kind: str = "task_finished") -> list[dict]:
    events = [json.loads(line) for line in result.events_path.read_text().splitlines()]
    return [e for e in events if e["event"] == kind and e.get("stage") == stage]


def row_sum(row: int) -> float:
    return float(sum(range(row * COLS, (row + 1) * COLS)))


# -- order and batching ----------------------------------------------------------------
@pytest.mark.parametrize("how", FAST)
def test_results_keep_the_input_order(how, state_dir):
    """Results come back in element order even when early batches finish last."""
    params = {"rows": 10, "slow_first": True}
    with run("map_arrays", how, state_dir=state_dir, params=params,
             targets=["row_sums"]) as result:
        assert result["row_sums"] == [row_sum(r) for r in range(10)]


@pytest.mark.slow
@pytest.mark.parametrize(("rows", "batch_size"), [(10, 3), (10, 10), (10, 1), (7, 100)])
def test_batches_are_ceil_n_over_batch_size(rows, batch_size, state_dir):
    """A mapped stage runs ceil(n / batch_size) batches, each logging its index and items."""
    module = importlib.import_module("tests.resources.map_arrays")
    sums = as_stage(module.row_sums)
    sized = replace(sums, options=replace(sums.options, batch_size=batch_size))
    with dagrun.run(
        dagrun.Pipeline([module.grid, sized]), params={"rows": rows}, state_dir=state_dir,
        log_format="none", workers=2, start_method="fork",
    ) as result:
        assert result["row_sums"] == [row_sum(r) for r in range(rows)]
        finished = batch_events(result, "row_sums")
        started = batch_events(result, "row_sums", "task_started")
    count = math.ceil(rows / batch_size)
    assert sorted(e["batch"] for e in finished) == list(range(count))
    assert sorted(e["batch"] for e in started) == list(range(count))
    items = {e["batch"]: e["items"] for e in finished}
    assert items == {b: min(batch_size, rows - b * batch_size) for b in range(count)}


@pytest.mark.slow
def test_automatic_batch_size_gives_about_four_batches_per_worker(state_dir):
    """Without batch_size a stage over n elements runs ceil(n / ceil(n / (4 * workers)))
    batches."""
    assert auto_batch_size(100, 2, 4) == 13 and auto_batch_size(3, 8, 4) == 1
    with run("map_arrays", state_dir=state_dir, params={"rows": 100},
             targets=["row_max"]) as result:
        assert result["row_max"].shape == (100,)
        finished = batch_events(result, "row_max")
    assert len(finished) == math.ceil(100 / 13)


# -- empty input and failures --------------------------------------------------------------
@pytest.mark.parametrize("how", FAST)
def test_an_empty_input_maps_to_an_empty_result(how, state_dir):
    """Zero rows give [] (also with concat) and run no batch at all."""
    targets = ["row_sums", "doubled"]
    with run("map_arrays", how, state_dir=state_dir, params={"rows": 0},
             targets=targets) as result:
        assert result["row_sums"] == [] and result["doubled"] == []
        assert batch_events(result, "row_sums", "task_started") == []
    with run("map_tables", how, state_dir=state_dir, params={"rows": 0},
             targets=["chunks", "selected"]) as result:
        assert result["chunks"] == [] and result["selected"] == []


@pytest.mark.parametrize("how", FAST)
def test_a_failing_element_names_its_index(how, state_dir):
    """The failing element's index is in the error, and only its batch fails."""
    with run("map_arrays", how, state_dir=state_dir, params={"rows": 10, "bad_row": 7},
             targets=["fragile"]) as result:
        assert result.status == "failed"
        message = str(result.errors["fragile"])
        failed = batch_events(result, "fragile", "task_failed")
    assert "row 7 is bad" in message and "element 7 of 'grid'" in message
    assert [e["batch"] for e in failed] == [3]  # batch_size 2: elements 6 and 7


@pytest.mark.slow
def test_a_failing_chunk_names_its_rows(state_dir):
    """Over a table, the error names the failing chunk's row range."""
    with run("map_tables", state_dir=state_dir, params={"bad_id": 6500},
             targets=["fragile"]) as result:
        assert "rows 6000..8999 of 'events'" in str(result.errors["fragile"])


@pytest.mark.slow
def test_retries_rerun_the_failed_batch(state_dir, tmp_path):
    """A retried batch runs again whole; the result is complete and in order."""
    marker = tmp_path / "failed-once"
    with run("map_arrays", state_dir=state_dir, params={"rows": 10, "marker": str(marker)},
             targets=["flaky"]) as result:
        assert result["flaky"] == [float(r * COLS) for r in range(10)]
        retried = batch_events(result, "flaky", "task_retrying")
    assert marker.exists() and [e["batch"] for e in retried] == [1]  # batch_size 3: 3..5


@dagrun.stage
def many(count: int = 10) -> list[int]:
    return list(range(count))


@dagrun.stage(map="many", batch_size=1000)
def doubled(many: int) -> int:
    return 2 * many


@pytest.mark.slow
def test_each_batch_of_a_large_list_carries_only_its_own_elements(state_dir):
    """A list too large to travel inside its handle (in shared memory) is read once by the
    driver: each batch's task gets, and reports as its input, only its own elements."""
    count = 100_000  # about 370 KB pickled, above the 64 KiB that travel inline
    with dagrun.run(dagrun.Pipeline([many, doubled]), params={"count": count},
                    state_dir=state_dir, log_format="none", workers=2,
                    start_method="fork") as result:
        assert result["doubled"] == [2 * i for i in range(count)]
    batches = batch_events(result, "doubled")
    assert len(batches) == count // 1000
    assert max(e["input_bytes"] for e in batches) < 16 << 10  # a slice, not the whole list


# -- zero copy ----------------------------------------------------------------------------------
@pytest.mark.parametrize("how", [*FAST, pytest.param(("local", "spawn"), id="spawn")])
def test_array_elements_are_views_of_the_shared_input(how, state_dir):
    """Each element is a read-only view into the one mapping of the whole input, at its
    row's offset: nothing was copied, not even the batch."""
    with run("map_arrays", how, state_dir=state_dir, params={"rows": 10},
             targets=["views"]) as result:
        seen = result["views"]
    assert [v["row"] for v in seen] == list(range(10))
    whole = 10 * COLS * 8
    for v in seen:
        assert v["shares_memory"] and v["mapped"], v
        assert v["root_bytes"] >= whole
        assert not v["writeable"] and not v["owndata"]
    offsets = [v["offset"] for v in seen]
    assert [b - a for a, b in zip(offsets, offsets[1:], strict=False)] == [COLS * 8] * 9


@pytest.mark.slow
def test_table_chunks_are_slices_of_the_mapped_table(state_dir):
    """Over an Arrow table each call gets a Table slice of its rows; its buffers are the
    whole column's (an offset into them), and slicing allocates nothing."""
    with run("map_tables", state_dir=state_dir, params={"rows": 10_000},
             targets=["chunks"]) as result:
        seen = result["chunks"]
    assert [c["rows"] for c in seen] == [3000, 3000, 3000, 1000]
    assert [c["first"] for c in seen] == [0, 3000, 6000, 9000]
    assert [c["offset"] for c in seen] == [0, 3000, 6000, 9000]
    assert all(c["type"] == "Table" for c in seen)
    assert all(c["buffer_bytes"] >= 10_000 * 8 for c in seen)
    assert all(c["allocated_by_slice"] == 0 for c in seen)


@pytest.mark.slow
def test_large_element_results_travel_through_shared_memory(state_dir):
    """Each element's own large result goes through the zero-copy transport."""
    with run("map_arrays", state_dir=state_dir, params={"rows": 6},
             targets=["widened"]) as result:
        widened = result["widened"]
        assert [w.shape for w in widened] == [(COLS * 10,)] * 6
        assert widened[5][0] == 5 * COLS
        finished = batch_events(result, "widened")
    assert all("shm" in e["transport"] for e in finished)


# -- concatenation -------------------------------------------------------------------------------
@pytest.mark.parametrize("how", FAST)
def test_concatenated_arrays(how, state_dir):
    """concat=True joins per-element arrays along axis 0 and scalars into a 1-d array."""
    with run("map_arrays", how, state_dir=state_dir, params={"rows": 10},
             targets=["doubled", "row_max"]) as result:
        expected = np.arange(10 * COLS, dtype=np.float64).reshape(10, COLS) * 2
        np.testing.assert_array_equal(result["doubled"], expected)
        np.testing.assert_array_equal(result["row_max"], expected[:, -1] / 2)


@pytest.mark.parametrize("how", FAST)
def test_concatenated_tables(how, state_dir):
    """concat=True joins per-chunk Arrow tables (and record batches) into one table, in
    row order, equal to the whole-table computation."""
    with run("map_tables", how, state_dir=state_dir, params={"rows": 10_000},
             targets=["selected", "as_batches"]) as result:
        selected, batches = result["selected"], result["as_batches"]
        assert isinstance(selected, pa.Table) and isinstance(batches, pa.Table)
        assert selected["id"].to_pylist() == list(range(5001, 10_000))
        assert pc.all(pc.equal(selected["double"], pc.multiply(selected["id"], 2))).as_py()
        assert batches.num_rows == 10_000 and batches["id"].to_pylist() == list(range(10_000))


@pytest.mark.slow
def test_pandas_frames_map_over_row_chunks(state_dir):
    """A pandas frame is mapped over row slices that keep their index, then concatenated."""
    with run("map_tables", state_dir=state_dir, params={"rows": 10_000},
             targets=["frame_rows"]) as result:
        frame = result["frame_rows"]
        assert isinstance(frame, pd.DataFrame)
        assert frame["id"].tolist() == list(range(0, 10_000, 2))
        assert frame.index.tolist() == list(range(0, 10_000, 2))


def test_concatenate_rules():
    """Chunks join by rows: arrays, 0-d arrays, tables with a null column, lists, Arrow arrays."""
    assert concatenate([]) == []
    np.testing.assert_array_equal(concatenate([np.float64(1), np.float64(2)]), [1.0, 2.0])
    assert concatenate([np.ones((2, 3)), np.zeros((1, 3))]).shape == (3, 3)
    tables = [pa.table({"a": [1], "b": [None]}), pa.table({"a": [2], "b": ["x"]})]
    joined = concatenate(tables)
    assert joined.to_pylist() == [{"a": 1, "b": None}, {"a": 2, "b": "x"}]
    assert concatenate([[1, 2], [3]]) == [1, 2, 3]
    assert concatenate([pa.array([1]), pa.array([2, 3])]).to_pylist() == [1, 2, 3]


def test_stack_rules():
    """Per-element results stack: 8x8 arrays give nx8x8, scalars (n,), anything else a list."""
    assert stack_batch([np.ones((8, 8))] * 4).shape == (4, 8, 8)
    assert stack_batch([np.float64(1), 2, 3.5]).shape == (3,)
    assert stack_batch([np.array(1.0), np.array(2.0)]).shape == (2,)
    assert stack_batch(["a", "b"]) == ["a", "b"]
    assert isinstance(stack_batch([{"x": 1}, np.ones(2)]), list)
    assert stack_batch([]) == []
    with pytest.raises(ValueError, match="different shapes"):
        stack_batch([np.ones(2), np.ones(3)])


def test_every_kind_joins_like_a_vectorised_function():
    """Each value kind, split as a map splits it and joined by concat, gives back the whole."""
    import polars as pl

    from dagrun.values import kind, row_chunk

    whole_frame = pd.DataFrame({"a": range(10)})
    tables = {
        "table": pa.table({"a": list(range(10))}),
        "batch": pa.record_batch({"a": list(range(10))}),
        "pandas": whole_frame,
        "polars": pl.DataFrame({"a": list(range(10))}),
    }
    for name, value in tables.items():
        assert kind(value) == name
        chunks = [row_chunk(value, start, min(10, start + 3)) for start in range(0, 10, 3)]
        joined = concatenate(chunks)
        assert len(joined) == 10, name
    grid = np.arange(40.0).reshape(10, 4)
    assert kind(grid) == "array" and kind([1]) == "list" and kind({}) == "other"
    batches = [stack_batch([row * 2 for row in grid[s:s + 3]]) for s in range(0, 10, 3)]
    np.testing.assert_array_equal(concatenate(batches), grid * 2)
    items = [stack_batch([str(x) for x in range(s, min(10, s + 3))]) for s in range(0, 10, 3)]
    assert concatenate(items) == [str(x) for x in range(10)]


@pytest.mark.slow
def test_map_over_joined_results_splits_by_rows(state_dir):
    """Mapping over a concat=True map stage sees its rows, not its per-element results."""
    with run("map_chain", state_dir=state_dir, targets=["pairs", "row_sums"]) as result:
        assert result["pairs"].shape == (5, 2)
        assert result["row_sums"] == [11 * s for s in range(5)]
        events = [json.loads(line) for line in result.events_path.read_text().splitlines()]
    batches = [e for e in events if e.get("stage") == "row_sums" and e["event"] == "task_finished"]
    assert len(batches) == math.ceil(5 / 3)
