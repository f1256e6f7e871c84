"""SIGINT / SIGTERM at every phase of `dagrun run`, sent to a real driver process.

Import, validation and a lock wait end with 130 / 143 at once; a run stops in
order; two signals less than a second apart count as one; a second signal
later exits at once. The autouse leak check proves nothing is left in
/dev/shm and no worker survives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, resource

pytestmark = pytest.mark.slow  # every test here starts processes

DAGRUN = str(Path(sys.executable).with_name("dagrun"))  # the interpreter running the tests
SLOW = resource("slow_phases")
CODES = [pytest.param(signal.SIGINT, 130, id="int"), pytest.param(signal.SIGTERM, 143, id="term")]


def start(phase: str, tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "SLOW_PHASE": phase, "SLOW_MARKER": str(tmp_path / "marker")}
    return subprocess.Popen(
        [DAGRUN, "run", SLOW, "--state-dir", str(tmp_path / "state"), "--log-format", "json",
         *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )


def wait_for(path: Path, proc: subprocess.Popen, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"never reached the slow part: {proc.communicate()}")
        time.sleep(0.02)


@pytest.mark.parametrize(("signum", "code"), CODES)
@pytest.mark.parametrize("phase", ["import", "validation"])
def test_a_signal_before_the_run_exits_with_its_code(phase, signum, code, tmp_path):
    """Ctrl-C or SIGTERM while the pipeline imports or validates: 130 / 143, not 'failed'."""
    proc = start(phase, tmp_path)
    wait_for(tmp_path / "marker", proc)
    started = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == code, err
    assert time.monotonic() - started < 5
    assert "failed to import" not in err and "Traceback" not in err


@pytest.mark.parametrize(("signum", "code"), CODES)
def test_a_signal_while_waiting_for_the_lock(signum, code, tmp_path):
    """--wait says whom it waits for (run id and pid); a signal ends the wait with its code."""
    holder = start("run", tmp_path, "--workers", "1")
    try:
        wait_for(tmp_path / "marker", holder)
        waiter = start("run", tmp_path, "--wait")
        line = waiter.stderr.readline()
        assert "waiting for the run that holds this pipeline's lock" in line
        assert f"pid {holder.pid}, run " in line
        waiter.send_signal(signum)
        waiter.communicate(timeout=15)
        assert waiter.returncode == code
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=15)
        subprocess.run([DAGRUN, "clean", "--state-dir", str(tmp_path / "state")], cwd=ROOT,
                       capture_output=True, timeout=30)


def started_tasks(proc: subprocess.Popen, count: int) -> list[dict]:
    events: list[dict] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        events.append(json.loads(line))
        if sum(e["event"] == "task_started" and e["stage"] == "stubborn" for e in events) == count:
            return events
    proc.kill()
    raise AssertionError(f"tasks did not start: {events}")


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_signal_delivered_twice_at_once_counts_once(method, tmp_path):
    """SIGTERM twice 50 ms apart (as `timeout` plus a process group do): one orderly stop."""
    proc = start("run", tmp_path, "--workers", "1", "--start-method", method)
    started_tasks(proc, 1)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "run_finished" and last["status"] == "interrupted"


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_a_second_signal_later_exits_at_once(method, tmp_path):
    """A second Ctrl-C 1.3 s into a slow stop (three workers ignoring SIGTERM) exits 130 at
    once, without the orderly end and without leaving a worker or a segment."""
    proc = start("run", tmp_path, "--workers", "3", "--start-method", method)
    started_tasks(proc, 3)
    for element in range(3):  # each task now ignores SIGTERM
        wait_for(tmp_path / f"marker.{element}", proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.3)
    second = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - second < 1.0
    assert '"run_finished"' not in out


def test_ctrl_c_inside_an_inline_stage_stops_the_run(tmp_path):
    """Inline, Ctrl-C interrupts the stage's own code (the one safe point to raise) and the
    run ends in order: 130, `interrupted` logged."""
    proc = start("run", tmp_path, "--executor", "inline")
    wait_for(tmp_path / "marker.0", proc)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < 5
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "run_finished" and last["status"] == "interrupted"
