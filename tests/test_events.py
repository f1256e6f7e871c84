"""The event log and the console: plain lines off a terminal, JSON lines, quiet, the live view."""

from __future__ import annotations

import io
import json
import re
import textwrap
import time
from pathlib import Path

import pytest

import dagrun
from dagrun.events.log import EventLog
from dagrun.events.summary import seconds as summary_seconds
from tests.helpers import wait_until

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but tab and newline
FINISHED = dict(wall_s=0.01, cpu_s=0.01, max_rss_bytes=2**20, rss_growth_bytes=0,
                queue_wait_s=0.0, input_bytes=8, output_bytes=8, transport="pickle",
                cached=False)


def drive(log: EventLog, batches: int = 2000, total_known: bool = False) -> None:
    """A synthetic run: a source, a map of ``batches`` batches, a consumer, a printed line."""
    extra = {"batches": batches} if total_known else {}
    log.emit("run_started", pipeline="synthetic", stages=3, workers=4, executor="local",
             params={}, edges=[["src", "m"], ["m", "total"]])
    log.emit("task_started", stage="src", attempt=1, worker_pid=11)
    log.emit("task_log", stage="src", attempt=1, worker=11, stream="stdout",
             message="reading\rinput \x1b[1mnow\x1b[0m")
    log.emit("task_finished", stage="src", attempt=1, worker_pid=11, **FINISHED)
    for i in range(batches):
        log.emit("task_started", stage="m", attempt=1, worker_pid=12, batch=i, items=5, **extra)
        log.emit("task_finished", stage="m", attempt=1, worker_pid=12, batch=i, items=5,
                 **extra, **FINISHED)
    log.emit("task_started", stage="total", attempt=1, worker_pid=11)
    log.emit("task_failed", level="error", stage="total", attempt=1, error_type="ValueError",
             error="bad total", traceback='File "p.py", line 3\nValueError: bad total')
    log.emit("run_summary", wall_s=1.0, workers=4, cpu_s=1.0, task_wall_s=1.0, parallelism=0.25,
             critical_path=["src", "m", "total"], critical_path_s=1.0, slowest=[], stages=[])
    log.emit("run_finished", level="error", status="failed", wall_s=1.0, succeeded=2,
             failed=1, skipped=0)
    log.close()


def test_plain_console_summarises_a_2000_batch_map(tmp_path: Path):
    """Off a terminal a 2,000-batch map takes a few lines, with no control characters."""
    out = io.StringIO()
    drive(EventLog("r1", tmp_path / "events.jsonl", console=out))
    text = out.getvalue()
    assert not CONTROL.search(text), repr(text)
    lines = text.splitlines()
    assert len(lines) < 25, text
    assert sum("m:" in line for line in lines) <= 5
    assert any("m: 2000 batches finished" in line for line in lines)
    assert "  [src] input now" in lines
    assert any("total failed (attempt 1): ValueError: bad total" in line for line in lines)
    assert "    ValueError: bad total" in lines  # the traceback, indented under the stage
    assert "critical path (1.00 s): src → m → total" in text
    assert lines[-1].endswith("run failed in 1.00 s: 2 succeeded, 1 failed, 0 skipped, 0 cached")


def test_plain_console_reports_each_tenth_when_the_batch_count_is_known(tmp_path: Path):
    """With ``batches`` on the events, a line per 10 % and one at the end."""
    out = io.StringIO()
    drive(EventLog("r1", tmp_path / "events.jsonl", console=out), total_known=True)
    progress = [line for line in out.getvalue().splitlines() if " m: " in line]
    assert len(progress) == 10, progress  # 10 % … 90 %, then the closing line
    assert "m: 200/2000 (10%) batches done" in progress[0]
    assert "2000 batches finished" in progress[-1]


def test_quiet_console_shows_errors_and_the_final_line(tmp_path: Path):
    """quiet=True keeps the failure and the run's last line, nothing else."""
    out = io.StringIO()
    drive(EventLog("r1", tmp_path / "events.jsonl", console=out, quiet=True), batches=20)
    lines = out.getvalue().splitlines()
    assert "failed (attempt 1): ValueError: bad total" in lines[0]
    assert lines[-1].endswith("run failed in 1.00 s: 2 succeeded, 1 failed, 0 skipped, 0 cached")
    assert not any("started" in line or "batches" in line for line in lines)


def test_json_console_carries_json_lines_only(tmp_path: Path):
    """In JSON mode every console line is one JSON object, the same as the file's."""
    out = io.StringIO()
    log = EventLog("r1", tmp_path / "events.jsonl", log_format="json", console=out)
    drive(log, batches=50)
    lines = out.getvalue().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(p, dict) for p in parsed)
    assert lines == (tmp_path / "events.jsonl").read_text().splitlines()
    assert [p["event"] for p in parsed][:2] == ["run_started", "task_started"]


