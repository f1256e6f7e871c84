"""The behaviour suite: the same pipelines through every executor and start method."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dagrun
from tests.conftest import run_resource as run


def events_of(result) -> list[dict]:
    return [json.loads(line) for line in result.events_path.read_text().splitlines()]


def test_hello_produces_the_sink(how, state_dir):
    """The sink is the default target and carries the computed value."""
    with run("hello", how, state_dir, params={"name": "dagrun"}) as result:
        assert result.status == "succeeded"
        assert dict(result) == {"report": "hello, dagrun (13 characters)"}


def test_events_have_the_spec_fields(how, state_dir):
    """Every event has the common fields, and each kind its own."""
    with run("hello", how, state_dir) as result:
        events = events_of(result)
    common = {"event", "timestamp", "level", "run_id"}
    fields = {
        "run_started": {"pipeline", "stages", "workers", "executor"},
        "task_started": {"stage", "attempt", "priority"},
        "task_finished": {
            "stage", "attempt", "worker_pid", "wall_s", "cpu_s", "max_rss_bytes",
            "queue_wait_s", "input_bytes", "output_bytes", "transport", "cached",
        },
        "run_finished": {"status", "wall_s", "succeeded", "failed", "skipped"},
        "run_summary": set(),
        "task_log": {"stage", "attempt", "worker", "stream", "level", "message"},
    }
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds.count("task_finished") == 3
    for event in events:
        assert common | fields[event["event"]] <= set(event), event
        if event["event"] == "task_started":  # a pid locally, an engine's worker elsewhere
            assert "worker_pid" in event or {"worker", "host"} <= set(event), event
        assert event["timestamp"].endswith("Z") and event["run_id"] == result.run_id
    finished = [e for e in events if e["event"] == "task_finished"]
    assert all(e["max_rss_bytes"] > 1_000_000 for e in finished)
    assert [e["input_bytes"] > 0 for e in finished] == [False, True, True]
    assert all(e["transport"] for e in finished)


def test_failure_keeps_user_traceback_and_stops(how, state_dir):
    """A raising stage fails with its traceback into the user's file; downstream is skipped."""
    with run("failing", how, state_dir) as result:
        assert result.status == "failed"
        assert set(result.errors) == {"broken"}
        error = result.errors["broken"]
        assert isinstance(error, dagrun.StageFailed)
        assert "ValueError: bad value 42" in str(error)
        assert isinstance(error.__cause__, ValueError)
        assert result.skipped["after_broken"] == "upstream_failed"
        events = events_of(result)
    failed = [e for e in events if e["event"] == "task_failed"]
    assert len(failed) == 1
    tb = failed[0]["traceback"]
    assert "failing.py" in tb and "in helper" in tb and "raise ValueError" in tb
    assert "dagrun/executors" not in tb


def test_keep_going_runs_everything_not_downstream(how, state_dir):
    """With keep_going the unrelated branch completes."""
    with run("failing", how, state_dir, keep_going=True) as result:
        assert result.status == "failed"
        assert result["after_unrelated"] == "FINE"
        assert "after_broken" not in result
        with pytest.raises(dagrun.StageFailed):
            result.raise_for_status()


def test_targets_select_ancestors_only(how, state_dir):
    """--target runs the target and its ancestors; the rest is not_selected."""
    with run("hello", how, state_dir, targets=["length"]) as result:
        assert dict(result) == {"length": 12}
        assert result.skipped == {"report": "not_selected"}


def test_arrays_flow_and_inputs_are_read_only(how, state_dir):
    """Arrays reach consumers intact; writing into an input fails naming the stage."""
    with run("arrays", how, state_dir, params={"size": 64}, keep_going=True) as result:
        matrix = np.arange(64 * 64, dtype=np.float64).reshape(64, 64)
        assert result["checksum"] == float(matrix.sum())
        error = str(result.errors["vandal"])
        assert "read-only" in error and "vandal" in error


def test_map_fans_out_in_batches(how, state_dir):
    """A mapped stage runs ceil(n / batch_size) batches and keeps the order."""
    with run("mapping", how, state_dir, params={"count": 10}, targets=["squared", "total"]) as r:
        assert r["squared"] == [i * i for i in range(10)]
        assert r["total"] == sum(i * i for i in range(10))
        batches = [e for e in events_of(r) if e["event"] == "task_finished" and "batch" in e]
    assert sorted(e["batch"] for e in batches) == [0, 1, 2, 3]
    assert sorted(e["items"] for e in batches) == [1, 3, 3, 3]


