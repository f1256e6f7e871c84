"""Priority by bottom level, and memory-aware admission, seen from a run's events."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.conftest import run_resource


def _events(result) -> list[dict]:
    return [json.loads(line) for line in result.events_path.read_text().splitlines()]


def _spans(events: list[dict]) -> dict[str, tuple[float, float]]:
    spans = {}
    for e in events:
        if e["event"] == "task_finished":
            end = datetime.fromisoformat(e["timestamp"]).timestamp()
            spans[e["stage"]] = (end - e["wall_s"], end)
    return spans


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


@pytest.mark.slow
def test_the_head_of_the_longest_path_starts_first(state_dir):
    """With one worker and two ready stages, the one leading the longer chain goes first."""
    with run_resource("priority", state_dir=state_dir, workers=1) as result:
        assert result.ok
        events = _events(result)
    started = [e for e in events if e["event"] == "task_started"]
    assert started[0]["stage"] == "z_head"
    assert started[0]["priority"] > next(e for e in started if e["stage"] == "a_short")["priority"]


@pytest.mark.slow
def test_history_gives_the_next_run_its_estimates(state_dir):
    """A second run's task_started carries the stage's time measured by the first."""
    run_resource("priority", state_dir=state_dir, workers=1, no_cache=True).close()
    with run_resource("priority", state_dir=state_dir, workers=1, no_cache=True) as result:
        started = [e for e in _events(result) if e["event"] == "task_started"]
    assert all(e["estimate_s"] is not None for e in started)
    assert next(e for e in started if e["stage"] == "a_short")["estimate_s"] >= 0.04


@pytest.mark.slow
def test_admission_keeps_big_stages_apart_and_lets_small_ones_share(state_dir):
    """Under a 1 GiB budget two 600 MiB stages never overlap; small ones run beside them."""
    with run_resource("admission", state_dir=state_dir, workers=2, memory="1G") as result:
        assert result.ok
        spans = _spans(_events(result))
    assert _overlap(spans["big_one"], spans["big_two"]) <= 0.01
    for small in ("small_one", "small_two"):
        assert max(_overlap(spans[small], s) for n, s in spans.items() if n != small) > 0.2


def test_ready_queue_takes_the_lowest_rank_first_then_arrival_order():
    """The planner's queue: rank first, arrival order within a rank, and a spec put back
    after admission passed it over returns to the head of its line."""
    from dagrun.control.ready import ReadyQueue
    from dagrun.control.scheduler import TaskKey
    from dagrun.executors.base import TaskSpec

    def spec(name: str) -> TaskSpec:
        return TaskSpec(TaskKey(name), 1, {}, {}, 0.0)

    queue = ReadyQueue()
    for rank, name in [(-1.0, "a"), (-2.0, "b"), (-1.0, "c"), (float("-inf"), "held"),
                       (-2.0, "d"), (0.0, "e")]:
        queue.push(rank, spec(name))
    assert len(queue) == 6
    first = [queue.pop(), queue.pop()]
    assert [s.key.stage for _, s in first] == ["held", "b"]
    for rank, s in reversed(first):
        queue.put_back(rank, s)
    assert sorted(s.key.stage for s in queue) == ["a", "b", "c", "d", "e", "held"]
    order = []
    while queue:
        order.append(queue.pop()[1].key.stage)
    assert order == ["held", "b", "d", "a", "c", "e"]
