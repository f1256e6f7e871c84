"""``dagrun report``: what a run did, drawn from its ``events.jsonl`` alone.

    <state-dir>/runs/<run_id>/events.jsonl ─▶ find_run ─▶ read_events
        ─▶ html.render_html   one self-contained HTML file: a Gantt timeline (a row per
                              worker, a rectangle per task attempt), the DAG coloured by
                              status, the per-stage metrics table, the failures
        ─▶ trace.chrome_trace Chrome trace-event JSON (Perfetto, chrome://tracing)

Nothing but the event file is read, so a run directory copied to another
machine makes the same report. Both views take their task intervals from
``summary.task_spans`` and their numbers from ``summary.summarize``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .html import render_html
from .trace import chrome_trace

__all__ = ["chrome_trace", "find_run", "render_html"]


def find_run(state_dir: Path, run_id: str | None = None) -> Path:
    """The ``events.jsonl`` of a run: the latest, one whose id starts with ``run_id``,
    or ``run_id`` itself when it is a run directory or an event file."""
    if run_id is not None:
        given = Path(run_id)
        if given.is_file():
            return given
        if (given / "events.jsonl").is_file():
            return given / "events.jsonl"
    root = state_dir / "runs"
    runs = sorted(p.parent.name for p in root.glob("*/events.jsonl")) if root.is_dir() else []
    if not runs:
        msg = (f"no runs in {root}; run a pipeline first, or pass --state-dir (or a run "
               f"directory) to say where its runs are")
        raise UsageError(msg)
    if run_id is None:
        return root / runs[-1] / "events.jsonl"
    matches = [r for r in runs if r == run_id] or [r for r in runs if r.startswith(run_id)]
    if not matches:
        msg = f"no run {run_id!r} in {root}; `dagrun runs` lists them"
        raise UsageError(msg)
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        msg = f"run id {run_id!r} is ambiguous in {root} ({shown}); give more of it"
        raise UsageError(msg)
    return root / matches[0] / "events.jsonl"
