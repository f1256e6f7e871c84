"""The ``ray`` executor on a real local Ray: one session for the module (Ray starts slowly),
driven as the runner drives executors; Ctrl-C on a driver that started Ray itself."""

from __future__ import annotations

import time

import psutil
import pytest

from dagrun.errors import UsageError
from dagrun.executors import create
from dagrun.executors.base import Started, TaskLog
from tests.conftest import children, shm_entries
from tests.test_dask import interrupt
from tests.test_remote import context_for, drive

pytestmark = pytest.mark.slow  # every test here starts processes

ray = pytest.importorskip("ray")


@pytest.fixture(autouse=True)
def no_leaks():
    """No dagrun segment in /dev/shm; Ray's processes are checked when the session ends."""
    before = shm_entries()
    yield
    assert not shm_entries() - before


@pytest.fixture(scope="module")
def session():
    """One local Ray of two CPUs for every test here; nothing of it survives the module."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()
        deadline = time.monotonic() + 20
        while children() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not children(), [psutil.Process(p).cmdline()[:2] for p in children()]


def test_ray_runs_a_map_with_logs(session, tmp_path):
    """A mapped stage and its consumer run as Ray tasks; printed and logged lines come back."""
    graph, context = context_for("remote_cases", tmp_path, targets=["total", "second_token"])
    exe = create("ray", context)
    try:
        assert exe.workers == 2
        driven = drive(exe, graph)
    finally:
        exe.close()
    assert driven.values["total"] == 285.0 and not driven.errors
    assert len(driven.outcomes("squared")) == 4
    logs = [(e.stream, e.level, e.message) for e in driven.events if isinstance(e, TaskLog)]
    assert ("stdout", "info", "adding 10 squares") in logs
    assert ("logging", "warning", "this is a warning") in logs
    assert all(isinstance(e.pid, str) for e in driven.events if isinstance(e, Started))
    assert ray.is_initialized()  # the caller's session is left running


def test_worker_killed_mid_task_is_retried_or_fails(session, tmp_path):
    """A SIGKILLed Ray worker fails its task as crashed: retried when allowed, else failed."""
    marker = tmp_path / "marker"
    graph, context = context_for("remote_cases", tmp_path, targets=["dies_once", "dies"],
                                 params={"marker": str(marker)})
    exe = create("ray", context)
    try:
        driven = drive(exe, graph, budget_s=90)
    finally:
        exe.close()
    first, second = driven.outcomes("dies_once")
    assert first.error is not None and first.error.kind == "crashed" and second.ok
    assert "WorkerCrashedError" in first.error.message
    assert driven.values["dies_once"] != int(marker.read_text())
    assert driven.errors["dies"].error_type == "WorkerCrashed"


def test_timeout_stops_the_task(session, tmp_path):
    """A task past its timeout is reported as a StageTimeout on time; Ray cancels it."""
    graph, context = context_for("remote_cases", tmp_path, targets=["sleeps"])
    exe = create("ray", context)
    started = time.monotonic()
    try:
        driven = drive(exe, graph)
        elapsed = time.monotonic() - started
    finally:
        exe.close()
    info = driven.errors["sleeps"]
    assert info.kind == "timeout" and "worker process running it was stopped" in info.message
    assert elapsed < 3.0


def test_a_stage_no_node_can_run_is_refused(session, tmp_path):
    """A stage asking for 64 GPUs is a UsageError naming it, before anything runs."""
    graph, context = context_for("remote_cases", tmp_path, targets=["needs_gpus"])
    with pytest.raises(UsageError, match=r"stage 'needs_gpus' needs GPU=64"):
        create("ray", context)


def test_ctrl_c_stops_a_ray_the_run_started():
    """Ctrl-C wakes the wait, cancels the task and shuts down the Ray the driver started."""
    code, out, seconds = interrupt("ray", 3.0)
    assert code == 130 and out.startswith("stopped 0"), out
    assert seconds < 30
