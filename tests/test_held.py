"""A large result whose only consumer can start at once stays in its worker.

The consumer runs in the same process and reads the producer's object
(read-only), so nothing is copied into shared memory; every other case
(several consumers, a requested output, retries, a mapped consumer, a
consumer still waiting on another input, small values, the inline
executor, recycled workers) takes the shared-memory path as before.
"""

from __future__ import annotations

import json

import pytest

import dagrun
from dagrun.errors import UsageError
from tests.conftest import run_resource

SMALL = str(1 << 20)  # below the 8 MiB arrays of tests/resources/held.py
LOCAL = [
    pytest.param(("local", "fork"), id="fork"),
    pytest.param(("local", "forkserver"), id="forkserver"),
    pytest.param(("local", "spawn"), id="spawn"),
]


@pytest.fixture
def hold_small(monkeypatch):
    monkeypatch.setenv("DAGRUN_HOLD_MIN", SMALL)


def finished(result) -> dict[str, dict]:
    events = [json.loads(line) for line in result.events_path.read_text().splitlines()]
    return {e["stage"]: e for e in events if e["event"] == "task_finished"}


def run(targets, how=("local", "fork"), state_dir=None, **kwargs):
    return run_resource("held", how, state_dir, targets=targets, **kwargs)


@pytest.mark.usefixtures("hold_small")
@pytest.mark.parametrize("how", LOCAL)
def test_a_chain_stays_in_one_worker(how, state_dir):
    with run(["summary"], how, state_dir) as result:
        assert result.status == "succeeded"
        n = 1 << 20
        assert result["summary"] == {"sum": n * (n + 1) / 2, "writeable": False}
        done = finished(result)
    assert done["made"]["transport"] == "worker"
    assert done["plus_one"]["transport"] == "worker"
    assert done["made"]["output_bytes"] == 8 << 20
    assert done["plus_one"]["input_bytes"] == 8 << 20
    pids = {done[s]["worker_pid"] for s in ("made", "plus_one", "summary")}
    assert len(pids) == 1


@pytest.mark.slow
@pytest.mark.usefixtures("hold_small")
def test_writing_into_a_held_input_fails_naming_the_stage(state_dir):
    with run(["writes"], state_dir=state_dir) as result:
        assert result.status == "failed"
        message = str(result.errors["writes"])
    assert "read-only" in message
    assert "'writes'" in message


@pytest.mark.slow
@pytest.mark.usefixtures("hold_small")
def test_an_in_place_array_and_a_table_stay_in_their_worker(state_dir):
    with run(["in_place_sum", "table_rows"], state_dir=state_dir) as result:
        assert result["in_place_sum"] == 2.0 * (1 << 20)
        assert result["table_rows"] == 1 << 20
        done = finished(result)
    assert done["in_place"]["transport"] == "worker"
    assert done["table"]["transport"] == "worker"
    assert done["in_place"]["worker_pid"] == done["in_place_sum"]["worker_pid"]


@pytest.mark.slow
@pytest.mark.usefixtures("hold_small")
def test_a_crash_of_the_consumer_is_its_own_failure(state_dir):
    with run(["crashes"], state_dir=state_dir) as result:
        assert result.status == "failed"
        assert isinstance(result.errors["crashes"], dagrun.WorkerCrashed)
        assert finished(result)["made"]["transport"] == "worker"


@pytest.mark.slow
@pytest.mark.usefixtures("hold_small")
@pytest.mark.parametrize(
    ("targets", "stage", "options"),
    [
        pytest.param(["summary", "other"], "made", {}, id="two-consumers"),
        pytest.param(["made", "plus_one"], "made", {}, id="requested-output"),
        pytest.param(["retried"], "made", {}, id="consumer-retries"),
        pytest.param(["row_sums"], "rows", {}, id="mapped-consumer"),
        pytest.param(["pair"], "made", {}, id="consumer-waits-for-another-input"),
        pytest.param(["summary"], "made", {"max_tasks_per_worker": 10}, id="recycled-workers"),
    ],
)
def test_other_cases_use_shared_memory(targets, stage, options, state_dir):
    with run(targets, state_dir=state_dir, **options) as result:
        assert result.status == "succeeded"
        assert finished(result)[stage]["transport"] == "shm"


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["off", str(1 << 30)])
def test_the_threshold_comes_from_the_environment(setting, monkeypatch, state_dir):
    monkeypatch.setenv("DAGRUN_HOLD_MIN", setting)
    with run(["summary"], state_dir=state_dir) as result:
        assert finished(result)["made"]["transport"] == "shm"


@pytest.mark.usefixtures("hold_small")
def test_the_inline_executor_never_holds(state_dir):
    with run(["summary"], ("inline", None), state_dir) as result:
        assert finished(result)["made"]["transport"] == "shm"


def test_a_bad_threshold_is_a_usage_error(monkeypatch, state_dir):
    monkeypatch.setenv("DAGRUN_HOLD_MIN", "lots")
    with pytest.raises(UsageError, match="DAGRUN_HOLD_MIN"):
        run(["summary"], state_dir=state_dir)


@pytest.mark.slow
def test_a_consumer_goes_to_the_idle_worker_that_wrote_its_input(state_dir):
    # ``late`` finishes last, so its worker is the one that went idle last;
    # ``joined`` still goes to the worker that wrote ``made`` (8 MiB, mapped there).
    with run(["joined"], state_dir=state_dir) as result:
        n = 1 << 20
        assert result["joined"] == {"sum": n * (n - 1) / 2 + 1.0, "unlocked": False}
        done = finished(result)
    assert done["made"]["transport"] == "shm"
    assert done["made"]["worker_pid"] != done["late"]["worker_pid"]
    assert done["joined"]["worker_pid"] == done["made"]["worker_pid"]


def test_a_reader_in_the_writing_process_shares_the_writers_mapping(tmp_path):
    import numpy as np

    from dagrun import store

    config = store.StoreConfig.for_run("reuse", tmp_path)
    owner = store.Store(config)
    try:
        data = np.arange(1 << 18, dtype=np.float64)
        handle = store.encode(data, config, "writer")
        first = store.decode(handle, config, "reader")
        second = store.decode(handle, config, "reader")
        assert np.array_equal(first.value, data)
        assert np.shares_memory(first.value, second.value)
        assert not first.value.flags.writeable
        with pytest.raises(ValueError):
            first.value.flags.writeable = True
        first.close()
        second.close()
    finally:
        owner.close()


@pytest.mark.slow
@pytest.mark.usefixtures("hold_small")
def test_an_array_referenced_elsewhere_stays_the_producers_own(state_dir):
    """An array its module still holds is held all the same: its consumer reads a
    read-only view, and the module's own object stays writable."""
    with run(["global_writable"], state_dir=state_dir, workers=1) as result:
        assert result["global_writable"] is True
        assert finished(result)["shared_global"]["transport"] == "worker"
