"""Planning: turn ready stages into task specs, and failures into retries.

    ready stage ─▶ cache hit? ──yes──▶ FromCache: the loop adopts the entry, the stage is done
                      │ no
                      ├─ ordinary stage ─▶ one TaskSpec (keep? placement record)
                      └─ mapped stage ───▶ one TaskSpec per batch (policies.batch_ranges),
                                              │      and Batches(count) for the loop
                                              │
    queue: by bottom level, then arrival ────◀┘      retries wait in ``delayed`` until due
        │
        └─▶ pop_admitted: the first spec whose predicted memory fits beside the running ones

Priorities and memory predictions come from earlier runs of the pipeline
(``estimates``), else from the DAG's shape and ``@stage(memory=...)``. A task
whose worker the out-of-memory killer ended (``ErrorInfo.cause == OOM``, set
where the death is described) is tried once more, alone.

The planner owns the run's queue of specs not yet submitted, the delayed
retries, the consumers chained behind running tasks and the errors kept for
the result. It changes no other state: what it decides about a stage is a
record from ``decisions`` that the runner applies (to the scheduler, the
ledger, the reporter), and it learns the stages' states through the
scheduler's read-only queries (``StageStates``). Each decision is a pure
policy from ``policies``; the planner only gathers the records those
policies need.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from typing import Any

from ..executors.base import (
    OOM,
    ErrorInfo,
    Executor,
    Output,
    Pending,
    TaskOutcome,
    TaskSpec,
    output_handles,
)
from ..graph.build import Graph
from ..settings import RunOptions
from ..store import HELD
from . import estimates, policies
from .decisions import Batches, Decision, FailedUnrun
from .incremental import RunCache
from .ledger import Ledger
from .ready import ReadyQueue
from .scheduler import Scheduler, StageStates, TaskKey
from .slicing import InputSlices


def start(
    graph: Graph, options: RunOptions, ledger: Ledger, executor: Executor,
    cache: RunCache | None = None, *, rng: random.Random | None = None,
) -> tuple[Scheduler, Planner]:
    """The run's scheduler and its planner, both ranking stages by the same bottom levels."""
    upstream = {n: graph.upstream(n) for n in graph.selected}
    history = estimates.load(options.state_dir, graph.pipeline.name)
    levels = policies.bottom_levels(upstream, history.wall_s)
    scheduler = Scheduler(upstream, graph.selected, set(graph.targets),
                          keep_going=options.keep_going, priority=levels)
    planner = Planner(graph, options, ledger, executor, scheduler, history=history,
                      levels=levels, cache=cache, rng=rng)
    return scheduler, planner


