"""Where a task goes: pure policies over plain records, tested without a process.

Three policies, applied in this order by ``place``:

- **keep**: an input kept in the worker that made it (``store.held``) pins
  the task to that worker, busy or idle; if that worker is gone the task
  cannot run (``Placement.lost``).
- **near**: otherwise an idle worker is preferred, the one that wrote most of
  the task's large input segments (it still has them mapped and reads them
  without faulting a page in), ties going to the worker that went idle last;
  then a new worker while the pool is below its size; then the busy worker
  with the shortest queue among those that may queue (``may_queue``: only
  behind tasks known to be short).
- **chain**: ``may_chain`` says whether a task may wait in a worker right
  behind the one task it runs (its one pending input), handed that result there.

``Writers`` is the map the *near* policy reads: large segment -> pid of the
worker that wrote it; entries leave when the segment is released or its
writer dies, so it holds only live segments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ...store import HELD, Handle
from ...store.config import segment_refs
from ..base import Batched, Output, Ref, TaskSpec, output_handles


class WorkerView(NamedTuple):
    """What placement needs to know of one worker (a tuple: one is built per busy worker
    each time the pool counts its room)."""

    pid: int
    held: int = 0  # tasks it holds: the running one and those queued behind it
    held_s: float | None = 0.0  # their typical wall times (s) summed; None if one is unknown
    ready: bool = True  # has finished starting up
    tasks_done: int = 0


@dataclass(frozen=True)
class Limits:
    """The pool's bounds that placement respects."""

    prefetch: int  # tasks a worker may hold: the running one and those queued behind it
    short_s: float  # only tasks typically shorter than this get one queued behind them
    max_tasks: int | None = None  # a worker is recycled after this many tasks


@dataclass(frozen=True)
class Placement:
    """Where a task goes: exactly one of the fields is set."""

    idle: int | None = None  # index into the idle workers
    busy: int | None = None  # pid of a busy worker to queue behind (or holding its input)
    new: bool = False  # start a new worker
    lost: int | None = None  # pid of the gone worker that kept its input


def held_by(spec: TaskSpec) -> int | None:
    """The pid of the worker keeping one of ``spec``'s inputs (see ``store.held``), if any."""
    for output in spec.inputs.values():
        if isinstance(output, Handle) and output.transport == HELD:
            return output.payload.pid
    return None


class WrittenBy(Protocol):
    """Which worker wrote a segment: ``Writers``, or a plain dict in a test."""

    def __len__(self) -> int: ...
    def get(self, name: str, default: int | None = None, /) -> int | None: ...


def place(
    spec: TaskSpec,
    idle: Sequence[int],
    busy: Sequence[WorkerView],
    *,
    size: int,
    limits: Limits,
    writers: WrittenBy,
) -> Placement:
    """Where ``spec`` goes, given the idle workers' pids (last idle last) and the busy ones.

    The caller only places a task when there is room (an idle worker, room to
    start one, or a busy worker that ``may_queue``), except a task pinned by
    *keep*, which goes to its worker whatever it is doing.
    """
    holder = held_by(spec)
    if holder is not None:
        if holder in idle:
            return Placement(idle=list(idle).index(holder))
        if any(view.pid == holder for view in busy):
            return Placement(busy=holder)
        return Placement(lost=holder)
    if idle:
        return Placement(idle=nearest(idle, input_segments(spec.inputs.values()), writers))
    if len(busy) < size:
        return Placement(new=True)
    queueable = [view for view in busy if may_queue(view, limits)]
    if not queueable:  # no room: the caller checks ``free_slots`` first; queue anyway
        return Placement(busy=busy[0].pid)
    return Placement(busy=min(queueable, key=lambda view: (view.held_s, view.held)).pid)


def input_segments(inputs: Iterable[Output | object]) -> list[tuple[str, int]]:
    """(segment name, size) of every stored segment behind ``inputs``."""
    found: list[tuple[str, int]] = []
    for output in inputs:
        if not isinstance(output, Handle | Batched):
            continue  # a Pending input, or a cluster engine's reference
        for handle in output_handles(output):
            if isinstance(handle, Handle):
                found.extend((ref.name, ref.size) for ref in segment_refs(handle))
    return found


def nearest(idle: Sequence[int], segments: Iterable[tuple[str, int]],
            writers: WrittenBy) -> int:
    """Index in ``idle`` of the worker that wrote most of ``segments``' bytes.

    Ties, and tasks without large inputs, take the worker that went idle last.
    """
    best, best_bytes = len(idle) - 1, 0
    if len(idle) < 2 or not writers:
        return best
    made: dict[int, int] = {}
    for name, size in segments:
        pid = writers.get(name)
        if pid is not None:
            made[pid] = made.get(pid, 0) + size
    for index, pid in enumerate(idle):
        if made.get(pid, 0) > best_bytes:
            best, best_bytes = index, made[pid]
    return best


def may_queue(view: WorkerView, limits: Limits) -> bool:
    """Queue behind this worker only while what it holds is known to add up to a short time.

    Prefetching saves the driver round trip between short tasks, and lets
    one write carry several of them; behind a long task it would leave the
    queued one waiting while other workers idle.
    """
    if view.held >= limits.prefetch or not view.ready:
        return False
    if limits.max_tasks and view.tasks_done + view.held >= limits.max_tasks:
        return False
    return view.held_s is not None and view.held_s <= limits.short_s


def may_chain(view: WorkerView, limits: Limits) -> bool:
    """A task may wait behind the one task this worker runs (never behind a queue)."""
    if view.held != 1:
        return False
    return not (limits.max_tasks and view.tasks_done + 2 > limits.max_tasks)


class Writers:
    """Large segment name -> pid of the worker that wrote it (the *near* policy's map)."""

    def __init__(self, min_bytes: int) -> None:
        self.min_bytes = min_bytes
        self._pid: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._pid)

    def get(self, name: str, default: int | None = None) -> int | None:
        return self._pid.get(name, default)

    def wrote(self, ref: Ref | None, pid: int) -> None:
        """``pid`` wrote ``ref``: remember its segments if the value is large."""
        if isinstance(ref, Handle) and ref.nbytes >= self.min_bytes:
            for seg in segment_refs(ref):
                self._pid[seg.name] = pid

    def released(self, ref: Ref) -> None:
        """``ref``'s segments are gone."""
        if isinstance(ref, Handle):
            for seg in segment_refs(ref):
                self._pid.pop(seg.name, None)

    def died(self, pid: int) -> None:
        """Worker ``pid`` is gone: nobody has these segments mapped any more."""
        for name in [n for n, p in self._pid.items() if p == pid]:
            del self._pid[name]
