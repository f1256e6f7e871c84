"""summarize() and task_spans() over synthetic event lists: no process, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dagrun.events.summary import critical_path, format_summary, summarize, task_spans

BASE = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ev(kind: str, at: float, level: str = "info", **fields: Any) -> dict[str, Any]:
    """One event ``at`` seconds after BASE."""
    stamp = (BASE + timedelta(seconds=at)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"event": kind, "timestamp": stamp, "level": level, "run_id": "r1", **fields}


def task(stage: str, start: float, wall: float, pid: int = 1, **extra: Any) -> list[dict]:
    """A task_started / task_finished pair."""
    fields = {"stage": stage, "attempt": extra.pop("attempt", 1), **extra}
    return [
        ev("task_started", start, worker_pid=pid, **fields),
        ev("task_finished", start + wall, worker_pid=pid, wall_s=wall, cpu_s=wall * 0.5,
           max_rss_bytes=1000, input_bytes=10, output_bytes=20, transport="pickle",
           cached=False, **fields),
    ]


DIAMOND = [["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"]]


def diamond_run() -> list[dict]:
    """a (1 s) fans out to b (2 s) and c (5 s), which join in d (1 s); run wall 7 s."""
    return [
        ev("run_started", 0, stages=4, workers=2, edges=DIAMOND),
        *task("a", 0, 1),
        *task("b", 1, 2, pid=1),
        *task("c", 1, 5, pid=2),
        *task("d", 6, 1),
        ev("run_finished", 7, status="succeeded", wall_s=7.0, succeeded=4, failed=0, skipped=0),
    ]


def test_critical_path_of_a_diamond_follows_the_slow_branch():
    """The heaviest chain of a diamond goes through its slower middle stage."""
    summary = summarize(diamond_run(), workers=2)
    assert summary["critical_path"] == ["a", "c", "d"]
    assert summary["critical_path_s"] == pytest.approx(7.0)


def test_parallelism_is_cpu_over_wall_times_workers():
    """Parallelism is CPU seconds over (wall × workers): 4.5 s of CPU in 7 s on 2 workers."""
    summary = summarize(diamond_run(), workers=2)
    assert summary["cpu_s"] == pytest.approx(4.5)
    assert summary["wall_s"] == pytest.approx(7.0)
    assert summary["parallelism"] == pytest.approx(4.5 / 14, abs=1e-4)
    assert summary["task_wall_s"] == pytest.approx(9.0)


def test_slowest_stages_come_first():
    """``slowest`` names the three longest stages, longest first."""
    names = [s["stage"] for s in summarize(diamond_run(), workers=2)["slowest"]]
    assert names == ["c", "b", "a"]


def test_stage_rows_cover_map_retry_failure_skip_and_cache():
    """Each stage's row has its status, attempts, batches and summed metrics."""
    events = [
        ev("run_started", 0, stages=5, workers=2,
           edges=[["src", "m"], ["src", "flaky"], ["m", "bad"], ["bad", "after"]]),
        *task("src", 0, 1),
        *task("m", 1, 1, batch=0, items=4),
        *task("m", 1.5, 1, pid=2, batch=1, items=4),
        ev("task_started", 1, stage="flaky", attempt=1, worker_pid=2),
        ev("task_failed", 1.2, level="warning", stage="flaky", attempt=1, error_type="OSError",
           error="try again", traceback="..."),
        ev("task_retrying", 1.2, stage="flaky", attempt=2, delay_s=0.1),
        *task("flaky", 1.4, 0.5, pid=2, attempt=2),
        ev("task_started", 3, stage="bad", attempt=1, worker_pid=1),
        ev("task_failed", 3.5, level="error", stage="bad", attempt=1, error_type="ValueError",
           error="no", traceback="..."),
        ev("task_skipped", 3.5, stage="after", reason="upstream_failed"),
        ev("task_skipped", 0, stage="old", reason="cached"),
        ev("task_skipped", 0, stage="other", reason="not_selected"),
    ]
    rows = {r["stage"]: r for r in summarize(events, workers=2)["stages"]}
    assert set(rows) == {"src", "m", "flaky", "bad", "after", "old"}
    assert rows["m"]["batches"] == 2 and rows["m"]["status"] == "succeeded"
    assert rows["m"]["wall_s"] == pytest.approx(1.5)  # first batch start to last batch end
    assert rows["m"]["output_bytes"] == 40 and rows["m"]["cpu_s"] == pytest.approx(1.0)
    assert rows["flaky"]["attempts"] == 2 and rows["flaky"]["status"] == "succeeded"
    assert rows["flaky"]["wall_s"] == pytest.approx(0.9)  # failed attempt and delay included
    assert rows["bad"]["status"] == "failed" and rows["bad"]["wall_s"] == pytest.approx(0.5)
    assert rows["after"]["status"] == "skipped" and rows["after"]["reason"] == "upstream_failed"
    assert rows["old"]["status"] == "cached" and rows["old"]["cached"] is True
    assert rows["src"]["transport"] == "pickle" and rows["src"]["batches"] is None
    for name, row in rows.items():  # the rows' times are those of the task spans
        own = [s for s in task_spans(events) if s.stage == name]
        total = sum(s.end - s.start for s in own)
        span = max(s.end for s in own) - min(s.start for s in own) if own else 0.0
        assert (row["task_wall_s"], row["wall_s"]) == (pytest.approx(total), pytest.approx(span))