class Planner:
    """Specs waiting to be submitted, retries waiting to be due, and how each was decided."""

    def __init__(
        self,
        graph: Graph,
        options: RunOptions,
        ledger: Ledger,
        executor: Executor,
        states: StageStates,
        *,
        history: estimates.Estimates,
        levels: dict[str, float],
        cache: RunCache | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.graph, self.options, self.ledger, self.states = graph, options, ledger, states
        self.tuning = options.tuning
        self.estimates = history
        self.levels = levels
        self.budget = options.memory or estimates.default_budget(self.tuning.memory_margin)
        self.reserved: dict[TaskKey, int] = {}
        # Stage -> bytes one of its tasks is predicted to grow by (declared, or from history),
        # fixed for the run; the stages that predict nothing are left out (most are).
        self._needs = {s: g for s, g in self.estimates.growth.items() if g}
        for name in graph.selected:
            declared = graph.nodes[name].stage.options.memory
            if declared:
                self._needs[name] = declared
        self.alone: set[TaskKey] = set()  # retried alone after the out-of-memory killer struck
        self.keeps_values = executor.name == "local" and not options.max_tasks_per_worker
        self.executor = executor
        self.queue = ReadyQueue()
        self.delayed: list[tuple[float, int, TaskSpec]] = []
        self.chained: dict[str, TaskSpec] = {}  # stage -> its task queued behind its input's
        self.slices = InputSlices(executor, self.tuning.slice_max)
        self._shapes: dict[str, tuple[bool, int, list[str]]] = {}
        self.errors: dict[str, ErrorInfo] = {}
        self.sequence = itertools.count()
        self.cache_look_at = 0.0  # when stages waiting on another run's entry are looked at
        self.rng = rng or random.Random()
        self.cache = cache

    # -- planning --------------------------------------------------------
    def plan(self, name: str) -> Decision | None:
        """Plan a stage that became ready: None when it is queued (most are), else what
        the loop must apply (settled from the cache, batches, failed before running)."""
        if self.chained.pop(name, None) is not None:
            return None  # already queued in the worker that made its input
        if self.cache is not None:
            hit = self.cache.lookup(name)
            if hit is not None:
                return hit or None  # adopted, or False: another run makes it, look again later
        node = self.graph.nodes[name]
        if node.map_input is None:
            spec = self.task(TaskKey(name))
            held = bool(spec.inputs) and any(map(_held, spec.inputs.values()))
            self.push(spec, first=held)  # first, while the worker holding its input is idle
            return None
        length = self.ledger[node.inputs[node.map_input]].length
        if length is None:
            info = ErrorInfo(
                "raised", "TypeError",
                f"stage {name!r} maps over {node.map_input!r}, whose value has no length; "
                f"return a list, tuple, array or table from that stage",
            )
            return FailedUnrun(name, info)
        ranges = policies.batch_ranges(length, self.batch_size(name))
        for index, items in enumerate(ranges):
            self.push(self.task(TaskKey(name, index), items=items))
        if ranges:
            self.slices.forget()
        return Batches(name, len(ranges), node.stage.options.concat)

    def task(
        self, key: TaskKey, attempt: int = 1, *, items: tuple[int, int] | None = None,
        after: TaskKey | None = None,
    ) -> TaskSpec:
        """The task ``key`` with its inputs as they are now (``after``'s result: pending)."""
        node = self.graph.nodes[key.stage]
        inputs: dict[str, Output | Pending] = {
            p: Pending(u) if after is not None and u == after.stage else self.ledger[u]
            for p, u in node.inputs.items()
        }
        options = node.stage.options
        timeout = options.timeout or self.options.timeout
        target = self.cache.target(key.stage) if self.cache is not None else None
        if key.batch is None:
            keep = self._may_keep(key.stage)
            return TaskSpec(key, attempt, inputs, node.params, time.time(), timeout=timeout,
                            resources=node.resources, keep=keep, after=after, cache=target)
        first = 0
        assert node.map_input is not None and items is not None
        upstream = node.inputs[node.map_input]
        sliced = self.slices.part(self.ledger[upstream], upstream, items)
        if sliced is not None:
            inputs[node.map_input], first = sliced, items[0]
        return TaskSpec(key, attempt, inputs, node.params, time.time(), node.map_input, items,
                        timeout, node.resources, options.concat, first=first)

    def push(self, spec: TaskSpec, *, first: bool = False) -> None:
        rank = float("-inf") if first else -self.priority(spec.key.stage)
        self.queue.push(rank, spec)

    def priority(self, stage: str) -> float:
        return self.levels.get(stage, 0.0)

    # -- admission -----------------------------------------------------------
    def need(self, spec: TaskSpec) -> int:
        """Bytes ``spec``'s task is predicted to grow by (the whole budget: it runs alone)."""
        if self.alone and spec.key in self.alone:
            return max(self.budget or 0, 1)
        return self._needs.get(spec.key.stage, 0)

    def pop_admitted(self) -> TaskSpec | None:
        """The first queued spec that may start now, memory considered; None if none may."""
        if self.alone and any(key in self.alone for key in self.reserved):
            return None
        passed = []
        found = None
        while self.queue:
            rank, spec = self.queue.pop()
            if self.alone and spec.key in self.alone:
                admitted = not self.reserved  # after every running task, whatever its need
            else:
                need = self.need(spec)
                admitted = need <= 0 or policies.admits(
                    need, sum(self.reserved.values()), self.ledger.live_bytes, self.budget,
                    len(self.reserved))
            if admitted:
                found = spec
                break
            passed.append((rank, spec))
        for rank, spec in reversed(passed):  # back where they were, in their order
            self.queue.put_back(rank, spec)
        return found

    def reserve(self, spec: TaskSpec) -> None:
        """``spec``'s task started: its predicted growth counts until its outcome.

        Every started task is entered, 0 bytes when nothing is predicted, so that a
        task that must run alone also waits for those.
        """
        self.reserved[spec.key] = self.need(spec)

    def unreserve(self, key: TaskKey) -> None:
        self.reserved.pop(key, None)

    def _mapped_length(self, name: str) -> int:
        """How many elements the mapped input of stage ``name`` holds."""
        node = self.graph.nodes[name]
        assert node.map_input is not None  # only a mapped stage has batches
        return self.ledger[node.inputs[node.map_input]].length or 0

    def batch_size(self, name: str) -> int:
        node = self.graph.nodes[name]
        length = self._mapped_length(name)
        return node.stage.options.batch_size or policies.auto_batch_size(
            length, self.options.workers, self.tuning.tasks_per_worker
        )

    def _consumers(self, name: str) -> list[policies.Consumer]:
        states = self.states
        out = []
        for user in states.consumers(name):
            mapped, retries, inputs = self._shape(user)
            out.append(policies.Consumer(user, mapped, retries, inputs, states.missing(user)))
        return out

    def _shape(self, stage: str) -> tuple[bool, int, list[str]]:
        """What never changes about a stage as a consumer: mapped, retries, inputs."""
        shape = self._shapes.get(stage)
        if shape is None:
            node = self.graph.nodes[stage]
            shape = self._shapes[stage] = (node.map_input is not None,
                                           node.stage.options.retries, list(node.inputs.values()))
        return shape

    def _may_keep(self, name: str) -> bool:
        if not self.keeps_values or len(self.states.consumers(name)) != 1:
            return False  # the policy's answer without building its records
        return policies.may_keep(name, self._consumers(name),
                                 requested=self.states.is_kept(name),
                                 executor_keeps=self.keeps_values)

    # -- chaining ----------------------------------------------------------
    def chain_after(self, spec: TaskSpec) -> None:
        """Queue the consumer that only this task holds back right behind it, in its worker.

        An engine that takes a task before its input exists (``chains``) gets
        the whole run of such consumers at once, link after link.
        """
        states = self.states
        if spec.key.batch is not None or not states.consumers(spec.key.stage):
            return  # nothing could follow it (checked first: most tasks end here)
        ahead = self.executor.chains
        could_chain = self.executor.could_chain
        while spec.key.batch is None and not states.stopped:
            name = spec.key.stage
            if not any(states.waits_only_on(u, name) for u in states.consumers(name)):
                return  # no consumer waits on this stage alone: the policy could not pick one
            if not could_chain(spec.key):
                return  # nowhere to queue it now: no task is built for nothing
            user = policies.chain_consumer(name, [
                c for c in self._consumers(name)
                if states.is_waiting(c.name) and c.name not in self.chained
            ])
            if user is None or self._shared_input_bytes(name) >= self.tuning.chain_inputs_max:
                return
            if self.cache is not None and not self.cache.claim(user):
                return  # it comes from the cache, or another run makes it: decided when ready
            follow = self.task(TaskKey(user), after=spec.key)
            if not self.executor.chain(follow):
                return
            self.chained[user] = follow
            if not ahead:
                return
            spec = follow

    def unchain(self, key: TaskKey) -> None:
        """``key`` failed: what was chained behind it (and behind those) will not run there."""
        stages = {key.stage}
        while True:
            users = [u for u, s in self.chained.items() if s.after is not None
                     and s.after.stage in stages]
            if not users:
                return
            for user in users:
                del self.chained[user]  # planned again once its input exists
                stages.add(user)

    def _shared_input_bytes(self, name: str) -> int:
        return sum(
            h.nbytes
            for u in self.graph.nodes[name].inputs.values() if u in self.ledger
            for h in output_handles(self.ledger[u])
            if h.transport != HELD
        )

    # -- retries -----------------------------------------------------------
    def retry_delay(self, outcome: TaskOutcome, info: ErrorInfo) -> float | None:
        """Seconds until ``outcome``'s task is tried again, or None when it fails for good."""
        options = self.graph.nodes[outcome.key.stage].stage.options
        running = self.states.is_running(outcome.key.stage) and not self.states.stopped
        if info.cause == OOM and outcome.key not in self.alone and running:
            self.alone.add(outcome.key)  # once, alone, even when no retries are left
            return 0.0
        if (
            outcome.attempt > options.retries
            or not running
            or not policies.retryable(info.kind, info.type_names, options.retry_on)
        ):
            return None
        return policies.backoff(options.retry_delay, outcome.attempt, self.rng.uniform)

    def retry_later(self, outcome: TaskOutcome, delay: float) -> None:
        key = outcome.key
        items = None
        if key.batch is not None:
            items = policies.batch_ranges(
                self._mapped_length(key.stage),
                self.batch_size(key.stage),
            )[key.batch]
        spec = self.task(key, outcome.attempt + 1, items=items)
        self.slices.forget()
        heapq.heappush(self.delayed, (time.monotonic() + delay, next(self.sequence), spec))

    def next_due(self) -> float | None:
        """When the loop must wake up next for a retry or a cache entry another run makes."""
        due = [self.delayed[0][0]] if self.delayed else []
        if self.cache is not None and self.cache.waiting:
            due.append(self.cache_look_at)
        return min(due) if due else None

    def release_due(self) -> None:
        now = time.monotonic()
        while self.delayed and self.delayed[0][0] <= now:
            self.push(heapq.heappop(self.delayed)[2])

    @property
    def waiting_on_cache(self) -> bool:
        return self.cache is not None and bool(self.cache.waiting)

    def retry_cache_waits(self) -> list[Decision]:
        """Stages whose cache entry another run was making, looked at again when due.

        Returns what the loop must apply for those settled now (adopted, or taken
        over and found to fail or split into batches); taken-over stages are queued.
        """
        now = time.monotonic()
        if self.cache is None or not self.cache.waiting or now < self.cache_look_at:
            return []
        self.cache_look_at = now + self.tuning.cache_wait_s
        if self.states.stopped:
            return []
        decisions = []
        for name in self.cache.take_waiting():
            decision = self.plan(name)
            if decision is not None:
                decisions.append(decision)
        return decisions

    # -- outcomes ------------------------------------------------------------
    def stored(self, key: TaskKey, outcome: TaskOutcome) -> None:
        """A task's result is in the ledger: the cache learns of a finished stage."""
        if self.cache is not None and self.states.is_done(key.stage):
            self.cache.stored(key.stage, outcome.metrics.stored)

    def record_error(self, stage: str, info: ErrorInfo) -> None:
        if self.cache is not None:
            self.cache.abandon(stage)
        self.errors.setdefault(stage, info)

    def take_pending(self) -> list[str]:
        """Stages whose tasks have not started (queued, delayed): they will not start now."""
        pending = [*self.queue] + [spec for *_, spec in self.delayed]
        self.queue.clear()
        self.delayed.clear()
        stages = list(dict.fromkeys(s.key.stage for s in pending))
        if self.cache is not None:
            stages += self.cache.take_waiting()
            for stage in stages:
                self.cache.abandon(stage)
        return [s for s in stages if self.states.is_running(s)]


def _held(output: Any) -> bool:
    return getattr(output, "transport", None) == HELD
