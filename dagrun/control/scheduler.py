"""The run's state machine over the graph: pure transitions, no I/O, no clock.

State (stage names are strings; a task is ``TaskKey(stage, batch)``):

    waiting    {stage: set of inputs not yet done}
    ready      stages whose inputs are all done, not yet taken (highest priority first,
               ties in pipeline order)
    running    {stage: batches still outstanding}   (1 for an ordinary stage)
    done       stages whose result exists
    failed     stages that failed for good
    skipped    {stage: reason}  upstream_failed | stopped
    unfinished {stage: consumers not yet finished}  -> release when it reaches 0

Transitions return what the runner must act on (``Step``): stages that became
ready, results that can be released, stages skipped. A stage is ready the
moment its last input is done; there are no levels or waves. With
``keep_going`` a failure skips only what is downstream of it; without, the
scheduler stops handing out work and the running tasks drain.

The scheduler is the only writer of this state, and the runner the only
caller of its transitions. Everyone else (the planner) asks the small queries
below (``is_running``, ``consumers``, ``missing``, ``waits_only_on``...) and
reads nothing else; the tests read the whole state to assert it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..executors.base import TaskKey


class StageStates(Protocol):
    """The scheduler's read-only queries: all the planner may know of the stages' states."""

    @property
    def stopped(self) -> bool: ...
    def is_running(self, stage: str) -> bool: ...
    def is_done(self, stage: str) -> bool: ...
    def is_waiting(self, stage: str) -> bool: ...
    def is_kept(self, stage: str) -> bool: ...
    def consumers(self, stage: str) -> Sequence[str]: ...
    def missing(self, stage: str) -> Collection[str]: ...
    def waits_only_on(self, user: str, stage: str) -> bool: ...


@dataclass
class Step:
    """What a transition asks of the runner."""

    ready: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    stage_done: bool = False


NOTHING = Step()  # "nothing changed", shared: readers never mutate a step they are given


class Scheduler:
    """Decides what may run next; told what finished or failed."""

    def __init__(
        self,
        inputs: Mapping[str, Collection[str]],
        order: Sequence[str],
        keep: Collection[str],
        *,
        keep_going: bool = False,
        priority: Mapping[str, float] | None = None,
    ) -> None:
        self.order = {name: i for i, name in enumerate(order)}
        self.priority = priority if priority is not None else {}  # read, never changed
        # Never changed (``waiting`` holds what is still missing): a stage without inputs
        # shares the one empty frozenset.
        self.inputs = {name: frozenset(inputs.get(name, ())) for name in order}
        self.consumers_of: dict[str, list[str]] = {}  # only stages that have consumers
        for name in order:
            for upstream in self.inputs[name]:
                self.consumers_of.setdefault(upstream, []).append(name)
        self.keep = set(keep)
        self.keep_going = keep_going
        self.waiting = {name: set(deps) for name, deps in self.inputs.items() if deps}
        self.ready: list[str] = sorted(
            (name for name in order if not self.inputs[name]), key=self._rank
        )
        self.running: dict[str, int] = {}
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.skipped: dict[str, str] = {}
        self.unfinished = {name: len(c) for name, c in self.consumers_of.items()}  # left to finish
        self.stopped = False

    # -- queries ---------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Nothing is running and nothing more will be handed out."""
        return not self.running and (self.stopped or not self.ready)

    def is_running(self, stage: str) -> bool:
        """``stage`` was handed out and has neither finished, failed nor been dropped."""
        return stage in self.running

    def is_done(self, stage: str) -> bool:
        """``stage``'s result exists."""
        return stage in self.done

    def is_waiting(self, stage: str) -> bool:
        """``stage`` still waits on some of its inputs."""
        return stage in self.waiting

    def is_kept(self, stage: str) -> bool:
        """``stage``'s result is requested: it is never released during the run."""
        return stage in self.keep

    def consumers(self, stage: str) -> Sequence[str]:
        """The stages that read ``stage``'s result, in pipeline order (empty for most)."""
        return self.consumers_of.get(stage, ())

    def missing(self, stage: str) -> Collection[str]:
        """The inputs of ``stage`` that are not done yet."""
        return self.waiting.get(stage) or [u for u in self.inputs[stage] if u not in self.done]

    def waits_only_on(self, user: str, stage: str) -> bool:
        """``user`` waits on ``stage`` and on nothing else."""
        return self.waiting.get(user) == {stage}

    def tally(self) -> tuple[int, int]:
        """How many stages are done, and how many failed."""
        return len(self.done), len(self.failed)

    def take_ready(self) -> list[str]:
        """Hand out every ready stage (in pipeline order) and mark it running."""
        if self.stopped:
            return []
        taken, self.ready = self.ready, []
        if len(taken) > 1:
            taken.sort(key=self._rank)
        for name in taken:
            self.running[name] = 1
        return taken

    # -- transitions -----------------------------------------------------
    def set_batches(self, stage: str, count: int) -> None:
        """A mapped stage runs as ``count`` batches (it is done when all are)."""
        self.running[stage] = count

    def finish(self, key: TaskKey) -> Step:
        """A task succeeded; when it completes its stage, unblock its consumers."""
        stage = key.stage
        left = self.running.get(stage)
        if left is None:
            return NOTHING  # a late batch of a stage that already failed
        if left > 1:
            self.running[stage] = left - 1
            return NOTHING
        step = Step()
        del self.running[stage]
        self.done.add(stage)
        step.stage_done = True
        for upstream in self.inputs[stage]:
            self.unfinished[upstream] -= 1
            if self.unfinished[upstream] == 0 and upstream not in self.keep:
                step.released.append(upstream)
        if not self.unfinished.get(stage) and stage not in self.keep:
            step.released.append(stage)
        for consumer in self.consumers_of.get(stage, ()):
            deps = self.waiting.get(consumer)
            if deps is None:
                continue
            deps.discard(stage)
            if not deps:
                del self.waiting[consumer]
                step.ready.append(consumer)
        self.ready.extend(step.ready)
        return step

    def fail(self, key: TaskKey) -> Step:
        """A task failed for good: its stage fails and everything downstream is skipped."""
        step = Step()
        stage = key.stage
        if stage not in self.running:
            return step
        del self.running[stage]
        self.failed.add(stage)
        for upstream in self.inputs[stage]:
            self.unfinished[upstream] -= 1
            if self.unfinished[upstream] == 0 and upstream not in self.keep:
                step.released.append(upstream)
        pending = list(self.consumers_of.get(stage, ()))
        while pending:
            name = pending.pop()
            if name in self.skipped or name in self.done or name in self.failed:
                continue
            self.skipped[name] = step.skipped[name] = "upstream_failed"
            self.waiting.pop(name, None)
            if name in self.ready:
                self.ready.remove(name)
            for upstream in self.inputs[name]:
                if upstream in self.failed or upstream in self.skipped:
                    continue
                self.unfinished[upstream] -= 1
                done_with = self.unfinished[upstream] == 0 and upstream in self.done
                if done_with and upstream not in self.keep:
                    step.released.append(upstream)
            pending.extend(self.consumers_of.get(name, ()))
        if not self.keep_going:
            step.skipped.update(self.stop())
        return step

    def drop(self, stage: str) -> Step:
        """A stage handed out but never started is abandoned (stopped): free what it read."""
        step = Step()
        if stage not in self.running:
            return step
        del self.running[stage]
        self.skipped[stage] = step.skipped[stage] = "stopped"
        for upstream in self.inputs[stage]:
            self.unfinished[upstream] -= 1
            if self.unfinished[upstream] == 0 and upstream not in self.keep:
                step.released.append(upstream)
        return step

    def _rank(self, name: str) -> tuple[float, int]:
        return (-self.priority.get(name, 0.0), self.order[name])

    def stop(self) -> dict[str, str]:
        """Hand out nothing more; every stage not yet started is skipped as ``stopped``."""
        self.stopped = True
        skipped = {}
        for name in list(self.ready) + list(self.waiting):
            if name not in self.skipped:
                self.skipped[name] = skipped[name] = "stopped"
        self.ready.clear()
        self.waiting.clear()
        return skipped
