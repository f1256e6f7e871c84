"""The local pool at the executor level: deaths after a result, start-up bounds, the
writers map, signals only in ``kill_all``, and never the driver's pid for a task
that did not start."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from dagrun import store
from dagrun.control.scheduler import TaskKey
from dagrun.executors.base import Started, TaskLog, TaskOutcome, TaskSpec
from dagrun.executors.local import LocalExecutor
from dagrun.pipeline.pipeline import ModuleSource
from dagrun.settings import Tuning
from tests.helpers import wait_until
from tests.resources import local_faults, output

pytestmark = pytest.mark.timeout(60)

FUNCS = {"chatty_result": local_faults.chatty_result, "large": local_faults.large,
         "allocates": local_faults.allocates,
         "quiet": output.quiet, "hangs": output.hangs_after_printing,
         "exits": output.exits_after_printing}


class Pool:
    """A LocalExecutor over a fresh store, shut down and closed at the end."""

    def __init__(self, tmp_path: Path, **kwargs) -> None:
        self.config = store.StoreConfig.for_run("pool", tmp_path)
        self.owner = store.Store(self.config)
        kwargs.setdefault("workers", 1)
        kwargs.setdefault("start_method", "fork")
        self.exe = LocalExecutor(FUNCS, self.config, **kwargs)
        self.events: list = []

    def submit(self, name: str, **params) -> int | None:
        return self.exe.submit(TaskSpec(TaskKey(name), 1, {}, params, time.time()))

    def outcome(self, name: str, within: float = 20.0) -> TaskOutcome:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for event in self.events:
                if isinstance(event, TaskOutcome) and event.key.stage == name:
                    return event
            self.events += self.exe.wait(1.0)
        raise AssertionError(f"no outcome of {name}: {self.events}")

    def close(self) -> None:
        self.exe.shutdown(cancel=True)
        self.owner.close()


@pytest.fixture
def pool(tmp_path):
    made: list[Pool] = []

    def make(**kwargs) -> Pool:
        made.append(Pool(tmp_path / str(len(made)), **kwargs))
        return made[-1]

    yield make
    for p in made:
        p.close()


def zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_result_written_just_before_death_is_an_outcome(method, pool):
    """A worker killed after writing its lines and result: both are read, nothing crashed."""
    p = pool(start_method=method)
    pid = p.submit("chatty_result", count=200)
    assert pid is not None
    time.sleep(1.5 if method == "fork" else 3.0)  # the result is in the pipe by now
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: zombie(pid), 5, message="the killed worker to die")
    outcome = p.outcome("chatty_result")
    assert outcome.ok, outcome.error
    logs = [e for e in p.events if isinstance(e, TaskLog)]
    assert [e.message for e in logs] == [f"line {i}" for i in range(200)]
    assert p.events.index(outcome) == len(p.events) - 1 or all(
        p.events.index(e) < p.events.index(outcome) for e in logs)


@pytest.mark.slow
def test_a_worker_that_never_gets_ready_is_bounded(pool):
    """A task without a timeout still fails when its worker's imports hang past the bound."""
    p = pool(sources=[ModuleSource("tests.resources.slow_import")],
             numbers=Tuning(startup_grace_s=1.0))
    started = time.monotonic()
    p.submit("quiet")
    outcome = p.outcome("quiet")
    assert time.monotonic() - started < 10
    assert outcome.error is not None and outcome.error.error_type == "WorkerCrashed"
    assert "did not finish starting up within 1 s" in outcome.error.message


@pytest.mark.slow
def test_writers_map_is_pruned_on_release_and_death(pool):
    """Large segments leave the writers map when released, or when their writer dies."""
    p = pool(workers=2)
    p.submit("large")
    first = p.outcome("large")
    assert first.ok and len(p.exe.writers) == 1
    p.exe.release(first.handle)
    assert len(p.exe.writers) == 0
    p.events.clear()
    pid = p.submit("large")
    second = p.outcome("large")
    assert len(p.exe.writers) == 1
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while len(p.exe.writers) and time.monotonic() < deadline:
        p.events += p.exe.wait(0.2)
    assert len(p.exe.writers) == 0
    p.exe.release(second.handle)


