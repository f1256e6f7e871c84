"""Concurrency read from the events: independent stages overlap, inputs come first,
and a worker that dies fails only its own task."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

import dagrun
from tests.conftest import resource

LOCAL = [pytest.param(m, id=m) for m in ("fork", "forkserver", "spawn")]


def parse(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def spans(result) -> dict[str, tuple[float, float]]:
    events = [json.loads(line) for line in result.events_path.read_text().splitlines()]
    start = {e["stage"]: parse(e["timestamp"]) for e in events if e["event"] == "task_started"}
    end = {e["stage"]: parse(e["timestamp"]) for e in events if e["event"] == "task_finished"}
    return {s: (start[s], end[s]) for s in end}


@pytest.mark.parametrize("method", LOCAL)
def test_independent_stages_overlap(method, state_dir):
    """Two independent 1 s stages run at the same time on two workers."""
    with dagrun.run(resource("timing"), workers=2, start_method=method, state_dir=state_dir,
                    log_format="none") as result:
        assert result.ok
        s = spans(result)
    (l0, l1), (r0, r1) = s["left"], s["right"]
    overlap = min(l1, r1) - max(l0, r0)
    assert overlap > 0.8, s
    # the join starts only after both inputs finished
    assert s["joined"][0] >= max(l1, r1)
    assert result.wall_s < 1.9


def test_inline_runs_one_at_a_time(state_dir):
    """The inline executor never overlaps tasks (it is the debugging executor)."""
    with dagrun.run(resource("timing"), executor="inline", state_dir=state_dir,
                    params={"seconds": 0.2}, log_format="none") as result:
        s = spans(result)
    assert min(s["left"][1], s["right"][1]) <= max(s["left"][0], s["right"][0])


@pytest.mark.parametrize("method", LOCAL)
def test_dead_worker_fails_only_its_task(method, state_dir):
    """os._exit and SIGKILL fail their own stages with how the worker died; others finish."""
    with dagrun.run(resource("crashing"), workers=2, start_method=method, state_dir=state_dir,
                    keep_going=True, log_format="none") as result:
        assert result["survivor"] == "alive"
        exits, killed = str(result.errors["exits"]), str(result.errors["killed"])
    assert isinstance(result.errors["exits"], dagrun.WorkerCrashed)
    assert "exited with code 7" in exits
    # a SIGKILL with no sign of memory pressure is not blamed on the OOM killer
    assert "killed by SIGKILL" in killed and "out-of-memory" not in killed


@pytest.mark.parametrize("method", LOCAL)
def test_timeout_stops_the_worker(method, state_dir):
    """A stage past its timeout fails with StageTimeout; the run goes on."""
    with dagrun.run(resource("slow"), workers=1, start_method=method, state_dir=state_dir,
                    keep_going=True, log_format="none") as result:
        assert result["quick"] == "done"
        assert isinstance(result.errors["sleepy"], dagrun.StageTimeout)
        assert "timed out after 0.5 s" in str(result.errors["sleepy"])
    assert result.wall_s < 10


@pytest.mark.slow
def test_thousand_stage_chain_runs_in_order(state_dir):
    """A 1,000-stage chain finishes with every stage after its input."""
    from tests.resources.noops import chain

    with dagrun.run(chain(1000), workers=2, state_dir=state_dir, log_format="none") as result:
        assert result.ok and result["t999"] == 999


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_no_stage_starts_before_its_inputs_finish(seed, state_dir):
    """On a random 80-stage DAG, every task_started follows its inputs' task_finished."""
    from tests.resources.noops import random_dag

    pipeline = random_dag(80, seed)  # stages share code and parameters, so also cache entries
    with dagrun.run(pipeline, workers=2, state_dir=state_dir, log_format="none",
                    no_cache=True) as result:
        assert result.ok
        events = [json.loads(line) for line in result.events_path.read_text().splitlines()]
    position = {}
    for index, event in enumerate(events):
        position[(event["event"], event.get("stage"))] = index
    for name, record in pipeline.stages.items():
        for upstream in record.inputs.values():
            assert position[("task_finished", upstream)] < position[("task_started", name)]


@pytest.mark.parametrize("method", LOCAL)
def test_tasks_queued_behind_a_crash_run_elsewhere(method, state_dir):
    """Short tasks are queued in workers; those behind a crashing task still run, once."""
    from tests.resources.noops import many_quick

    pipeline = many_quick(300, crash_at=250)
    with dagrun.run(pipeline, workers=2, start_method=method, state_dir=state_dir,
                    keep_going=True, log_format="none") as result:
        assert set(result.errors) == {"q250"}
        assert {name: result[name] for name in result} == {
            f"q{i}": i for i in range(300) if i != 250
        }
        events = [json.loads(line) for line in result.events_path.read_text().splitlines()]
    started = [e["stage"] for e in events if e["event"] == "task_started"]
    assert sorted(started) == sorted(f"q{i}" for i in range(300))  # each started once
