"""Scheduling policies: pure functions over plain records, no process, clock or I/O.

Each answers one question the loop asks, so each is unit-tested on its own
(``tests/test_policies.py``):

    auto_batch_size   how many elements per batch of a mapped stage
    batch_ranges      the [start, stop) of every batch
    may_keep          may a large result stay in the worker that made it (transport ``worker``)
    chain_consumer    which consumer to queue right behind a running task, in its worker
    backoff           how long before a retry (exponential, with jitter from an injected source)
    retryable         does a failure qualify for a retry under ``retry_on``
    bottom_levels     each stage's longest remaining path to the end of the DAG (its priority)
    admits            may a task start now, given the memory the running ones are predicted to use
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass


def auto_batch_size(length: int, workers: int, tasks_per_worker: int) -> int:
    """About ``tasks_per_worker`` batches per worker: enough to balance, few enough to be cheap."""
    return max(1, math.ceil(length / (max(1, workers) * tasks_per_worker)))


def batch_ranges(length: int, size: int) -> list[tuple[int, int]]:
    """The ``[start, stop)`` element range of each batch of ``size`` over ``length`` elements."""
    return [(start, min(length, start + size)) for start in range(0, length, max(1, size))]


@dataclass(frozen=True)
class Consumer:
    """What the keep and chain policies need to know about one consumer of a result."""

    name: str
    mapped: bool  # fans out over one of its inputs
    retries: int
    inputs: Sequence[str]  # the stage each of its parameters reads, with repeats
    waiting_on: Collection[str]  # inputs not done yet


def may_keep(
    name: str, consumers: Sequence[Consumer], *, requested: bool, executor_keeps: bool
) -> bool:
    """Whether the result of ``name`` may stay in its worker for its one consumer.

    Only for a result with exactly one consumer, reading it through one
    parameter, that can start as soon as this result exists (its other inputs
    are done, it is not mapped, so the worker that made the value is free to
    run it) and has no retries (a kept value lives in one process); never for
    a requested output or an executor that cannot keep values in workers.
    """
    if not executor_keeps or requested or len(consumers) != 1:
        return False
    user = consumers[0]
    if user.mapped or user.retries or list(user.inputs).count(name) != 1:
        return False
    return all(u == name for u in user.waiting_on)


def chain_consumer(name: str, consumers: Sequence[Consumer]) -> str | None:
    """The consumer that only ``name`` holds back and that runs as one task, if any.

    It is queued behind ``name``'s task in the same worker and starts with the
    result handed over there: a chain of stages needs no driver round trip
    between links. One per task: the worker runs one at a time.
    """
    for user in consumers:
        if set(user.waiting_on) == {name} and not user.mapped:
            return user.name
    return None


def backoff(retry_delay: float, attempt: int, uniform: Callable[[float, float], float]) -> float:
    """Seconds before retrying after failed ``attempt``: doubling from ``retry_delay``, ±50%."""
    return retry_delay * 2 ** (attempt - 1) * uniform(0.5, 1.5)


def retryable(kind: str, type_names: Collection[str], retry_on: Collection[type]) -> bool:
    """Crashes and timeouts are always retried; a raised error only if it is in ``retry_on``."""
    if kind != "raised" or not retry_on:
        return True
    wanted = {f"{t.__module__}.{t.__qualname__}" for t in retry_on}
    return bool(wanted.intersection(type_names))


def bottom_levels(
    upstream: Mapping[str, Collection[str]], estimate: Mapping[str, float]
) -> dict[str, float]:
    """Each stage's longest path to the end of the DAG, counting its own estimated time.

    When more stages are ready than there are workers, the one with the
    highest bottom level goes first: it is the one the run's end waits for.
    A stage without an estimate counts as 1 (a structural estimate: the
    number of stages on its longest path).
    """
    consumers: dict[str, list[str]] = {}  # only stages that have some: most have none
    for name, inputs in upstream.items():
        for u in inputs:
            consumers.setdefault(u, []).append(name)
    level: dict[str, float] = {}
    get, below_of = estimate.get, level.__getitem__
    for name in _reverse_topological(upstream, consumers):
        users = consumers.get(name)
        level[name] = get(name, 1.0) + (max(map(below_of, users)) if users else 0.0)
    return level


def _reverse_topological(
    upstream: Mapping[str, Collection[str]], consumers: Mapping[str, list[str]]
) -> list[str]:
    remaining = {name: len(consumers.get(name, ())) for name in upstream}
    ready = [name for name, count in remaining.items() if count == 0]
    order = []
    while ready:
        name = ready.pop()
        order.append(name)
        for u in upstream[name]:
            if u in remaining:
                remaining[u] -= 1
                if remaining[u] == 0:
                    ready.append(u)
    return order


def admits(need: int, reserved: int, live: int, budget: int | None, running: int) -> bool:
    """Whether a task predicted to grow by ``need`` bytes may start now.

    ``reserved`` is what the running tasks are predicted to use, ``live`` the
    intermediates alive in shared memory. A task with no prediction always
    starts; one bigger than the whole budget starts only when nothing runs.
    """
    if budget is None or need <= 0 or running == 0:
        return True
    return reserved + live + need <= budget
