"""Placement policies (keep, near, chain) as pure functions: no process, no pipe."""

from __future__ import annotations

import numpy as np

from dagrun.control.scheduler import TaskKey
from dagrun.executors.base import Pending, TaskSpec
from dagrun.executors.local.exits import describe_exit, describe_startup_hang
from dagrun.executors.local.placement import (
    Limits,
    Placement,
    WorkerView,
    Writers,
    held_by,
    may_chain,
    may_queue,
    nearest,
    place,
)
from dagrun.store import HELD, Handle
from dagrun.store.config import ArrayPayload, SegmentRef

LIMITS = Limits(prefetch=2, short_s=0.005)
MIB = 1 << 20


def segment_handle(name: str, size: int) -> Handle:
    """A stored array in segment ``name`` of ``size`` bytes."""
    payload = ArrayPayload(SegmentRef(name, "shm", size), 0, np.dtype("float64"), (size // 8,),
                           (8,))
    return Handle("shm", size, payload)


class HeldPayload:
    def __init__(self, pid: int) -> None:
        self.pid = pid


def spec(**inputs) -> TaskSpec:
    return TaskSpec(TaskKey("s"), 1, inputs, {}, 0.0)


def test_keep_pins_a_task_to_the_worker_holding_its_input():
    """A held input sends the task to its worker, idle or busy; a gone worker means lost."""
    task = spec(a=Handle(HELD, 8 * MIB, HeldPayload(42)))
    assert held_by(task) == 42
    kw = {"size": 2, "limits": LIMITS, "writers": {}}
    assert place(task, [7, 42], [], **kw) == Placement(idle=1)
    assert place(task, [], [WorkerView(42, 1, 10.0)], **kw) == Placement(busy=42)
    assert place(task, [7], [WorkerView(8)], **kw) == Placement(lost=42)


def test_near_prefers_the_idle_worker_that_wrote_most_input_bytes():
    """The writer of most input bytes wins; otherwise the worker that went idle last."""
    writers = {"big": 11, "small": 12}
    assert nearest([11, 12, 13], [("big", 8 * MIB), ("small", MIB)], writers) == 0
    assert nearest([11, 12, 13], [("other", MIB)], writers) == 2
    assert nearest([11, 12, 13], [], {}) == 2
    task = spec(a=segment_handle("big", 8 * MIB))
    where = place(task, [13, 11], [], size=2, limits=LIMITS, writers=writers)
    assert where == Placement(idle=1)


def test_a_new_worker_before_queueing_behind_a_busy_one():
    """Below the pool's size a worker is started; at size, the shortest queue that may queue."""
    busy = [WorkerView(1, 1, 0.001), WorkerView(2, 2, 0.002)]
    assert place(spec(), [], busy, size=3, limits=LIMITS, writers={}) == Placement(new=True)
    assert place(spec(), [], busy, size=2, limits=LIMITS, writers={}) == Placement(busy=1)


def test_may_queue_only_behind_known_short_tasks():
    """Queueing needs a ready worker, room, known tasks that add up to a short time, and no
    recycling soon."""
    assert may_queue(WorkerView(1, 1, 0.001), LIMITS)
    assert not may_queue(WorkerView(1, 1, 0.5), LIMITS)
    assert not may_queue(WorkerView(1, 1, None), LIMITS)
    assert not may_queue(WorkerView(1, 2, 0.002), LIMITS)
    assert not may_queue(WorkerView(1, 1, 0.001, ready=False), LIMITS)
    recycled = Limits(prefetch=2, short_s=0.005, max_tasks=3)
    assert not may_queue(WorkerView(1, 1, 0.001, tasks_done=2), recycled)
    deep = Limits(prefetch=16, short_s=0.005)
    assert may_queue(WorkerView(1, 8, 0.004), deep)
    assert not may_queue(WorkerView(1, 8, 0.006), deep)  # short each, too long together


def test_may_chain_behind_the_one_running_task():
    """A link waits behind a lone running task, unless the worker is recycled before it runs."""
    assert may_chain(WorkerView(1, 1, 3.0), LIMITS)
    assert not may_chain(WorkerView(1, 2, 3.1), LIMITS)
    assert not may_chain(WorkerView(1, 1, 3.0, tasks_done=1), Limits(2, 0.005, max_tasks=2))
    assert held_by(spec(a=Pending("x"))) is None


def test_writers_remembers_large_segments_until_released_or_dead():
    """Only large results are recorded; release and a writer's death remove them."""
    writers = Writers(min_bytes=MIB)
    writers.wrote(segment_handle("small", 1024), 5)
    writers.wrote(segment_handle("a", 2 * MIB), 5)
    writers.wrote(segment_handle("b", 2 * MIB), 6)
    assert len(writers) == 2 and writers.get("a") == 5
    writers.released(segment_handle("a", 2 * MIB))
    assert len(writers) == 1
    writers.died(6)
    assert len(writers) == 0


def test_exit_descriptions_quote_the_last_output():
    """A crash's description ends with the worker's last lines, indented."""
    text = describe_exit(9, 3, output=["one", "two"])
    assert text == ("its worker process (pid 9) exited with code 3 while running it; "
                    "its last output:\n  one\n  two")
    hang = describe_startup_hang(9, 30.0)
    assert "did not finish starting up within 30 s" in hang