def test_a_task_that_cannot_start_names_no_pid(pool):
    """An argument that does not pickle fails the task without a Started or the driver's pid."""
    p = pool()
    assert p.exe.submit(TaskSpec(TaskKey("quiet"), 1, {}, {"x": threading.Lock()},
                                 time.time())) is None
    outcome = p.outcome("quiet")
    assert outcome.error is not None and "could not be pickled" in outcome.error.message
    assert outcome.metrics.worker_pid != os.getpid()
    assert not [e for e in p.events if isinstance(e, Started)]


@pytest.mark.slow
def test_kill_all_only_signals(pool):
    """kill_all returns at once and reaps nothing, not even a worker that already died."""
    p = pool(workers=3)
    pids = [p.submit("hangs"), p.submit("hangs"), p.submit("exits")]
    wait_until(lambda: zombie(pids[2]), 10, message="the exiting worker to exit")
    started = time.monotonic()
    p.exe.kill_all()
    assert time.monotonic() - started < 0.05
    wait_until(lambda: all(zombie(pid) for pid in pids), 5, message="every worker to die")
    # every one is dead and still unreaped: the loop's wait() reaps them, not kill_all
    assert all(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE for pid in pids)


def test_no_private_multiprocessing_attributes():
    """The executors use multiprocessing's public API only (no ``_popen``)."""
    import dagrun.executors

    paths = list(Path(dagrun.executors.__file__).parent.rglob("*.py"))
    assert len(paths) > 5
    for path in paths:
        assert "._popen" not in path.read_text() and '"_popen"' not in path.read_text(), path


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_rss_growth_is_the_tasks_own(method, pool):
    """rss_growth_bytes is the task's peak over its start; a quiet task grows by little."""
    p = pool(start_method=method)
    p.submit("allocates", mib=64)
    grown = p.outcome("allocates").metrics
    p.submit("quiet")
    quiet = p.outcome("quiet").metrics
    assert grown.rss_growth_bytes >= 60 << 20
    assert grown.max_rss_bytes >= grown.rss_growth_bytes
    assert quiet.rss_growth_bytes < 8 << 20
    assert quiet.max_rss_bytes < grown.max_rss_bytes  # the peak was reset between tasks


def test_inbox_reassembles_messages_split_and_joined_across_reads():
    """Messages come out whole and in order however the pipe cuts them: several in one
    read, one across several reads, empty ones, and the long (over 2 GiB) header form."""
    import random
    import struct

    from dagrun.executors.local import framing

    rng = random.Random(7)
    messages = [rng.randbytes(rng.choice([0, 1, 7, 300, 5000, 70_000])) for _ in range(400)]
    long_form = b"long header"
    r, w = os.pipe()

    def write() -> None:
        for message in messages:
            framing.send(w, message)
        framing.write_all(w, struct.pack("!i", -1) + struct.pack("!Q", len(long_form)) + long_form)
        os.close(w)

    writer = threading.Thread(target=write)
    writer.start()
    inbox, got = framing.Inbox(r), []
    try:
        while True:
            got.append(inbox.next())
    except EOFError:
        pass
    finally:
        writer.join()
        os.close(r)
    assert got == [*messages, long_form]


@pytest.mark.slow
def test_wait_hands_over_its_events(pool):
    """The list ``wait`` returns is the caller's: later events go to the next call only
    (the pool's parts share one events list, kept and emptied, never handed out)."""
    p = pool()

    def until_outcome() -> list:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            events = p.exe.wait(1.0)
            if any(isinstance(e, TaskOutcome) for e in events):
                return events
        raise AssertionError("no outcome")

    p.submit("quiet")
    first = until_outcome()
    kept = list(first)
    p.submit("quiet")
    second = until_outcome()
    assert first == kept and first is not second
    assert not any(e in first for e in second)
    assert p.exe.wait(0) == []
