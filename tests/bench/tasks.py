"""Plain task functions shared by every peer, and the DAGs the workloads run.

Every peer executes the same :class:`Dag`: a tuple of :class:`Task` values in
topological order, each naming a top-level function of this module, the keys
of the tasks whose results it takes as positional arguments, and constant
keyword arguments. Peers translate it into their own form (a ready queue of
``apply_async`` calls, a Dask graph dict, Ray object refs, a dagrun
``Pipeline``), so all of them run exactly the same work.

This module imports nothing beyond numpy, so every peer's workers can import
it cheaply; the dagrun stage versions of these functions live in
:mod:`tests.bench.stages`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MiB = 1 << 20
PAGE_ELEMS = 4096 // 8  # float64 elements per 4 KiB page: a stride that touches every page


# --- the task functions --------------------------------------------------------------------


def noop() -> None:
    """Do nothing (a source task)."""
    return None


def link(prev: Any = None) -> None:
    """Do nothing with one input (a chain link)."""
    return None


def combine(a: Any = None, b: Any = None) -> None:
    """Do nothing with two inputs (a layered-DAG node)."""
    return None


def burn(iterations: int = 1_000_000) -> int:
    """Spin the CPU in pure Python (holds the GIL) for a calibrated time."""
    acc = 0
    for i in range(iterations):
        acc = (acc + i * i) % 1_000_003
    return acc


def total(*parts: int) -> int:
    """Reduce the parallel workload's results."""
    return sum(parts)


def produce(nbytes: int = 8 * MiB) -> np.ndarray:
    """Make a fresh float64 array of ``nbytes`` (every page written)."""
    return np.full(nbytes // 8, 1.5)


def consume(x: np.ndarray) -> float:
    """Read one element per page of ``x`` (so a lazy mapping is paid for)."""
    return float(x[::PAGE_ELEMS].sum())


def step(prev: np.ndarray) -> np.ndarray:
    """Make a fresh array from the previous one (the memory chain's link)."""
    return prev + 1.0


# --- the DAG every peer runs ---------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One call: ``func(*results_of(deps), **kwargs)``."""

    key: str
    func: Callable[..., Any]
    deps: tuple[str, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Dag:
    """Tasks in topological order; ``sinks`` are the results the caller wants back."""

    tasks: tuple[Task, ...]
    sinks: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.tasks)

    def consumers(self) -> dict[str, int]:
        """How many tasks consume each key (for releasing intermediates)."""
        counts = {t.key: 0 for t in self.tasks}
        for t in self.tasks:
            for d in t.deps:
                counts[d] += 1
        return counts

    def levels(self) -> list[list[Task]]:
        """Group tasks by depth (for peers that can only run level by level)."""
        depth: dict[str, int] = {}
        out: list[list[Task]] = []
        for t in self.tasks:
            d = 1 + max((depth[x] for x in t.deps), default=-1)
            depth[t.key] = d
            if d == len(out):
                out.append([])
            out[d].append(t)
        return out


def independent(n: int) -> Dag:
    """``n`` no-op tasks with no edges; all are sinks."""
    tasks = tuple(Task(f"t{i}", noop) for i in range(n))
    return Dag(tasks, tuple(t.key for t in tasks))


def chain(n: int) -> Dag:
    """``n`` no-op tasks, each consuming the previous one."""
    tasks = [Task("t0", noop)]
    tasks += [Task(f"t{i}", link, (f"t{i - 1}",)) for i in range(1, n)]
    return Dag(tuple(tasks), (f"t{n - 1}",))


def layered(n: int, width: int = 100) -> Dag:
    """``n`` tasks in layers of ``width``; each consumes 2 tasks of the previous layer."""
    width = min(width, n)
    layers = max(1, n // width)
    tasks: list[Task] = [Task(f"t0_{j}", noop) for j in range(width)]
    for layer in range(1, layers):
        for j in range(width):
            deps = (f"t{layer - 1}_{j}", f"t{layer - 1}_{(j + 1) % width}")
            tasks.append(Task(f"t{layer}_{j}", combine, deps))
    last = layers - 1
    return Dag(tuple(tasks), tuple(f"t{last}_{j}" for j in range(width)))


def overhead_dag(shape: str, n: int) -> Dag:
    """The overhead workload's DAG of ``shape`` with ``n`` tasks."""
    return {"independent": independent, "chain": chain, "layered": layered}[shape](n)


def handoff_dag(nbytes: int) -> Dag:
    """A producer and a consumer of one ``nbytes`` float64 array."""
    producer = Task("produce", produce, (), {"nbytes": nbytes})
    return Dag((producer, Task("consume", consume, ("produce",))), ("consume",))


def parallel_dag(tasks: int, iterations: int) -> Dag:
    """``tasks`` CPU-bound tasks and one reduce over all of them."""
    burns = [Task(f"burn{i}", burn, (), {"iterations": iterations}) for i in range(tasks)]
    reduce = Task("total", total, tuple(t.key for t in burns))
    return Dag((*burns, reduce), ("total",))


def memory_dag(stages: int, nbytes: int) -> Dag:
    """``stages`` stages each making a fresh ``nbytes`` array from the previous, then a check."""
    tasks = [Task("s0", produce, (), {"nbytes": nbytes})]
    tasks += [Task(f"s{i}", step, (f"s{i - 1}",)) for i in range(1, stages)]
    tasks.append(Task("check", consume, (f"s{stages - 1}",)))
    return Dag(tuple(tasks), ("check",))


def tiny_dag() -> Dag:
    """One no-op task: run before each measurement to subtract fixed per-run costs."""
    return independent(1)


def run_sequential(dag: Dag) -> dict[str, Any]:
    """Run ``dag`` in this process, freeing each intermediate after its last consumer."""
    left = dag.consumers()
    sinks = set(dag.sinks)
    results: dict[str, Any] = {}
    for t in dag.tasks:
        results[t.key] = t.func(*(results[d] for d in t.deps), **t.kwargs)
        for d in t.deps:
            left[d] -= 1
            if left[d] == 0 and d not in sinks:
                del results[d]
    return {k: results[k] for k in dag.sinks}