def test_map_failure_names_the_element(how, state_dir):
    """A failing element fails its batch with the element's index in the message."""
    with run("mapping", how, state_dir, params={"count": 20}) as result:
        assert "element 13 of 'numbers'" in str(result.errors["squared"])


def test_empty_map(how, state_dir):
    """An empty input maps to an empty result."""
    with run("mapping", how, state_dir, params={"count": 0}, targets=["squared", "total"]) as r:
        assert r["squared"] == [] and r["total"] == 0


def test_reuse_under_two_prefixes(how, state_dir):
    """One module included twice with different bound parameters gives two results."""
    with run("composed", how, state_dir) as result:
        assert result["both"] == (0 + 1 + 2, 10 * sum(range(10)))


def test_retries_until_success(how, state_dir, tmp_path):
    """A flaky stage succeeds on its third attempt, logging two task_retrying events."""
    marker = tmp_path / "attempts.txt"
    with run("retrying", how, state_dir, targets=["flaky"], params={"marker": str(marker)}) as r:
        assert r["flaky"] == 3
        kinds = [e["event"] for e in events_of(r) if e.get("stage") == "flaky"]
    assert kinds.count("task_retrying") == 2 and kinds.count("task_failed") == 2


def test_retry_on_filters_exception_types(how, state_dir):
    """retry_on=KeyError does not retry a ValueError."""
    with run("retrying", how, state_dir, targets=["picky"]) as result:
        assert "picky" in result.errors
        attempts = [e for e in events_of(result) if e["event"] == "task_failed"]
    assert len(attempts) == 1


def test_sys_exit_is_a_stage_failure(how, state_dir):
    """sys.exit inside a stage fails that stage, it does not end the run."""
    with run("sys_exit", how, state_dir) as result:
        assert "sys.exit(3)" in str(result.errors["quits"])


def test_nothing_of_the_run_outlives_close(how, state_dir):
    """Reading an output after close is an error, not a crash."""
    result = run("arrays", how, state_dir, params={"size": 8}, targets=["doubled"])
    assert result["doubled"].shape == (8, 8)
    result.close()
    with pytest.raises(dagrun.DagrunError):
        result["doubled"]



@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["hello", "failing"])
def test_the_collector_is_as_the_run_found_it(pipeline, state_dir):
    """A run freezes what exists and collects less often while it runs; after it ends,
    succeeded or failed, the caller's garbage collector settings are back."""
    import gc

    before = gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()
    with run(pipeline, ("local", "fork"), state_dir, params={"name": "x"} if
             pipeline == "hello" else {}) as result:
        assert result.status in ("succeeded", "failed")
    assert (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()) == before


@dagrun.stage(cache=False)
def collector_settings() -> tuple[int, ...]:
    import gc

    return gc.get_threshold()


@pytest.mark.slow
def test_stages_run_under_the_callers_collector_settings(state_dir):
    """A worker forked while the driver collects less often collects as the caller does."""
    import gc

    with dagrun.run(dagrun.Pipeline([collector_settings]), state_dir=state_dir, workers=1,
                    start_method="fork", log_format="none") as result:
        assert result["collector_settings"] == gc.get_threshold()


@pytest.mark.slow
def test_a_finished_run_is_freed_without_the_cycle_collector(state_dir):
    """Once a run's result is closed, reference counting frees the run: nothing of it (graph,
    plan, handles, summary rows) waits for a full collection, which in a long-lived process
    (a job scheduler, a notebook) may not come for many runs."""
    import gc

    pipeline = dagrun.Pipeline([collector_settings])

    def one_run() -> None:
        with dagrun.run(pipeline, state_dir=state_dir, workers=2, start_method="fork",
                        log_format="none") as result:
            assert result.status == "succeeded"

    one_run()  # the first run imports lazily, and new classes are cyclic by nature
    gc.collect()
    gc.disable()
    try:
        one_run()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        # Other threads (an earlier test's cluster) may leave garbage of their own meanwhile.
        left = sorted({type(o).__qualname__ for o in gc.garbage
                       if type(o).__module__.startswith("dagrun")})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == [], left
