"""A stage that only one running task holds back is queued right behind it, in its
worker: the link starts the moment its input exists, with no driver round trip.
If the input's task fails or its worker dies, the queued link does not run; it
is planned again if the input's task is retried, or skipped if it failed."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_resource

pytestmark = pytest.mark.slow  # every test here starts processes

LOCAL = [
    pytest.param(("local", "fork"), id="fork"),
    pytest.param(("local", "spawn"), id="spawn"),
]


def events(result) -> list[dict]:
    return [json.loads(line) for line in result.events_path.read_text().splitlines()]


def of(result, kind: str, stage: str) -> list[dict]:
    return [e for e in events(result) if e["event"] == kind and e.get("stage") == stage]


@pytest.mark.parametrize("how", LOCAL)
def test_a_chain_runs_back_to_back_in_one_worker(how, state_dir):
    with run_resource("chained", how, state_dir, targets=["third"]) as result:
        assert result.status == "succeeded"
        assert result["third"] == 3
        log = events(result)
    started = {e["stage"]: e for e in log if e["event"] == "task_started"}
    finished = {e["stage"]: e for e in log if e["event"] == "task_finished"}
    assert len({started[s]["worker_pid"] for s in ("first", "second", "third")}) == 1
    assert finished["second"]["queue_wait_s"] < 0.1  # counted from when its input existed
    order = [(e["event"], e.get("stage")) for e in log if e["event"].startswith("task_")]
    for before, after in (("first", "second"), ("second", "third")):
        assert order.index(("task_finished", before)) < order.index(("task_started", after))


def test_a_failed_input_leaves_its_queued_link_unrun(state_dir):
    with run_resource("chained", state_dir=state_dir, targets=["after_broken"]) as result:
        assert result.status == "failed"
        assert result.skipped["after_broken"] == "upstream_failed"
        assert not of(result, "task_started", "after_broken")
        assert "broken on purpose" in str(result.errors["broken"])


@pytest.mark.parametrize(
    ("target", "param", "value"),
    [
        pytest.param("after_flaky", "flaky_marker", 11, id="raised"),
        pytest.param("after_crashy", "crash_marker", 21, id="worker-crashed"),
    ],
)
def test_a_link_behind_a_retried_task_runs_once_after_the_retry(target, param, value,
                                                                state_dir, tmp_path):
    params = {param: str(tmp_path / "marker")}
    with run_resource("chained", state_dir=state_dir, targets=[target],
                      params=params) as result:
        assert result.status == "succeeded", result.errors
        assert result[target] == value
        assert len(of(result, "task_started", target)) == 1
        assert len(of(result, "task_finished", target)) == 1
        assert len(of(result, "task_failed", target.removeprefix("after_"))) == 1


def test_fail_fast_does_not_start_a_queued_link(state_dir):
    # ``broken`` fails while ``first`` runs with ``second`` queued behind it:
    # ``first`` finishes, ``second`` never starts (it is skipped as stopped).
    with run_resource("chained", state_dir=state_dir, targets=["second", "broken"]) as result:
        assert result.status == "failed"
        assert result.skipped["second"] == "stopped"
        assert of(result, "task_finished", "first")
        assert not of(result, "task_started", "second")
        assert not of(result, "task_finished", "second")


def test_keep_going_runs_the_chain_beside_a_failure(state_dir):
    with run_resource("chained", state_dir=state_dir, targets=["third", "broken"],
                      keep_going=True) as result:
        assert result.status == "failed"
        assert result["third"] == 3
        assert "third" not in result.skipped


def test_the_executor_runs_a_chained_task_on_the_result_before_it(tmp_path):
    """``chain`` queues a task behind a running one; the worker feeds it that result."""
    import time

    from dagrun import store
    from dagrun.control.scheduler import TaskKey
    from dagrun.executors.base import Pending, Started, TaskOutcome, TaskSpec
    from dagrun.executors.local import LocalExecutor
    from tests.resources import chained

    config = store.StoreConfig.for_run("chain", tmp_path)
    owner = store.Store(config)
    funcs = {"first": chained.first, "second": chained.second}
    exe = LocalExecutor(funcs, config, workers=1, start_method="fork")
    try:
        first = TaskSpec(TaskKey("first"), 1, {}, {}, time.time())
        assert exe.submit(first) is not None
        second = TaskSpec(TaskKey("second"), 1, {"first": Pending("first")}, {}, time.time(),
                          after=TaskKey("first"))
        assert exe.chain(second)  # queued while ``first`` sleeps
        events = []
        while len([e for e in events if isinstance(e, TaskOutcome)]) < 2:
            events += exe.wait(10.0)
        kinds = [(type(e).__name__, e.key.stage if isinstance(e, TaskOutcome) else
                  e.spec.key.stage) for e in events]
        assert kinds == [("TaskOutcome", "first"), ("Started", "second"),
                         ("TaskOutcome", "second")]
        outcome = events[-1]
        assert outcome.ok, outcome.error
        assert store.decode(outcome.handle, config, "test").value == 2
        assert isinstance(events[1], Started)
    finally:
        exe.shutdown()
        owner.close()
