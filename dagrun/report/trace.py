"""A run as Chrome trace-event JSON, for Perfetto (ui.perfetto.dev) or chrome://tracing.

Each task attempt is one complete event (``"ph": "X"``) with ``ts`` and
``dur`` in microseconds from the run's start; each worker is a process
(``pid``: the worker's own pid locally, a stable made-up number for a remote
engine's worker) named by a metadata event, with one thread; ``args`` carry
the task's metrics (or its error). The run's start and end are global
instant events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..events.summary import seconds, task_spans

_COMMON = {"event", "timestamp", "level", "run_id", "traceback", "stage", "batch", "attempt"}
_REMOTE_PID = 1_000_000  # made-up pids for remote workers start above any real one


def chrome_trace(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The trace-event document (a dict: ``json.dump`` it) for a run's events."""
    events = list(events)
    start = next((e for e in events if e.get("event") == "run_started"), {})
    end = next((e for e in reversed(events) if e.get("event") == "run_finished"), None)
    spans = task_spans(events)
    origin = seconds(start.get("timestamp")) if start else None
    if origin is None:
        origin = min((s.start for s in spans), default=0.0)
    pids: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for span in spans:
        if span.worker not in pids:
            label = span.worker
            pid = int(label[4:]) if label.startswith("pid ") and label[4:].isdigit() else (
                _REMOTE_PID + len(pids))
            pids[label] = pid
            name = f"worker {label}"
            out.append({"ph": "M", "name": "process_name", "pid": pid, "tid": pid,
                        "args": {"name": name}})
            out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": pid,
                        "args": {"name": name}})
        pid = pids[span.worker]
        args = {k: v for k, v in span.fields.items() if k not in _COMMON}
        args.update(stage=span.stage, attempt=span.attempt, status=span.status)
        if span.batch is not None:
            args["batch"] = span.batch
        out.append({
            "ph": "X", "name": span.name, "cat": span.status, "pid": pid, "tid": pid,
            "ts": round((span.start - origin) * 1e6, 3),
            "dur": round(max(span.end - span.start, 1e-6) * 1e6, 3),
            "args": args,
        })
    for marker, event in (("run started", start), ("run finished", end)):
        at = seconds(event.get("timestamp")) if event else None
        if at is not None:
            out.append({"ph": "i", "s": "g", "name": marker, "pid": 0, "tid": 0,
                        "ts": round((at - origin) * 1e6, 3),
                        "args": {k: v for k, v in event.items() if k not in _COMMON}})
    return {
        "traceEvents": out,
        "displayTimeUnit": "ms",
        "otherData": {"run_id": start.get("run_id"), "pipeline": start.get("pipeline")},
    }
