"""`dagrun schedule` as a real process: 1-second ticks, real runs, real signals."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT, resource, shm_entries
from tests.helpers import alive, wait_until

pytestmark = pytest.mark.slow  # every test here starts processes

DAGRUN = [sys.executable, "-m", "dagrun"]
EVERY_SECOND = "* * * * * *"


class Scheduler:
    """A `dagrun schedule` child with its JSON stdout read line by line in a thread."""

    def __init__(self, state_dir: Path, pipeline: str, *extra: str, cron: str = EVERY_SECOND):
        self.proc = subprocess.Popen(
            [*DAGRUN, "schedule", resource(pipeline), "--cron", cron, "--tz", "UTC",
             "--log-format", "json", "--state-dir", str(state_dir), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            start_new_session=True,
        )
        self.events: list[dict] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def until(self, predicate, timeout: float = 30) -> dict:
        """Collect events until one satisfies ``predicate``; that event."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            event = json.loads(line)
            self.events.append(event)
            if predicate(event):
                return event
        self.stop(signal.SIGKILL)
        raise AssertionError(f"no such event; got {[e['event'] for e in self.events]}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal the scheduler alone (as systemd's KillMode=mixed does); its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        self.proc.wait(timeout=timeout)
        while (line := self._lines.get(timeout=5)) is not None:
            self.events.append(json.loads(line))
        return self.proc.returncode

    def of(self, name: str) -> list[dict]:
        return [e for e in self.events if e["event"] == name]


def run_events(state_dir: Path, run_id: str) -> list[dict]:
    path = state_dir / "runs" / run_id / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ticks_with_a_slow_run_never_overlap_and_apply_catch_up_last(state_dir, tmp_path):
    """Ticks passing during a slow run are missed; policy last runs the newest; no overlap."""
    sched = Scheduler(state_dir, "slow_once", "-p", f"marker={tmp_path / 'slow'}",
                      "-p", "seconds=2.5", "--graceful")
    sched.until(lambda e: e["event"] == "schedule_run")  # the slow run
    sched.until(lambda e: e["event"] == "schedule_run")  # a caught-up one after it
    assert sched.stop() == 0  # --graceful: a run going on finishes first
    ticks = sched.of("schedule_tick")
    assert all({"due", "decision", "reason"} <= set(t) for t in ticks)
    missed = [t for t in ticks if t["reason"].startswith("missed: a run was still going on")]
    assert any(t["decision"] == "skip" for t in missed), ticks
    assert any(t["decision"] == "run" and "newest missed" in t["reason"] for t in missed), ticks
    dues = [t["due"] for t in ticks]
    assert dues == sorted(dues) and len(set(dues)) == len(dues)  # each tick decided once
    spans = []
    for done in sched.of("schedule_run"):
        assert done["status"] == "succeeded", done
        events = run_events(state_dir, done["run_id"])
        tick = next(t for t in ticks if t["due"] == done["due"])
        assert events[0]["run_date"] == tick["due_local"]  # the tick's time is the run date
        spans.append((events[0]["timestamp"], events[-1]["timestamp"]))
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))  # no overlap


def test_sigterm_between_ticks_exits_0_at_once(state_dir):
    """With the next tick far away, SIGTERM ends the scheduler at once with exit 0."""
    sched = Scheduler(state_dir, "hello", cron="0 0 1 1 *")
    started = sched.until(lambda e: e["event"] == "schedule_started")
    assert started["note"] == "first start: no tick is missed"
    t0 = time.monotonic()
    assert sched.stop() == 0
    assert time.monotonic() - t0 < 2
    assert sched.of("schedule_stopped")[0]["signal"] == "SIGTERM"