def test_every_event_has_the_common_fields_first(tmp_path: Path):
    """Each written event leads with event, timestamp (UTC), level and run_id."""
    log = EventLog("r1", tmp_path / "events.jsonl", log_format="none")
    drive(log, batches=3)
    log.close()
    records = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len([r for r in records if r["event"] != "task_log"]) == 3 + 3 * 2 + 4
    first = records[0]
    assert list(first)[:4] == ["event", "timestamp", "level", "run_id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["timestamp"])
    assert records[-1]["level"] == "error"
    assert log.last_time == pytest.approx(summary_seconds(records[-1]["timestamp"]), abs=1e-6)


def test_events_that_orjson_refuses_are_still_written(tmp_path: Path):
    """Paths, sets and integers beyond 64 bits fall back to the standard encoder."""
    log = EventLog("r1", tmp_path / "events.jsonl", log_format="none")
    log.emit("custom", path=Path("/x"), huge=2**70)
    log.close()
    line = json.loads((tmp_path / "events.jsonl").read_text())
    assert line["path"] == "/x" and line["huge"] == 2**70


def test_emit_stays_cheap(tmp_path: Path):
    """10,000 events cost well under a second (the measured cost is about 6-9 µs each)."""
    log = EventLog("r1", tmp_path / "events.jsonl", console=io.StringIO())
    started = time.process_time()
    for i in range(10_000):
        log.emit("task_finished", stage="s", attempt=1, worker_pid=1, batch=i, **FINISHED)
    log.close()
    assert time.process_time() - started < 1.0


RUNNING = r"0/2 done · 1 running · 0 failed · 0 skipped · (\d+\.\d) s"


def test_live_view_ticks_while_a_stage_runs(tmp_path: Path):
    """On a terminal the status block redraws by itself, so the clock moves during a stage."""
    out = io.StringIO()
    log = EventLog("r1", tmp_path / "events.jsonl", console=out, live=True)
    log.emit("run_started", pipeline="p", stages=2, workers=1, executor="local", params={},
             edges=[["slow", "m"]])
    log.emit("task_started", stage="slow", attempt=1, worker_pid=1)
    wait_until(lambda: len(set(re.findall(RUNNING, out.getvalue()))) >= 2, 10,
               message="the status block redrawn with a later time")
    log.emit("task_finished", stage="slow", attempt=1, worker_pid=1, **FINISHED)
    for i in range(3):
        log.emit("task_started", stage="m", attempt=1, worker_pid=1, batch=i, batches=3)
    wait_until(lambda: "0/3 batches" in out.getvalue(), 10, message="the batches drawn")
    log.emit("run_finished", status="succeeded", wall_s=1.2, succeeded=2, failed=0, skipped=0)
    log.close()
    text = out.getvalue()
    assert len(set(re.findall(RUNNING, text))) >= 2  # the same state, redrawn with a later time
    assert "▶ slow" in text and "0/3 batches" in text
    assert "run succeeded in 1.20 s" in text
    assert not any("refresh" in type(t).__name__.lower()
                   for t in __import__("threading").enumerate())


PIPELINE = textwrap.dedent('''
    """Three stages and a map, for the console test."""
    from dagrun import stage


    @stage
    def numbers(count: int = 30) -> list:
        print("counting to", count)
        return list(range(count))


    @stage(map="numbers", batch_size=2)
    def doubled(numbers):
        return numbers * 2


    @stage
    def total(doubled: list) -> int:
        return sum(doubled)
''')


@pytest.mark.slow
def test_a_real_run_on_a_plain_console(tmp_path: Path):
    """A real run's console output is plain text ending in the summary and the final line."""
    path = tmp_path / "pipe.py"
    path.write_text(PIPELINE)
    out = io.StringIO()
    with dagrun.run(str(path), state_dir=tmp_path / "state", workers=2, log_format="console",
                    console=out) as result:
        assert result.status == "succeeded", out.getvalue()
        assert result["total"] == sum(range(30)) * 2
    text = out.getvalue()
    assert not CONTROL.search(text), repr(text)
    lines = text.splitlines()
    assert len(lines) < 30, text  # 15 batches, summarised
    assert any("doubled: 15 batches finished" in line for line in lines), text
    assert any(line.startswith("critical path") for line in lines)
    assert "run succeeded" in lines[-1]


def test_structlog_logger_writes_into_the_same_log(tmp_path: Path) -> None:
    """``EventLog.logger`` is a structlog logger whose events land in the run's file."""
    log = EventLog("r1", tmp_path / "events.jsonl", log_format="none")
    log.emit("task_started", stage="a", attempt=1, worker_pid=1, priority=1.0)
    log.logger.info("custom_event", stage="a", rows=3)
    log.close()
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines] == ["task_started", "custom_event"]
    assert list(lines[1])[:4] == ["event", "timestamp", "level", "run_id"]
    assert lines[1]["rows"] == 3 and lines[1]["level"] == "info" and lines[1]["run_id"] == "r1"
    assert lines[1]["timestamp"].endswith("Z")


def test_live_view_prints_lines_in_batches_and_loses_none(tmp_path: Path):
    """A burst of events reaches the terminal in a few prints (each redraws the block),
    and every line is there, once, in order."""
    out = io.StringIO()
    log = EventLog("r1", tmp_path / "events.jsonl", console=out, live=True)
    log.emit("run_started", pipeline="p", stages=200, workers=2, executor="local", params={},
             edges=[])
    for i in range(200):
        log.emit("task_started", stage=f"s{i}", attempt=1, worker_pid=1)
        log.emit("task_finished", stage=f"s{i}", attempt=1, worker_pid=1, **FINISHED)
        log.flush()
    log.emit("run_finished", status="succeeded", wall_s=0.1, succeeded=200, failed=0, skipped=0)
    log.close()
    text = out.getvalue()
    finished = re.findall(r"✓ (s\d+) finished", text)
    assert finished == [f"s{i}" for i in range(200)]
    assert text.count("done · ") < 50  # the block was not redrawn once per line
