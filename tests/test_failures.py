"""The failure matrix, in the manner of CPython's ``test_concurrent_futures/test_deadlock.py``.

Every way a task can go wrong (raise, ``sys.exit``, ``os._exit``, SIGSEGV,
SIGKILL, a hang past its timeout, a result or exception that will not pickle,
arguments whose unpickling raises or kills the worker, many crashes in a row)
and every way the driver can be stopped (Ctrl-C, a second Ctrl-C, SIGTERM,
SIGKILL), under ``fork``, ``forkserver`` and ``spawn``, each under a hard
timeout so that a hang fails the test. Each asserts the exit code or error
type, the message the user sees, that unrelated stages still finished
(``keep_going``), and (through the autouse ``no_leaks`` fixture) that no
process and no ``/dev/shm`` entry of ours is left. Also the worker lifecycle:
``--max-tasks-per-worker`` and ``@dagrun.worker_init`` resources.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

import dagrun
from dagrun.executors.local import describe_exit
from dagrun.executors.oom import OomWatch
from dagrun.graph.build import build_graph
from tests.conftest import ROOT, resource
from tests.helpers import alive, wait_until
from tests.resources.faults import ExitOnLoad, RaiseOnLoad

pytestmark = pytest.mark.timeout(30)

METHODS = [pytest.param(m, id=m) for m in ("fork", "forkserver", "spawn")]
DAGRUN = [sys.executable, "-m", "dagrun"]
FAULTS = resource("faults")


def events_of(result_or_path) -> list[dict]:
    path = getattr(result_or_path, "events_path", result_or_path)
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def run_faults(method, state_dir, targets, **kwargs):
    return dagrun.run(FAULTS, targets=[*targets, "survivor"], workers=2, start_method=method,
                      keep_going=True, state_dir=state_dir, log_format="none", **kwargs)


# -- the matrix: one faulty stage next to `survivor`, through dagrun.run -----------------
SCENARIOS = [
    # id, target stage, params, error type, fragments of the message the user sees
    ("raise", "raises", {}, dagrun.StageFailed, ["ValueError: bad value 42"]),
    ("sys_exit", "exits", {}, dagrun.StageFailed, ["the stage called sys.exit(3)"]),
    ("os_exit", "os_exit", {}, dagrun.WorkerCrashed, ["exited with code 7 while running it"]),
    ("sigsegv", "segfault", {}, dagrun.WorkerCrashed, ["killed by SIGSEGV", "native code"]),
    ("sigkill", "sigkill", {}, dagrun.WorkerCrashed,
     ["killed by SIGKILL", "the signal did not come from dagrun"]),
    ("timeout", "hangs", {}, dagrun.StageTimeout, ["timed out after 0.5 s", "was stopped"]),
    ("result_lambda", "returns_lambda", {}, dagrun.StageFailed,
     ["local object 'returns_lambda.<locals>.<lambda>'", "(a function) could not be stored"]),
    ("result_lock", "returns_lock", {}, dagrun.StageFailed,
     ["cannot pickle '_thread.lock' object", "could not be stored"]),
    ("exception_unpicklable", "raises_unpicklable", {}, dagrun.StageFailed,
     ["Unpicklable: code 5: needs two arguments"]),
    ("exception_holds_lock", "raises_lock_holder", {}, dagrun.StageFailed,
     ["HoldsALock: holding a lock"]),
    ("exception_bad_str", "raises_bad_str", {}, dagrun.StageFailed,
     ["BadStr: <str() of this exception raised RuntimeError: __str__ is broken too>"]),
    ("input_exits_on_unpickle", "reads_exit_on_load", {}, dagrun.WorkerCrashed,
     ["exited with code 9 while running it"]),
    ("input_raises_on_unpickle", "reads_raise_on_load", {}, dagrun.StageFailed,
     ["this input cannot be rebuilt", "while reading input 'raise_on_load'"]),
    ("target_raises_on_unpickle", "raise_on_load", {}, dagrun.StageFailed,
     ["this input cannot be rebuilt", "while reading back the result of stage"]),
    ("param_exits_on_unpickle", "takes_param", {"value": ExitOnLoad()}, dagrun.WorkerCrashed,
     ["exited with code 9 while running it"]),
    ("param_raises_on_unpickle", "takes_param", {"value": RaiseOnLoad()}, dagrun.StageFailed,
     ["this input cannot be rebuilt", "while the worker unpickled the task's arguments"]),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("target", "params", "error_type", "fragments"),
    [pytest.param(*s[1:], id=s[0]) for s in SCENARIOS],
)
def test_fault_fails_only_its_stage(method, target, params, error_type, fragments, state_dir):
    """The faulty stage fails with a message saying what happened; `survivor` still finishes."""
    # no_cache: an object parameter (ExitOnLoad) has no content hash for a cache key
    with run_faults(method, state_dir, [target], params=params, no_cache=True) as result:
        assert result.status == "failed"
        assert result["survivor"] == "alive"
        assert set(result.errors) == {target}
        error = result.errors[target]
    assert type(error) is error_type
    for fragment in fragments:
        assert fragment in str(error)
    assert "out-of-memory" not in str(error)  # no evidence of memory pressure in any of these
    failed = [e for e in events_of(result) if e["event"] == "task_failed"]
    assert [e["stage"] for e in failed] == [target]  # shown once, under the stage's name
    assert fragments[-1] in f"{failed[0]['error_type']}: {failed[0]['error']}"


@pytest.mark.parametrize("method", METHODS)
def test_raise_keeps_the_user_traceback(method, state_dir):
    """A raising stage's traceback points into the user's file and line, with no dagrun frames."""
    with run_faults(method, state_dir, ["raises"]) as result:
        error = result.errors["raises"]
    assert isinstance(error.__cause__, ValueError)
    assert 'faults.py", line' in error.traceback and "in raises" in error.traceback
    assert "dagrun/executors" not in error.traceback


@pytest.mark.parametrize("method", METHODS)
def test_many_crashes_in_a_row(method, state_dir):
    """Ten stages crash on every attempt (20 dead workers): each fails alone, nothing leaks."""
    def crashes(targets=None):
        return dagrun.run(resource("faults_many"), targets=targets, workers=2,
                          start_method=method, keep_going=True, state_dir=state_dir,
                          log_format="none")

    with crashes(["survivor"]):
        pass  # once first, so that one-time fds (the fork server, imports) are open already
    fds = psutil.Process().num_fds()
    with crashes() as result:
        assert result["survivor"] == "alive"
        errors = dict(result.errors)
    assert sorted(errors) == sorted(f"crash_{i}" for i in range(10))
    for i in range(10):
        assert isinstance(errors[f"crash_{i}"], dagrun.WorkerCrashed)
        assert f"exited with code {10 + i} while running it" in str(errors[f"crash_{i}"])
    failed = Counter(e["stage"] for e in events_of(result) if e["event"] == "task_failed")
    assert failed == {f"crash_{i}": 2 for i in range(10)}  # the retry ran, and crashed too
    assert psutil.Process().num_fds() <= fds  # every dead worker's pipe and sentinel closed


@pytest.mark.parametrize("method", METHODS)
def test_crash_and_timeout_attempts_count(method, state_dir):
    """Crashes and timeouts are retried (even with `retry_on`) and each counts as an attempt."""
    with run_faults(method, state_dir, ["always_hangs", "always_crashes"]) as result:
        assert result["survivor"] == "alive"
        assert isinstance(result.errors["always_hangs"], dagrun.StageTimeout)
        assert isinstance(result.errors["always_crashes"], dagrun.WorkerCrashed)
    events = events_of(result)
    attempts = {
        stage: [e["attempt"] for e in events if e["event"] == "task_failed" and e["stage"] == stage]
        for stage in ("always_hangs", "always_crashes")
    }
    assert attempts == {"always_hangs": [1, 2, 3], "always_crashes": [1, 2]}
    retrying = Counter(e["stage"] for e in events if e["event"] == "task_retrying")
    assert retrying == {"always_hangs": 2, "always_crashes": 1}


# -- out-of-memory evidence ------------------------------------------------------------
def test_oom_is_named_only_on_evidence():
    """The OOM killer is named only for a SIGKILL with an OOM count or a high peak."""
    gib = 1 << 30
    plain = describe_exit(1, -signal.SIGKILL, peak_rss=50 << 20, memory_limit=8 * gib)
    counted = describe_exit(1, -signal.SIGKILL, peak_rss=50 << 20, oom_kills=1,
                            memory_limit=8 * gib)
    big = describe_exit(1, -signal.SIGKILL, peak_rss=5 * gib, memory_limit=8 * gib)
    segv = describe_exit(1, -signal.SIGSEGV, peak_rss=5 * gib, oom_kills=1, memory_limit=8 * gib)
    assert "out-of-memory" not in plain and "peak memory 50.0 MiB" in plain
    assert "likely killed by the out-of-memory killer" in counted and "1 new OOM kill" in counted
    assert "likely killed by the out-of-memory killer" in big and "8.0 GiB" in big
    assert "out-of-memory" not in segv
    sampled = describe_exit(1, 3, peak_rss=2 << 20, peak_exact=False)
    assert sampled.endswith("exited with code 3 while running it; peak memory at least 2.0 MiB")


def test_oom_watch_counts_new_kills(tmp_path):
    """OomWatch reports the kills the cgroup counted that no dead worker claimed yet; each
    look claims one (two workers killed together are both seen as killed)."""
    events = tmp_path / "memory.events"
    events.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    watch = OomWatch()
    watch._events = events
    watch._seen = watch._count()
    assert watch.new_kills() == 0
    events.write_text("low 0\nhigh 0\nmax 5\noom 3\noom_kill 3\n")
    assert watch.new_kills() == 2
    assert watch.new_kills() == 1
    assert watch.new_kills() == 0


# -- the command line: exit codes and signals, through real subprocesses ---------------
def cli(*args: str, state_dir: Path, timeout: float = 25) -> subprocess.CompletedProcess:
    return subprocess.run([*DAGRUN, "run", *args, "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("method", METHODS)
def test_cli_failures_exit_1(method, state_dir):
    """Raise, crash, segfault and the run-wide --timeout: exit 1, each message shown once."""
    targets = ["raises", "os_exit", "segfault", "sleeps", "survivor"]
    done = cli(FAULTS, *(a for t in targets for a in ("--target", t)), "--keep-going",
               "--workers", "2", "--timeout", "0.5", "--start-method", method,
               state_dir=state_dir)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert out.count("ValueError: bad value 42") == 2  # the line, then the traceback's last line
    assert out.count('raise ValueError("bad value 42")') == 1
    assert "WorkerCrashed: its worker process" in out and "exited with code 7" in out
    assert "killed by SIGSEGV while running it" in out
    assert "StageTimeout: timed out after 0.5 s" in out
    assert "survivor finished" in out
    assert "stage 'raises', 'os_exit', 'segfault', 'sleeps' failed" in done.stderr
    assert "Traceback" not in done.stderr


def segments_of(pid: int) -> list[str]:
    """The /dev/shm entries of the run whose driver is ``pid``."""
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"dagrun-{pid}-")]


@pytest.fixture
def driver(state_dir):
    """Starts a driver in a subprocess; whatever happens, it is gone after the test."""
    started: list[subprocess.Popen] = []

    def start(method: str) -> tuple[subprocess.Popen, list[dict]]:
        proc, events = start_driver(state_dir, method, started)
        return proc, events

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            subprocess.run([*DAGRUN, "clean", "--state-dir", str(state_dir)], cwd=ROOT,
                           capture_output=True, timeout=20)


def start_driver(
    state_dir: Path, method: str, started: list[subprocess.Popen]
) -> tuple[subprocess.Popen, list[dict]]:
    """Start a run whose two slow stages read an array in shared memory; wait until both run."""
    proc = subprocess.Popen(
        [*DAGRUN, "run", FAULTS, "--target", "waits_a", "--target", "waits_b", "--workers", "2",
         "--log-format", "json", "--start-method", method, "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        start_new_session=True,
    )
    started.append(proc)
    events: list[dict] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        events.append(json.loads(line))
        waiting = [e for e in events if e["event"] == "task_started" and e["stage"] != "array"]
        if len(waiting) == 2:
            return proc, events
    raise AssertionError(f"tasks did not start: {events}")


def workers_of(events: list[dict]) -> set[int]:
    return {e["worker_pid"] for e in events if e["event"] == "task_started"}


def assert_gone(pids: set[int], within: float = 10) -> None:
    wait_until(lambda: not any(alive(p) for p in pids), within,
               message="the workers to end with the run")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("signum", "code"),
    [pytest.param(signal.SIGINT, 130, id="ctrl-c"), pytest.param(signal.SIGTERM, 143, id="term")],
)
def test_signal_stops_the_run(method, signum, code, driver):
    """Ctrl-C / SIGTERM: exit 130 / 143 within seconds, `interrupted` logged, nothing left."""
    proc, events = driver(method)
    assert segments_of(proc.pid)  # the array is in shared memory right now
    started = time.monotonic()
    os.killpg(proc.pid, signum)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == code
    assert time.monotonic() - started < 5
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "run_finished" and last["status"] == "interrupted"
    assert_gone(workers_of(events))
    assert not segments_of(proc.pid)


@pytest.mark.parametrize("method", METHODS)
def test_second_ctrl_c_exits_at_once(method, driver):
    """A second Ctrl-C during shutdown exits 130 at once, still without leaks."""
    proc, events = driver(method)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=15)
    assert proc.returncode == 130
    assert time.monotonic() - started < 2
    assert_gone(workers_of(events))
    assert not segments_of(proc.pid)


@pytest.mark.parametrize("method", METHODS)
def test_driver_sigkill(method, driver, state_dir):
    """SIGKILL of the driver: workers exit by themselves; `dagrun clean` removes its segments."""
    proc, events = driver(method)
    proc.kill()
    proc.communicate(timeout=15)
    assert_gone(workers_of(events))  # under forkserver too, whose workers are not its children
    assert segments_of(proc.pid)  # left behind by a driver that could not clean up...
    subprocess.run([*DAGRUN, "clean", "--state-dir", str(state_dir)], cwd=ROOT, check=True,
                   capture_output=True, timeout=20)
    assert not segments_of(proc.pid)  # ...until the next `dagrun clean` (or run)


# -- worker lifecycle: recycling and @worker_init ----------------------------------------
def started_pids(result) -> list[int]:
    return [e["worker_pid"] for e in events_of(result) if e["event"] == "task_started"]


def assert_one_making_per_worker(rows: list[tuple[int, int, str]]) -> None:
    for task_pid, made_in, _ in rows:
        assert made_in == task_pid  # made in the worker that used it
    tokens = {}
    for task_pid, _, token in rows:
        assert tokens.setdefault(task_pid, token) == token  # once per worker, then reused
    assert len(set(tokens.values())) == len(tokens)  # and made afresh in every worker


@pytest.mark.parametrize("method", METHODS)
def test_max_tasks_per_worker_recycles(method, state_dir):
    """With --max-tasks-per-worker 2, every worker runs two tasks, and makes its resource once."""
    with dagrun.run(resource("faults_resources"), targets=["predict"], workers=1,
                    start_method=method, max_tasks_per_worker=2, state_dir=state_dir,
                    log_format="none") as result:
        rows = list(result["predict"])
    pids = started_pids(result)  # `items`, then the 8 elements of `predict`, one worker
    assert len(pids) == 9
    assert [pids[i] for i in range(0, 8, 2)] == [pids[i] for i in range(1, 9, 2)]
    assert len(set(pids)) == 5
    assert_one_making_per_worker(rows)
    assert {r[0] for r in rows} == set(pids)


@pytest.mark.parametrize("method", METHODS)
def test_worker_init_runs_again_after_a_crash(method, state_dir, tmp_path):
    """A worker that crashes is replaced, and the replacement makes the resource anew."""
    marker = tmp_path / "crashed"
    with dagrun.run(resource("faults_resources"), targets=["predict"], workers=2,
                    start_method=method, params={"crash_marker": str(marker)},
                    state_dir=state_dir, log_format="none") as result:
        assert result.ok
        rows = list(result["predict"])
    assert marker.exists()
    assert_one_making_per_worker(rows)
    events = events_of(result)
    crashed = [e for e in events if e["event"] == "task_failed"]
    assert len(crashed) == 1 and "exited with code 1" in crashed[0]["error"]
    retry = [e for e in events if e["event"] == "task_started" and e["attempt"] == 2]
    assert len(retry) == 1
    # Two workers, plus a replacement when a task lands on it after the crash (the
    # retry may also go to the surviving worker: both are fine, each made its own).
    assert len(set(started_pids(result))) in (2, 3)
    dead = {e["worker_pid"] for e in events if e["event"] == "task_started"} - {
        r[0] for r in rows if r[0] != retry[0]["worker_pid"]
    }
    assert retry[0]["worker_pid"] in {r[0] for r in rows}  # the retry ran in a worker...
    assert dead  # ...that made its own resource (checked above)


def test_worker_init_inline_once_per_run(state_dir, tmp_path, monkeypatch):
    """Inline, a resource is made once for the whole run and torn down at its end."""
    log = tmp_path / "teardown.log"
    monkeypatch.setenv("DAGRUN_TEST_TEARDOWN_LOG", str(log))
    with dagrun.run(resource("faults_resources"), executor="inline", state_dir=state_dir,
                    log_format="none") as result:
        rows = list(result["predict"])
        assert result["query"] == f"connection-{os.getpid()}"
    assert {(r[0], r[1]) for r in rows} == {(os.getpid(), os.getpid())}
    assert len({r[2] for r in rows}) == 1
    assert log.read_text() == f"closed {os.getpid()}\n"


@pytest.mark.slow
def test_worker_init_generator_torn_down_in_workers(state_dir, tmp_path, monkeypatch):
    """A generator resource's teardown runs when its worker exits at the end of the run."""
    log = tmp_path / "teardown.log"
    monkeypatch.setenv("DAGRUN_TEST_TEARDOWN_LOG", str(log))
    with dagrun.run(resource("faults_resources"), workers=2, start_method="fork",
                    state_dir=state_dir, log_format="none") as result:
        pid = int(result["query"].split("-")[1])
    assert log.read_text() == f"closed {pid}\n"


