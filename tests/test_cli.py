"""The command line through real subprocesses: every exit code, real signals."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, resource, shm_entries
from tests.helpers import alive, wait_until

DAGRUN = [sys.executable, "-m", "dagrun"]


def dagrun(*args: str, state_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DAGRUN, *args, "--state-dir", str(state_dir)] if args[0] == "run" else [*DAGRUN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_exit_0_on_success(state_dir):
    """A successful run exits 0 and prints the run's events."""
    done = dagrun("run", resource("hello"), "--log-format", "json", state_dir=state_dir)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "succeeded"
    run_dir = state_dir / "runs" / events[0]["run_id"]
    assert (run_dir / "events.jsonl").read_text().count("\n") == len(events)


@pytest.mark.slow
def test_exit_1_on_stage_failure_with_traceback_once(state_dir):
    """A failing stage exits 1; its traceback (user file and line) is shown once."""
    done = dagrun("run", resource("failing"), state_dir=state_dir)
    assert done.returncode == 1
    out = done.stdout + done.stderr
    assert out.count("raise ValueError(f\"bad value {value}\")") == 1
    assert "failing.py\", line 9, in helper" in out
    assert "stage 'broken' failed" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((resource("invalid"),), "4 errors encountered"),
        ((resource("hello"), "--param", "nmae=x"), "did you mean 'name'"),
        ((resource("hello"), "--param", "novalue"), "is not NAME=VALUE"),
        ((resource("hello"), "--target", "nope"), "unknown target 'nope'"),
        ((resource("params_pipeline"), "-p", "count=x"), "'x' is not a valid int"),
        ((resource("syntax_error"),), "syntax_error.py, line 6"),
        (("does/not/exist.py",), "does not exist"),
        ((resource("hello"), "--workers", "0"), "workers must be at least 1"),
        ((resource("hello"), "--executor", "nope"), "--executor 'nope' is unknown"),
        ((resource("hello"), "--timeout", "-1"), "--timeout must be a positive number"),
        ((resource("hello"), "--max-runtime", "-5"), "is not a duration"),
        ((resource("hello"), "--max-runtime", "0s"), "--max-runtime must be positive"),
        ((resource("hello"), "--max-tasks-per-worker", "0"), "must be at least 1"),
        ((resource("hello"), "--memory", "lots"), "is not a size"),
        ((resource("hello"), "--run-date", "2026-13-01"), "write it as YYYY-MM-DD"),
        ((resource("hello"), "--run-date", "tomorrow"), "is not a date"),
        ((resource("hello"), "--params-file", "no/such.toml"), "cannot be read"),
        ((resource("hello"), "--address", "tcp://x:1"), "only meaningful with --executor"),
    ],
)
def test_exit_2_on_invalid_usage(args, message, state_dir):
    """Invalid pipelines and arguments exit 2 with a message, no traceback, and run nothing."""
    done = dagrun("run", *args, state_dir=state_dir)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (state_dir / "runs").exists() or not any((state_dir / "runs").iterdir())


@pytest.mark.slow
def test_validate_list_graph(state_dir):
    """validate, list and graph work on a good pipeline and exit 2 on a bad one."""
    assert dagrun("validate", resource("hello"), state_dir=state_dir).returncode == 0
    listing = dagrun("list", resource("hello"), state_dir=state_dir).stdout
    assert "report" in listing and "shout=False" in listing
    for fmt, marker in (("text", "report <- greeting, length"), ("mermaid", "flowchart TD"),
                        ("dot", "digraph")):
        shown = dagrun("graph", resource("hello"), "--format", fmt, state_dir=state_dir)
        assert marker in shown.stdout
    bad = dagrun("validate", resource("invalid"), state_dir=state_dir)
    assert bad.returncode == 2 and "cycle: alpha -> beta -> gamma -> alpha" in bad.stderr


@pytest.mark.slow
def test_runs_history(state_dir):
    """`dagrun runs` lists runs and `runs show` gives per-stage metrics."""
    dagrun("run", resource("hello"), state_dir=state_dir)
    listing = subprocess.run([*DAGRUN, "runs", "--state-dir", str(state_dir)],
                             capture_output=True, text=True, cwd=ROOT)
    assert "succeeded" in listing.stdout
    run_id = listing.stdout.splitlines()[1].split()[0]
    shown = subprocess.run([*DAGRUN, "runs", "show", run_id, "--state-dir", str(state_dir)],
                           capture_output=True, text=True, cwd=ROOT)
    assert "greeting" in shown.stdout and "pickle" in shown.stdout