@pytest.mark.parametrize(("graceful", "code"), [(False, 143), (True, 0)])
def test_sigterm_during_a_run(graceful, code, state_dir):
    """SIGTERM during a run stops it cleanly (143), or with --graceful lets it finish (0)."""
    before = shm_entries()
    seconds = "3" if graceful else "60"
    extra = ["--graceful"] if graceful else []
    sched = Scheduler(state_dir, "long_running", "-p", f"seconds={seconds}", "--workers", "2",
                      *extra)
    sched.until(lambda e: e["event"] == "schedule_tick" and e["decision"] == "run")
    run_dir = _wait_for_tasks(state_dir, 2)
    workers = [e["worker_pid"] for e in _events(run_dir) if e["event"] == "task_started"]
    assert sched.stop() == code
    done = sched.of("schedule_run")[0]
    assert done["status"] == ("succeeded" if graceful else "interrupted")
    assert _events(run_dir)[-1]["event"] == "run_finished"
    assert len(sched.of("schedule_run")) == 1  # no new run started after the signal
    wait_until(lambda: not any(alive(pid) for pid in workers), 5,
               message="the run's workers to exit")
    assert shm_entries() == before


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _wait_for_tasks(state_dir: Path, count: int, timeout: float = 30) -> Path:
    def started_run() -> Path | None:
        for run_dir in (state_dir / "runs").glob("*") if (state_dir / "runs").exists() else []:
            try:
                started = [e for e in _events(run_dir) if e["event"] == "task_started"]
            except (OSError, ValueError):
                continue
            if len(started) >= count:
                return run_dir
        return None

    return wait_until(started_run, timeout, message=f"a run with {count} tasks started")


def test_restart_knows_what_it_missed_policy_none(state_dir):
    """A restarted scheduler finds the ticks missed while it was down; 'none' skips them."""
    sched = Scheduler(state_dir, "hello", cron="0 0 1 1 *")
    sched.until(lambda e: e["event"] == "schedule_started")
    assert sched.stop() == 0
    state_file = next((state_dir / "schedule").glob("hello-*/state.json"))
    state = json.loads(state_file.read_text())
    state["cron"] = EVERY_SECOND
    state["tz"] = "UTC"
    past = datetime.now(UTC) - timedelta(seconds=4)
    state["last_tick"] = past.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    state_file.write_text(json.dumps(state))
    sched = Scheduler(state_dir, "hello", "--catch-up", "none")
    sched.until(lambda e: e["event"] == "schedule_tick" and e["reason"] == "due")
    assert sched.stop() in (0, 143)
    down = [t for t in sched.of("schedule_tick") if "not running" in t["reason"]]
    assert len(down) >= 3 and all(t["decision"] == "skip" for t in down)
    assert sched.of("schedule_started")[0]["note"] == "resumed after the last tick handled"


def test_on_failure_and_keep_runs(state_dir, tmp_path):
    """A failed run calls --on-failure with its id, status and pipeline; --keep-runs prunes."""
    log = tmp_path / "alerts.txt"
    hook = f'echo "$DAGRUN_STATUS $DAGRUN_RUN_ID $DAGRUN_PIPELINE" >> {log}'
    sched = Scheduler(state_dir, "failing", "--on-failure", hook, "--keep-runs", "1")
    sched.until(lambda e: e["event"] == "schedule_run")
    sched.until(lambda e: e["event"] == "schedule_run")
    sched.stop()
    first = sched.of("schedule_run")[0]
    assert first["status"] == "failed"
    lines = log.read_text().splitlines()
    assert f"failed {first['run_id']} failing" in lines
    assert len(list((state_dir / "runs").iterdir())) <= 2  # the kept one (+ one going on)


def test_second_scheduler_of_one_pipeline_exits_3(state_dir):
    """A second scheduler of the same pipeline and state directory exits 3 at once."""
    sched = Scheduler(state_dir, "hello", cron="0 0 1 1 *")
    sched.until(lambda e: e["event"] == "schedule_started")
    try:
        second = subprocess.run(
            [*DAGRUN, "schedule", resource("hello"), "--cron", "0 0 1 1 *", "--state-dir",
             str(state_dir)], capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert second.returncode == 3
        assert f"pid {sched.proc.pid}" in second.stderr
    finally:
        sched.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cron", "61 * * * *"), "is not a valid cron expression"),
        (("--cron", "* * * * *", "--tz", "Nowhere/City"), "is not a known time zone"),
        (("--cron", "* * * * *", "--catch-up", "some"), "is not a policy"),
    ],
)
def test_schedule_usage_errors_exit_2(args, message, state_dir):
    """A bad cron expression, zone or policy exits 2 with one clear paragraph."""
    done = subprocess.run([*DAGRUN, "schedule", resource("hello"), *args, "--state-dir",
                           str(state_dir)], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_dry_run_prints_fire_times(state_dir):
    """--dry-run prints the next N fire times in the zone and exits 0."""
    done = subprocess.run(
        [*DAGRUN, "schedule", resource("hello"), "--cron", "30 2 * * *", "--tz", "Europe/Paris",
         "--dry-run", "--count", "3", "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all("T02:30:00+0" in line or "T03:00:00" in line for line in lines)