def test_worker_init_parameters_are_neither_inputs_nor_params():
    """The graph resolves a resource parameter apart; --param cannot set it; bad inits are named."""
    pipe = dagrun.run.__globals__["load"](resource("faults_resources"))
    graph = build_graph(pipe)
    node = graph.nodes["predict"]
    assert node.resources == {"model": "model"}
    assert "model" not in node.inputs and "model" not in node.params
    assert set(graph.resources) == {"model", "connection"}
    with pytest.raises(dagrun.ValidationError, match="unknown parameter 'model'"):
        build_graph(pipe, params={"model": "x"})

    def needs(path):
        return path

    def uses(needs):
        return needs

    bad = dagrun.Pipeline([dagrun.stage(uses), dagrun.worker_init(needs)])
    with pytest.raises(dagrun.ValidationError) as info:
        build_graph(bad)
    assert "worker resource 'needs' takes required parameter(s) 'path'" in str(info.value)


def test_a_parameter_that_does_not_pickle_is_refused_before_running(state_dir):
    """A parameter value no worker process could receive is a validation error."""
    with pytest.raises(dagrun.ValidationError, match="cannot be sent to a worker process"):
        run_faults("fork", state_dir, ["takes_param"], params={"value": threading.Lock()})


# -- errors that are hard to report --------------------------------------------------
HOW = [pytest.param(("inline", None), id="inline"), *[
    pytest.param(("local", m), id=m) for m in ("fork", "forkserver", "spawn")]]


@pytest.mark.parametrize("how", HOW)
def test_an_error_whose_str_raises_is_the_stages_own(how, state_dir):
    """A ValueError subclass whose __str__ raises fails its stage as itself, not as a crash."""
    executor, method = how
    with dagrun.run(resource("local_faults"), targets=["raises_bad_value", "mentions_read_only"],
                    executor=executor, start_method=method, keep_going=True, workers=2,
                    state_dir=state_dir, log_format="none") as result:
        bad = result.errors["raises_bad_value"]
        plain = result.errors["mentions_read_only"]
    assert type(bad) is dagrun.StageFailed
    assert "BadValue" in str(bad) and "__str__ is broken" in str(bad)
    assert "wrote into one of its inputs" not in str(plain)  # it only mentions "read-only"
    assert "the settings file is read-only" in str(plain)


def test_a_write_into_a_read_only_array_is_explained(state_dir):
    """numpy's read-only error gets the note that inputs are read-only views."""
    with dagrun.run(resource("local_faults"), targets=["writes_input"], executor="inline",
                    state_dir=state_dir, log_format="none") as result:
        error = result.errors["writes_input"]
    assert "wrote into one of its inputs" in str(error)
