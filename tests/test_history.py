"""Run history: lost runs, stale locks taken over, id prefixes, filters, retention."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dagrun.errors import UsageError
from dagrun.events.history import RunRecord, driver_alive, find_run
from dagrun.jobs.retention import runs_to_prune
from tests.conftest import ROOT, resource
from tests.helpers import wait_until

DAGRUN = [sys.executable, "-m", "dagrun"]


def dagrun(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*DAGRUN, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


@pytest.mark.slow
def test_sigkilled_run_is_lost_and_its_lock_is_taken_over(state_dir):
    """A SIGKILLed driver's run shows as lost; the next run takes its lock and succeeds."""
    proc = subprocess.Popen(
        [*DAGRUN, "run", resource("long_running"), "--workers", "2", "--log-format", "json",
         "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        start_new_session=True,
    )
    workers = []
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "task_started":
            workers.append(event["worker_pid"])
            if len(workers) == 2:
                break
    running = dagrun("runs", "--state-dir", str(state_dir))
    assert " running " in running.stdout
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    listing = dagrun("runs", "--state-dir", str(state_dir), "--status", "lost")
    assert " lost " in listing.stdout, listing.stdout
    again = dagrun("run", resource("long_running"), "-p", "seconds=0.1", "--state-dir",
                   str(state_dir))
    assert again.returncode == 0, again.stderr
    wait_until(lambda: not any(driver_alive(p, None) for p in workers), 10,
               message="the killed run's workers to exit")
    dagrun("clean", "--state-dir", str(state_dir))


def test_driver_alive_rejects_a_process_started_after_the_run():
    """A live pid that began after the run started is not the run's driver (pid reuse)."""
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    assert driver_alive(os.getpid(), None)
    assert not driver_alive(os.getpid(), long_ago)


@pytest.mark.slow
def test_show_by_prefix_filters_and_details(state_dir):
    """`runs show` takes a unique prefix; an ambiguous one is a clear error; filters work."""
    ok = dagrun("run", resource("hello"), "-p", "name=ada", "--state-dir", str(state_dir))
    bad = dagrun("run", resource("failing"), "--state-dir", str(state_dir))
    assert ok.returncode == 0 and bad.returncode == 1
    ids = sorted(p.name for p in (state_dir / "runs").iterdir())
    ambiguous = dagrun("runs", "show", "20", "--state-dir", str(state_dir))
    assert ambiguous.returncode == 2 and "is ambiguous: 2 runs match" in ambiguous.stderr
    hello_id = next(i for i in ids if "hello" in (state_dir / "runs" / i / "events.jsonl")
                    .read_text().splitlines()[0])
    shown = dagrun("runs", "show", hello_id[:-2], "--state-dir", str(state_dir))
    assert shown.returncode == 0, shown.stderr
    assert "pipeline:   hello" in shown.stdout and "name=ada" in shown.stdout
    assert "from cache:" in shown.stdout
    failed = dagrun("runs", "--status", "failed", "--state-dir", str(state_dir)).stdout
    assert "failing" in failed and "hello" not in failed
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    none = dagrun("runs", "--since", tomorrow, "--state-dir", str(state_dir)).stdout
    assert len(none.splitlines()) == 1  # the header alone
    assert dagrun("runs", "--since", "soon", "--state-dir", str(state_dir)).returncode == 2


def test_find_run_unknown_id(tmp_path):
    """An unknown run id is a UsageError pointing at `dagrun runs`."""
    with pytest.raises(UsageError, match="dagrun runs"):
        find_run(tmp_path, "nope")


def record(run_id: str, pipeline: str, age_days: float, status: str = "succeeded") -> RunRecord:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    return RunRecord(run_id, Path(run_id), pipeline, status, now - timedelta(days=age_days), None)


def test_retention_keeps_n_per_pipeline_and_spares_running_runs():
    """--keep-runs counts per pipeline; --older-than by age; a running run is never pruned."""
    now = datetime(2026, 11, 30, tzinfo=UTC)
    records = [record("r5", "a", 0, "running"), record("r4", "a", 1), record("r3", "b", 2),
               record("r2", "a", 40), record("r1", "a", 50)]
    assert [r.run_id for r in runs_to_prune(records, keep=1, now=now)] == ["r2", "r1"]
    aged = runs_to_prune(records, older_than=30 * 86400, now=now)
    assert [r.run_id for r in aged] == ["r2", "r1"]
    assert runs_to_prune(records, keep=1, pipeline="b", now=now) == []


@pytest.mark.slow
def test_clean_runs_older_than(state_dir):
    """`clean --runs --older-than` keeps recent runs; `--older-than` alone is a usage error."""
    assert dagrun("run", resource("hello"), "--state-dir", str(state_dir)).returncode == 0
    kept = dagrun("clean", "--runs", "--older-than", "30d", "--state-dir", str(state_dir))
    assert kept.returncode == 0 and len(list((state_dir / "runs").iterdir())) == 1
    alone = dagrun("clean", "--older-than", "30d", "--state-dir", str(state_dir))
    assert alone.returncode == 2 and "--runs" in alone.stderr
    gone = dagrun("clean", "--runs", "--state-dir", str(state_dir))
    assert gone.returncode == 0 and not list((state_dir / "runs").iterdir())


@pytest.mark.slow
def test_a_hyphenated_file_keeps_its_name(state_dir, tmp_path):
    """A pipeline file `my-pipeline.py` is listed as my-pipeline, not a module alias."""
    path = tmp_path / "my-pipeline.py"
    path.write_text(Path(resource("hello")).read_text())
    assert dagrun("run", str(path), "--state-dir", str(state_dir)).returncode == 0
    listing = dagrun("runs", "--state-dir", str(state_dir), "--pipeline", "my-pipeline").stdout
    assert len(listing.splitlines()) == 2 and " my-pipeline " in listing