def start(state_dir: Path, *extra: str) -> tuple[subprocess.Popen, list[dict]]:
    """Start the long-running pipeline and wait until both tasks have started."""
    proc = subprocess.Popen(
        [*DAGRUN, "run", resource("long_running"), "--workers", "2", "--log-format", "json",
         "--state-dir", str(state_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        start_new_session=True,
    )
    events = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        events.append(json.loads(line))
        if sum(e["event"] == "task_started" for e in events) == 2:
            return proc, events
    proc.kill()
    raise AssertionError(f"tasks did not start: {events}")


def workers_of(events: list[dict]) -> list[int]:
    return [e["worker_pid"] for e in events if e["event"] == "task_started"]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_stop_the_run(signum, code, state_dir):
    """SIGINT / SIGTERM stop the run within seconds: exit 130 / 143, no worker left."""
    before = shm_entries()
    proc, events = start(state_dir)
    os.killpg(proc.pid, signum)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == code
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "run_finished" and last["status"] == "interrupted"
    wait_until(lambda: not any(alive(pid) for pid in workers_of(events)), 5,
               message="the run's workers to exit")
    assert shm_entries() == before


@pytest.mark.slow
def test_second_ctrl_c_exits_at_once(state_dir):
    """A second SIGINT during shutdown exits immediately, still leaving no worker."""
    proc, events = start(state_dir)
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=15)
    assert proc.returncode == 130
    wait_until(lambda: not any(alive(pid) for pid in workers_of(events)), 5,
               message="the run's workers to exit")


@pytest.mark.slow
def test_workers_die_with_a_killed_driver(state_dir):
    """SIGKILL of the driver: its workers notice and exit by themselves."""
    proc, events = start(state_dir)
    proc.kill()
    proc.communicate(timeout=15)
    wait_until(lambda: not any(alive(pid) for pid in workers_of(events)), 10,
               message="the orphaned workers to exit")
    subprocess.run([*DAGRUN, "clean", "--state-dir", str(state_dir)], cwd=ROOT, check=True,
                   capture_output=True)


@pytest.mark.slow
def test_exit_3_when_the_lock_is_held(state_dir):
    """A second run of the same pipeline exits 3 at once, naming the holder."""
    proc, _ = start(state_dir)
    try:
        done = subprocess.run(
            [*DAGRUN, "run", resource("long_running"), "--state-dir", str(state_dir)],
            capture_output=True, text=True, timeout=30, cwd=ROOT,
        )
        assert done.returncode == 3
        assert f"pid {proc.pid}" in done.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=15)


