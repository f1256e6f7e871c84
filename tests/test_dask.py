"""The ``dask`` executor on real clusters: a LocalCluster of worker processes that the run
starts and closes, and a separately started ``dask scheduler`` with two ``dask worker``
processes on 127.0.0.1 reached by ``address=``; driven as the runner drives executors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dagrun.errors import UsageError
from dagrun.executors import create
from dagrun.executors.base import Started, TaskLog
from tests.conftest import ROOT, children, shm_entries
from tests.test_remote import context_for, drive

pytestmark = pytest.mark.slow  # every test here starts processes

pytest.importorskip("distributed")

DASK = str(Path(sys.executable).with_name("dask"))
_cluster_pids: set[int] = set()  # the module's external cluster: not a leak while it runs


@pytest.fixture(autouse=True)
def no_leaks():
    """No segment in /dev/shm and no process left, other than the module's own cluster."""
    before = shm_entries()
    yield
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and set(children()) - _cluster():
        time.sleep(0.1)
    assert not shm_entries() - before
    assert not set(children()) - _cluster(), f"left running: {children()}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scheduler():
    """The address of a ``dask scheduler`` with two single-threaded ``dask worker``s."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port",
                               address.rsplit(":", 1)[1], "--no-dashboard"], **quiet)]
    for _ in range(2):
        procs.append(subprocess.Popen([DASK, "worker", address, "--nthreads", "1",
                                       "--no-dashboard", "--host", "127.0.0.1"], **quiet))
    import distributed

    with distributed.Client(address, timeout=60, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
    _cluster_pids.update(p.pid for p in procs)
    try:
        yield address
    finally:
        for proc in procs[::-1]:
            proc.send_signal(signal.SIGTERM)
        for proc in procs[::-1]:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _cluster_pids.clear()


def _cluster() -> set[int]:
    """The external cluster's processes, with the worker processes its nannies started."""
    pids = set(_cluster_pids)
    for pid in _cluster_pids:
        try:
            pids.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            pass
    return pids


def test_local_cluster_runs_a_map_with_logs_and_closes(tmp_path):
    """A LocalCluster of two processes runs a mapped stage; logs come back; nothing survives."""
    graph, context = context_for("remote_cases", tmp_path, targets=["total"])
    exe = create("dask", context)
    try:
        assert exe.workers == 2 and exe.cluster is not None
        driven = drive(exe, graph)
    finally:
        exe.close()
    assert driven.values == {"total": 285.0} and not driven.errors
    assert len(driven.outcomes("squared")) == 4
    logs = [(e.stream, e.level, e.message) for e in driven.events if isinstance(e, TaskLog)]
    assert ("stdout", "info", "adding 10 squares") in logs
    assert ("logging", "warning", "this is a warning") in logs
    started = [e for e in driven.events if isinstance(e, Started)]
    assert all(str(e.pid).startswith("tcp://127.0.0.1:") for e in started)
    assert all(e.metrics.transport == "dask" for e in driven.outcomes("total"))


def test_worker_init_runs_once_per_worker_process(tmp_path):
    """Two stages on one worker process receive the same @worker_init value."""
    graph, context = context_for("remote_cases", tmp_path, targets=["second_token"],
                                 workers=1)
    exe = create("dask", context)
    try:
        driven = drive(exe, graph)
    finally:
        exe.close()
    first, second = driven.values["second_token"]
    assert first == second


def test_external_scheduler_by_address(scheduler, tmp_path):
    """address= reaches a running scheduler; tasks run on its two workers."""
    graph, context = context_for("hello", tmp_path, params={"name": "dask"}, address=scheduler)
    exe = create("dask", context)
    try:
        assert exe.workers == 2 and exe.cluster is None
        driven = drive(exe, graph)
    finally:
        exe.close()
    assert driven.values == {"report": "hello, dask (11 characters)"}