def test_task_spans_start_failed_attempts_at_task_started():
    """A failed attempt runs from its task_started; a retried one is marked so."""
    events = [
        ev("task_started", 1, stage="x", attempt=1, worker_pid=7),
        ev("task_failed", 3, level="warning", stage="x", attempt=1, error_type="E", error="e"),
        ev("task_started", 4, stage="x", attempt=2, worker_pid=8),
        ev("task_failed", 4.5, level="error", stage="x", attempt=2, error_type="E", error="e"),
    ]
    spans = task_spans(events)
    assert [(s.status, s.worker, s.end - s.start) for s in spans] == [
        ("retried", "pid 7", pytest.approx(2.0)), ("failed", "pid 8", pytest.approx(0.5))]


def test_remote_workers_are_named_by_worker_and_host():
    """On a remote engine a task's worker is its engine worker on its host."""
    events = [ev("task_finished", 2, stage="s", attempt=1, worker="tcp://10.0.0.2:4000",
                 host="node2", wall_s=1.0, cpu_s=1.0)]
    assert task_spans(events)[0].worker == "tcp://10.0.0.2:4000 on node2"


def test_wall_without_run_finished_spans_the_events():
    """Before run_finished (when the runner asks), the wall is run_started to the last event."""
    events = diamond_run()[:-1]
    assert summarize(events, workers=2)["wall_s"] == pytest.approx(7.0)


def test_critical_path_ignores_stages_that_did_not_run():
    """Leading stages with no time (cached, skipped) are not part of the path."""
    path, length = critical_path([("a", "b"), ("b", "c")], {"a": 0.0, "b": 2.0, "c": 1.0})
    assert path == ["b", "c"] and length == pytest.approx(3.0)


def test_empty_event_list_gives_an_empty_summary():
    """No events: zeros and empty lists, no exception."""
    summary = summarize([], workers=4)
    assert summary["critical_path"] == [] and summary["stages"] == []
    assert summary["parallelism"] == 0.0


def test_format_summary_is_a_short_plain_table():
    """The console table names the critical path and each stage on one line."""
    text = format_summary(summarize(diamond_run(), workers=2))
    assert "critical path (7.00 s): a → c → d" in text
    assert len(text.splitlines()) == 2 + 1 + 4
    assert all(ord(ch) >= 32 for ch in text.replace("\n", ""))


@pytest.mark.slow
def test_a_runs_summary_rows_are_those_its_events_give(state_dir, tmp_path):
    """The rows the runner keeps as it writes events equal those computed from the events
    file afterwards: a map, a crashed batch retried, a stage left out of the targets."""
    import json

    import dagrun
    from tests.conftest import resource

    marker = tmp_path / "crashed"
    with dagrun.run(resource("faults_resources"), targets=["predict"], workers=2,
                    params={"crash_marker": str(marker)}, state_dir=state_dir,
                    log_format="none") as result:
        assert result.ok
    lines = (result.run_dir / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    written = next(e for e in events if e["event"] == "run_summary")
    before = [e for e in events if e["event"] not in ("run_summary", "run_finished")]
    recomputed = summarize(before, workers=2)
    assert marker.exists() and any(e["event"] == "task_retrying" for e in events)
    assert written["stages"] == recomputed["stages"]
    assert {r["stage"] for r in written["stages"]} == {"items", "predict"}
    assert written["wall_s"] == pytest.approx(recomputed["wall_s"], abs=1e-3)