@pytest.mark.slow
def test_help_is_fast():
    """`dagrun --help` works (and does not import numpy)."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, dagrun.cli.main; print('numpy' in sys.modules)"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert done.stdout.strip() == "False"
    assert subprocess.run([*DAGRUN, "--help"], capture_output=True, cwd=ROOT).returncode == 0


def test_run_schedule_and_backfill_take_every_run_option():
    """The run options, declared once, reach all three commands; --force keeps its two meanings."""
    import typer.main

    from dagrun.cli.main import app
    from dagrun.cli.options import RUN_OPTIONS

    group = typer.main.get_command(app)
    commands = {name: group.commands[name] for name in ("run", "schedule", "backfill")}
    shared = [option.name for option in RUN_OPTIONS]
    assert len(shared) == 19
    for name, command in commands.items():
        params = {p.name: p for p in command.params}
        assert set(shared) <= set(params), name
        assert all(params[n].help for n in shared), name
    for name in ("run", "schedule"):
        force = next(p for p in commands[name].params if p.name == "force")
        assert force.multiple and "stage" in (force.help or ""), name
    force = next(p for p in commands["backfill"].params if p.name == "force")
    assert getattr(force, "is_flag", False) and "dates" in (force.help or "")
    assert "run_date" in {p.name for p in commands["run"].params}


def test_a_command_redeclaring_a_run_option_must_say_it_replaces_it():
    """A run option declared again by a command is an error at import unless it is replaced."""
    from dagrun.cli.options import takes_run_options

    def clashing(pipeline: str, force: bool = False, **options: Any) -> None:
        """Declares --force without saying so."""

    def replacing(pipeline: str, force: bool = False, **options: Any) -> None:
        """Declares its own --force."""

    def plain(pipeline: str, **options: Any) -> None:
        """Declares nothing of its own."""

    def closed(pipeline: str) -> None:
        """Has nowhere to receive the run options."""

    with pytest.raises(TypeError, match="force"):
        takes_run_options()(clashing)
    with pytest.raises(TypeError, match="force"):
        takes_run_options(replaces=("force",))(plain)
    with pytest.raises(TypeError, match="options"):
        takes_run_options()(closed)
    names = list(inspect.signature(takes_run_options(replaces=("force",))(replacing)).parameters)
    assert names.count("force") == 1 and "wait" in names and "options" not in names


@pytest.mark.slow
def test_without_dev_shm_the_run_spills_to_disk_and_says_so_once(state_dir, tmp_path):
    """With no shared memory, intermediates go to memory-mapped files; one notice; none left."""
    env = {**os.environ, "DAGRUN_SHM_DIR": str(tmp_path / "no-shm-here")}
    done = subprocess.run(
        [*DAGRUN, "run", resource("arrays"), "--keep-going", "--log-format", "json",
         "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    notices = [e for e in events if e["event"] == "store_fallback"]
    assert len(notices) == 1 and "memory-mapped files" in notices[0]["message"]
    transports = {e["stage"]: e["transport"] for e in events if e["event"] == "task_finished"}
    assert transports["matrix"] == "file"
    assert done.returncode == 1  # `vandal` writes into its input: still refused on disk
    assert "read-only" in done.stdout
    spill = state_dir / "spill"
    assert not spill.exists() or not any(spill.iterdir())


@pytest.mark.slow
def test_version():
    """`dagrun --version` prints the version and exits 0."""
    done = subprocess.run([*DAGRUN, "--version"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.startswith("dagrun ")


@pytest.mark.slow
def test_state_dir_naming_a_file_is_a_usage_error(tmp_path):
    """--state-dir naming a file exits 2 with a clear message, for run and for runs."""
    path = tmp_path / "afile"
    path.write_text("")
    for args in (("run", resource("hello")), ("runs",)):
        done = subprocess.run([*DAGRUN, *args, "--state-dir", str(path)], capture_output=True,
                              text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 2 and "is a file, not a directory" in done.stderr


@pytest.mark.slow
def test_run_date_reaches_the_stage(state_dir):
    """--run-date is what a stage's `run_date: datetime.date` parameter receives."""
    done = dagrun("run", resource("dated"), "--run-date", "2026-11-03", "--log-format", "json",
                  state_dir=state_dir)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["event"] == "run_started" and events[0]["run_date"] == "2026-11-03"
    logs = [e["message"] for e in events if e["event"] == "task_log"]
    assert "logical date 2026-11-03 (date)" in logs


@pytest.mark.slow
def test_params_file_and_param_override(state_dir, tmp_path):
    """--params-file values act as --param; a --param on the command line wins."""
    toml = tmp_path / "params.toml"
    toml.write_text('fail_on = "2026-11-03"\n')
    failing = dagrun("run", resource("dated"), "--run-date", "2026-11-03", "--params-file",
                     str(toml), state_dir=state_dir)
    assert failing.returncode == 1
    overridden = dagrun("run", resource("dated"), "--run-date", "2026-11-03", "--params-file",
                        str(toml), "--param", "fail_on=never", state_dir=state_dir)
    assert overridden.returncode == 0, overridden.stderr


@pytest.mark.slow
def test_max_runtime_stops_the_run_with_124(state_dir):
    """A run past --max-runtime stops cleanly: exit 124, status timed_out, nothing left."""
    before = shm_entries()
    started = time.monotonic()
    done = dagrun("run", resource("long_running"), "--workers", "2", "--max-runtime", "1s",
                  "--log-format", "json", state_dir=state_dir)
    assert done.returncode == 124, done.stderr
    assert time.monotonic() - started < 30
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "timed_out"
    wait_until(lambda: not any(alive(pid) for pid in workers_of(events)), 5,
               message="the run's workers to exit")
    assert shm_entries() == before
    assert "--max-runtime" in done.stderr


@pytest.mark.slow
def test_readme_crontab_line_runs_as_written(tmp_path):
    """The README's crontab command, as cron would run it (\\% becomes %), exits 0."""
    line = next(x for x in (ROOT / "README.md").read_text().splitlines()
                if x.startswith("30 2 * * * "))
    command = line.split(" ", 5)[5].replace("\\%", "%")
    command = command.replace("cd /srv/pipelines", f"cd {ROOT}")
    command = command.replace("dagrun-cron.log", str(tmp_path / "cron.log"))
    env = {**os.environ, "DAGRUN_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(["/bin/sh", "-c", command], env=env, timeout=300, capture_output=True,
                          text=True)
    log = (tmp_path / "cron.log").read_text()
    assert done.returncode == 0, log[-2000:]
    events = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "succeeded"