def test_worker_killed_mid_task_is_retried_or_fails(scheduler, tmp_path):
    """A SIGKILLed worker fails its task as crashed: retried when allowed, else failed.

    One death at a time: Dask counts a task assigned to a worker that is dying,
    before the scheduler has noticed, as killed by it too.
    """
    marker = tmp_path / "marker"
    for target in ("dies_once", "dies"):
        graph, context = context_for("remote_cases", tmp_path, targets=[target],
                                     params={"marker": str(marker)}, address=scheduler)
        exe = create("dask", context)
        try:
            driven = drive(exe, graph, budget_s=60)
        finally:
            exe.close()
        if target == "dies_once":
            first, second = driven.outcomes("dies_once")
            assert first.error is not None and first.error.kind == "crashed"
            assert "KilledWorker" in first.error.message and second.ok
            assert driven.values["dies_once"] != int(marker.read_text())
    assert driven.errors["dies"].error_type == "WorkerCrashed"


def test_timeout_is_reported_on_time(scheduler, tmp_path):
    """A task past its timeout is reported as a StageTimeout at once, then cancelled."""
    graph, context = context_for("remote_cases", tmp_path, targets=["sleeps"],
                                 params={"seconds": 4.0}, address=scheduler)
    exe = create("dask", context)
    started = time.monotonic()
    try:
        driven = drive(exe, graph)
        elapsed = time.monotonic() - started
    finally:
        exe.close()
    info = driven.errors["sleeps"]
    assert info.kind == "timeout" and "timed out after 1 s" in info.message
    assert elapsed < 3.0


def test_a_stage_no_worker_can_run_is_refused(scheduler, tmp_path):
    """A stage asking for GPUs the workers do not declare is a UsageError before running."""
    graph, context = context_for("remote_cases", tmp_path, targets=["needs_gpus"],
                                 address=scheduler)
    with pytest.raises(UsageError, match=r"stage 'needs_gpus' needs GPU=64"):
        create("dask", context)


INTERRUPT = """
import os, signal, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {root!r})
from dagrun.executors import create
from dagrun.executors.base import TaskSpec
from dagrun.control.scheduler import TaskKey
from tests.test_remote import context_for

read, write = os.pipe()
os.set_blocking(write, False)
signal.set_wakeup_fd(write)
signal.signal(signal.SIGINT, lambda *_: None)
graph, context = context_for("remote_cases", Path(tempfile.mkdtemp()), targets=["sleeps"])
exe = create(sys.argv[1], context)
exe.submit(TaskSpec(TaskKey("sleeps"), 1, {{}}, {{"seconds": 60.0}}, time.time()))
print("submitted", flush=True)
events = exe.wait(None, read)
began = time.monotonic()
exe.shutdown(cancel=True)
exe.close()
print("stopped", len(events), round(time.monotonic() - began, 1), flush=True)
sys.exit(130)
"""


def interrupt(engine: str, settle_s: float) -> tuple[int, str, float]:
    """Run a driver that waits on a long task; Ctrl-C it; (exit code, output, seconds).

    Every process the driver started (the engine's) must be gone soon after it exits.
    """
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPT.format(root=str(ROOT)), engine],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "submitted"
    time.sleep(settle_s)  # the task is running by now
    started = psutil.Process(proc.pid).children(recursive=True)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    seconds = time.monotonic() - began
    _, alive = psutil.wait_procs(started, timeout=20)
    assert not alive, f"the driver left {[p.pid for p in alive]} running"
    return proc.returncode, out, seconds


def test_ctrl_c_cancels_and_closes_the_cluster():
    """Ctrl-C wakes the wait; the run's tasks are cancelled and its cluster closed."""
    code, out, seconds = interrupt("dask", 2.0)
    assert code == 130 and out.startswith("stopped 0"), out
    assert seconds < 20


def test_a_chain_whose_link_is_retried_runs_each_later_link_once(tmp_path):
    """Links handed to Dask ahead of their inputs wait for a failed link's retry, and run once."""
    import json

    import dagrun

    with dagrun.run(str(ROOT / "tests" / "resources" / "chain_retry.py"), executor="dask",
                    workers=2, state_dir=tmp_path, log_format="none", no_cache=True,
                    params={"marker": str(tmp_path / "marker")}) as result:
        assert result.ok and result["fourth"] == 30
        events = [json.loads(x) for x in result.events_path.read_text().splitlines()]
    finished = [e["stage"] for e in events if e["event"] == "task_finished"]
    assert sorted(finished) == ["first", "fourth", "second", "third"]
    failed = [e for e in events if e["event"] == "task_failed"]
    assert [(e["stage"], e["attempt"]) for e in failed] == [("second", 1)]
