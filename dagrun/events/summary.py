"""What a run did, computed from its events alone (pure: no clock, no files).

    events ─▶ task_spans ─▶ one TaskSpan per attempt (start, end, worker, status)
                 │
                 └──▶ summarize ─▶ the ``run_summary`` fields:
                        stages         one row per stage (wall, cpu, peak memory, bytes,
                                       transport, status, cached, attempts, batches)
                        critical_path  the heaviest chain of the DAG (``run_started``'s
                                       ``edges``), weighted by each stage's wall time
                        parallelism    CPU seconds / (run wall × workers): 1.0 is every
                                       worker busy computing for the whole run
                        slowest        the stages that took longest

A task's start is its ``task_finished`` timestamp minus its ``wall_s`` (the
worker's own clock for the task, so queueing in the driver does not count);
a failed attempt, which has no ``wall_s``, runs from its ``task_started``.
A stage's wall time is the span from its first task's start to its last
task's end: for a mapped stage that is what its batches took together, for
a retried stage it includes the failed attempts and the delays between them.
``dagrun report`` draws its timeline from the same ``task_spans``.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .rows import StageRows, seconds

SLOWEST = 3  # how many stages ``slowest`` names: enough to act on, few enough to read


@dataclass(frozen=True)
class TaskSpan:
    """One attempt of one task (a stage, or one batch of a mapped stage)."""

    stage: str
    batch: int | None
    attempt: int
    worker: str  # "pid 1234", or "<worker> on <host>" on a remote engine
    start: float  # seconds since the epoch
    end: float
    status: str  # succeeded | failed | retried (a failed attempt that was tried again)
    fields: dict[str, Any] = field(default_factory=dict, compare=False)  # the closing event

    @property
    def name(self) -> str:
        return self.stage if self.batch is None else f"{self.stage}[{self.batch}]"


def worker_of(event: dict[str, Any]) -> str:
    """The worker an event names: its pid locally, engine worker and host remotely."""
    if event.get("worker_pid") is not None:
        return f"pid {event['worker_pid']}"
    worker, host = event.get("worker"), event.get("host")
    if worker is not None:
        return f"{worker} on {host}" if host else str(worker)
    return "driver"


def task_spans(events: Iterable[dict[str, Any]]) -> list[TaskSpan]:
    """Every finished or failed attempt, in the order the events closed them."""
    started: dict[tuple[Any, ...], dict[str, Any]] = {}
    spans: list[TaskSpan] = []
    for e in events:
        kind = e.get("event")
        if kind not in ("task_started", "task_finished", "task_failed"):
            continue
        key = (e.get("stage"), e.get("batch"), e.get("attempt"))
        if kind == "task_started":
            started[key] = e
            continue
        end = seconds(e.get("timestamp"))
        if end is None:
            continue
        opened = started.pop(key, None)
        if kind == "task_finished":
            start = end - float(e.get("wall_s") or 0.0)
            status = "succeeded"
        else:
            begun = seconds(opened.get("timestamp")) if opened else None
            start = min(begun, end) if begun is not None else end
            status = "retried" if e.get("level") == "warning" else "failed"
        source = e if kind == "task_finished" or opened is None else opened
        spans.append(TaskSpan(str(e.get("stage")), e.get("batch"), int(e.get("attempt") or 1),
                              worker_of(source), start, end, status, e))
    return spans


def summarize(
    events: Iterable[dict[str, Any]], workers: int, *, wall_s: float | None = None
) -> dict[str, Any]:
    """The ``run_summary`` fields for a run's events (see the module docstring).

    ``wall_s`` is the run's wall time; by default that of ``run_finished``,
    else from ``run_started`` to the last event.
    """
    events = list(events)
    start = next((e for e in events if e.get("event") == "run_started"), {})
    edges = [(str(a), str(b)) for a, b in start.get("edges") or ()]
    if wall_s is None:
        wall_s = _run_wall(events, start)
    return summary_of(_stage_rows(events), edges, workers, wall_s)


def summary_of(
    rows: dict[str, dict[str, Any]], edges: list[tuple[str, str]], workers: int, wall_s: float
) -> dict[str, Any]:
    """The ``run_summary`` fields from the stage rows (``StageRows.result``) and the DAG."""
    cpu = sum(row["cpu_s"] for row in rows.values())
    path, length = critical_path(edges, {n: r["wall_s"] for n, r in rows.items()})
    ran = [r for r in rows.values() if r["status"] not in ("skipped", "cached")]
    slowest = heapq.nlargest(SLOWEST, ran, key=operator.itemgetter("wall_s"))  # ties: in order
    return {
        "wall_s": round(wall_s, 6),
        "workers": workers,
        "cpu_s": round(cpu, 6),
        "task_wall_s": round(sum(r["task_wall_s"] for r in rows.values()), 6),
        "parallelism": round(cpu / (wall_s * workers), 4) if wall_s > 0 and workers else 0.0,
        "critical_path": path,
        "critical_path_s": round(length, 6),
        "slowest": [{"stage": r["stage"], "wall_s": r["wall_s"]} for r in slowest],
        "stages": list(rows.values()),
    }


def critical_path(
    edges: list[tuple[str, str]], weight: dict[str, float]
) -> tuple[list[str], float]:
    """The heaviest chain through the DAG, and its weight (stages absent from ``weight``: 0)."""
    preds: dict[str, list[str]] = dict.fromkeys(weight, _NONE)  # shared until a stage has one
    for up, down in edges:
        preds.setdefault(up, _NONE)
        ups = preds.get(down)
        if ups is None or ups is _NONE:
            preds[down] = [up]
        else:
            ups.append(up)
    best: dict[str, float] = {}
    via: dict[str, str | None] = {}
    weight_of, best_of = weight.get, best.__getitem__
    for node in _producers_first(preds):
        ups = preds[node]
        before = max(ups, key=best_of) if ups else None
        via[node] = before
        best[node] = weight_of(node, 0.0) + (best[before] if before is not None else 0.0)
    if not best:
        return [], 0.0
    node: str | None = max(best, key=lambda n: best[n])
    length = best[node]  # type: ignore[index]
    path = []
    while node is not None:
        path.append(node)
        node = via[node]
    path.reverse()
    while path and not weight.get(path[0]):  # stages that did not run carry no time
        path.pop(0)
    return path, length


_NONE: list[str] = []  # no predecessors (never appended to)


def _producers_first(preds: dict[str, list[str]]) -> list[str]:
    """The nodes with each after all its predecessors (Kahn's algorithm; cycles are dropped)."""
    waiting = {node: len(ups) for node, ups in preds.items()}
    users: dict[str, list[str]] = {}
    for node, ups in preds.items():
        for up in ups:
            users.setdefault(up, []).append(node)
    order = [node for node, count in waiting.items() if count == 0]
    for node in order:  # grows while it is walked
        for user in users.get(node, ()):
            waiting[user] -= 1
            if waiting[user] == 0:
                order.append(user)
    return order


_ROW_EVENTS = frozenset({"task_started", "task_finished", "task_failed", "task_retrying",
                         "task_skipped"})


def _stage_rows(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One row per stage, from a run's event dicts."""
    rows = StageRows()
    for e in events:
        get = e.get
        kind = get("event")
        if kind not in _ROW_EVENTS and not (isinstance(kind, str) and kind.startswith("task_")
                                            and kind != "task_log"):
            continue
        stage = get("stage")
        if stage is None:
            continue
        batch, attempt = get("batch"), get("attempt")
        if kind == "task_started":
            rows.started(stage, batch, attempt, get("timestamp"))
        elif kind == "task_finished":
            rows.finished(stage, batch, attempt, seconds(get("timestamp")), get("wall_s"),
                          get("cpu_s"), get("max_rss_bytes"), get("input_bytes"),
                          get("output_bytes"), get("transport"), get("cached"))
        elif kind == "task_failed":
            rows.failed(stage, batch, attempt, seconds(get("timestamp")),
                        final=get("level") != "warning")
        elif kind == "task_skipped":
            rows.skipped(stage, attempt, get("reason"))
        else:
            rows.seen(stage, attempt)
    return rows.result()


def _run_wall(events: list[dict[str, Any]], start: dict[str, Any]) -> float:
    end = next((e for e in reversed(events) if e.get("event") == "run_finished"), None)
    if end is not None and end.get("wall_s") is not None:
        return float(end["wall_s"])
    first = seconds(start.get("timestamp")) if start else None
    last = seconds(events[-1].get("timestamp")) if events else None
    return max(0.0, last - first) if first is not None and last is not None else 0.0


SHOWN_ROWS = 10  # stages in the console's closing table; the report has them all


def format_summary(summary: dict[str, Any]) -> str:
    """The closing table on the console: totals, critical path, the slowest stages."""
    from ..units import format_bytes

    lines = [
        f"summary: wall {summary['wall_s']:.2f} s · cpu {summary['cpu_s']:.2f} s · "
        f"parallelism {summary['parallelism']:.2f} of {summary['workers']} worker(s)"
    ]
    if summary.get("critical_path"):
        lines.append(
            f"critical path ({summary['critical_path_s']:.2f} s): "
            + " → ".join(summary["critical_path"])
        )
    rows = sorted(summary.get("stages") or [], key=lambda r: -r["wall_s"])
    if rows:
        lines.append(
            f"  {'STAGE':<24} {'STATUS':<9} {'WALL_S':>8} {'CPU_S':>8} {'PEAK':>10} "
            f"{'OUT':>10} {'TRY':>3} {'BATCH':>5} TRANSPORT"
        )
    for r in rows[:SHOWN_ROWS]:
        lines.append(
            f"  {r['stage'][:24]:<24} {r['status']:<9} {r['wall_s']:>8.3f} {r['cpu_s']:>8.3f} "
            f"{format_bytes(r['max_rss_bytes']):>10} {format_bytes(r['output_bytes']):>10} "
            f"{r['attempts']:>3} {r['batches'] or '':>5} {r['transport'] or '-'}"
        )
    if len(rows) > SHOWN_ROWS:
        more = len(rows) - SHOWN_ROWS
        lines.append(f"  … and {more} more stage(s): `dagrun report` shows them all")
    return "\n".join(lines) + "\n"
