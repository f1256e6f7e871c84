"""Read past runs back from ``<state-dir>/runs/<run_id>/events.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UsageError


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete event line of a run (a line still being written is skipped)."""
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def list_runs(state_dir: Path) -> str:
    """One line per run, newest first."""
    root = state_dir / "runs"
    if not root.is_dir():
        return f"no runs in {root}\n"
    lines = [f"{'RUN':<24} {'PIPELINE':<20} {'STATUS':<12} {'WALL_S':>8} {'OK':>5} {'FAIL':>5}"]
    for run_dir in sorted(root.iterdir(), reverse=True):
        path = run_dir / "events.jsonl"
        events = read_events(path) if path.exists() else []
        start = next((e for e in events if e.get("event") == "run_started"), {})
        end = next((e for e in reversed(events) if e.get("event") == "run_finished"), None)
        status = end["status"] if end else "running?"
        wall = f"{end['wall_s']:.2f}" if end else "-"
        ok = str(end["succeeded"]) if end else "-"
        failed = str(end["failed"]) if end else "-"
        lines.append(
            f"{run_dir.name:<24} {str(start.get('pipeline', '?')):<20} {status:<12} "
            f"{wall:>8} {ok:>5} {failed:>5}"
        )
    return "\n".join(lines) + "\n"


def show_run(state_dir: Path, run_id: str) -> str:
    """A run's per-task metrics, one line per finished or failed task."""
    path = state_dir / "runs" / run_id / "events.jsonl"
    if not path.exists():
        msg = f"no run {run_id!r} in {state_dir / 'runs'}; `dagrun runs` lists them"
        raise UsageError(msg)
    events = read_events(path)
    header = (
        f"{'STAGE':<28} {'ATT':>3} {'STATUS':<9} {'WALL_S':>8} {'CPU_S':>8} "
        f"{'PEAK_MB':>8} {'IN_MB':>8} {'OUT_MB':>8} TRANSPORT"
    )
    lines = [f"run {run_id}", header]
    for e in events:
        kind = e.get("event")
        stage = e.get("stage", "")
        if e.get("batch") is not None:
            stage = f"{stage}[{e['batch']}]"
        if kind == "task_finished":
            lines.append(
                f"{stage:<28} {e['attempt']:>3} {'ok':<9} {e['wall_s']:>8.3f} {e['cpu_s']:>8.3f} "
                f"{e['max_rss_bytes'] / 2**20:>8.1f} {e['input_bytes'] / 2**20:>8.2f} "
                f"{e['output_bytes'] / 2**20:>8.2f} {e['transport']}"
            )
        elif kind == "task_failed":
            lines.append(f"{stage:<28} {e['attempt']:>3} {'failed':<9} {e['error_type']}: "
                         f"{e['error']}")
        elif kind == "task_skipped":
            lines.append(f"{stage:<28} {'':>3} {'skipped':<9} {e['reason']}")
        elif kind == "run_finished":
            lines.append(f"status: {e['status']} in {e['wall_s']:.2f} s")
    return "\n".join(lines) + "\n"
