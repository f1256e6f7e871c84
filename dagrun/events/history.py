"""Read past runs back from ``<state-dir>/runs/<run_id>/events.jsonl``.

A run's record is built from two lines of its event log: ``run_started``
(the first line: pipeline, parameters, ``run_date``, ``driver_pid``) and
``run_finished`` (the last line: status, counts), read from the file's tail
so a long history lists quickly. A run with no ``run_finished`` is
``running`` while its driver lives and ``lost`` once it is gone: the driver is
``run_started``'s ``driver_pid`` (or the pid a lock file names for that run),
and it counts as alive only if a process with that pid exists and started no
later than the run did, so a recycled pid is not mistaken for the driver.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ..errors import UsageError

STATUSES = ("succeeded", "failed", "interrupted", "timed_out", "running", "lost")
_TAIL = 64 << 10  # bytes read from the end of a log to find run_finished
_CLOCK_SLACK_S = 2.0  # a driver's start time (clock ticks) may read a little after its first event


@dataclass(frozen=True)
class RunRecord:
    """One run as the history sees it."""

    run_id: str
    run_dir: Path
    pipeline: str
    status: str
    started: datetime | None
    run_date: str | None
    params: dict[str, Any] = field(default_factory=dict)
    finished: dict[str, Any] | None = None
    source: str | None = None


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


def _first_and_last(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    try:
        with open(path, "rb") as f:
            head = f.readline()
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL))
            tail = f.read().splitlines()
    except OSError:
        return {}, None
    try:
        start = json.loads(head)
    except json.JSONDecodeError:
        start = {}
    for line in reversed(tail):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        return start, event if event.get("event") == "run_finished" else None
    return start, None


def load_run(run_dir: Path, lock_pids: dict[str, int] | None = None) -> RunRecord:
    """The record of the run in ``run_dir``."""
    start, end = _first_and_last(run_dir / "events.jsonl")
    if start.get("event") != "run_started":
        start = {}
    started = _parse_time(start.get("timestamp"))
    if end is not None:
        status = str(end.get("status", "failed"))
    else:
        pid = start.get("driver_pid") or (lock_pids or {}).get(run_dir.name)
        status = "running" if pid and driver_alive(int(pid), started) else "lost"
    return RunRecord(
        run_id=run_dir.name,
        run_dir=run_dir,
        pipeline=str(start.get("pipeline") or "?"),
        status=status,
        started=started,
        run_date=start.get("run_date"),
        params=dict(start.get("params") or {}),
        finished=end,
        source=start.get("source"),
    )


def scan_runs(state_dir: Path) -> list[RunRecord]:
    """Every run in the state directory, newest first."""
    root = state_dir / "runs"
    if not root.is_dir():
        return []
    pids = _lock_pids(state_dir)
    dirs = sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name, reverse=True)
    return [load_run(d, pids) for d in dirs]


def driver_alive(pid: int, started: datetime | None) -> bool:
    """Whether process ``pid`` lives, is no zombie, and began no later than ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    begun = _process_start(pid)
    if begun is None:  # no /proc: the pid's existence is all there is to go on
        return True
    if begun == -1.0:  # a zombie: dead for our purposes
        return False
    return started is None or begun <= started.timestamp() + _CLOCK_SLACK_S


def _process_start(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    if fields[0] == "Z":
        return -1.0
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _lock_pids(state_dir: Path) -> dict[str, int]:
    """Run id -> pid, from lock files whose holder wrote ``pid N, run ID, since ...``."""
    out = {}
    locks = state_dir / "locks"
    if not locks.is_dir():
        return out
    for path in locks.glob("*.lock"):
        try:
            parts = dict(p.strip().split(" ", 1) for p in path.read_text().split(",") if " " in p)
            out[parts["run"].strip()] = int(parts["pid"])
        except (OSError, KeyError, ValueError):
            continue
    return out


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def find_run(state_dir: Path, prefix: str) -> Path:
    """The run directory whose id is ``prefix`` or starts with it (exactly one)."""
    root = state_dir / "runs"
    exact = root / prefix
    if prefix and "/" not in prefix and (exact / "events.jsonl").exists():
        return exact
    matches = sorted(d for d in root.glob(f"{prefix}*") if d.is_dir()) if root.is_dir() else []
    if not matches or not prefix:
        msg = f"no run {prefix!r} in {root}; `dagrun runs` lists them"
        raise UsageError(msg)
    if len(matches) > 1:
        shown = ", ".join(d.name for d in matches[:5]) + (" ..." if len(matches) > 5 else "")
        msg = (
            f"run id prefix {prefix!r} is ambiguous: {len(matches)} runs match ({shown}); "
            f"give more characters of the run id"
        )
        raise UsageError(msg)
    return matches[0]


def list_runs(
    state_dir: Path, *, status: str | None = None, since: date | None = None,
    pipeline: str | None = None,
) -> str:
    """One line per run, newest first, filtered by status, start date and pipeline."""
    root = state_dir / "runs"
    if not root.is_dir():
        return f"no runs in {root}\n"
    lines = [f"{'RUN':<24} {'PIPELINE':<20} {'RUN_DATE':<25} {'STATUS':<11} {'WALL_S':>8} "
             f"{'OK':>4} {'FAIL':>4}"]
    for rec in scan_runs(state_dir):
        if status and rec.status != status:
            continue
        if pipeline and rec.pipeline != pipeline:
            continue
        if since and (rec.started is None or rec.started.date() < since):
            continue
        end = rec.finished or {}
        wall = f"{end['wall_s']:.2f}" if "wall_s" in end else "-"
        lines.append(
            f"{rec.run_id:<24} {rec.pipeline:<20} {rec.run_date or '-':<25} {rec.status:<11} "
            f"{wall:>8} {end.get('succeeded', '-'):>4} {end.get('failed', '-'):>4}"
        )
    return "\n".join(lines) + "\n"


def show_run(state_dir: Path, run_id: str) -> str:
    """A run's header (pipeline, status, run date, parameters) and one line per task."""
    run_dir = find_run(state_dir, run_id)
    rec = load_run(run_dir, _lock_pids(state_dir))
    events = read_events(run_dir / "events.jsonl")
    params = ", ".join(f"{k}={v}" for k, v in sorted(rec.params.items())) or "-"
    lines = [
        f"run {rec.run_id}",
        f"pipeline:   {rec.pipeline}",
        f"status:     {rec.status}",
        f"started:    {rec.started.isoformat() if rec.started else '-'}",
        f"run date:   {rec.run_date or '-'}",
        f"parameters: {params}",
    ]
    cached = [e.get("stage", "") for e in events
              if e.get("event") == "task_skipped" and e.get("reason") == "cached"]
    lines.append(f"from cache: {', '.join(cached) or '-'}")
    lines.append(
        f"{'STAGE':<28} {'ATT':>3} {'STATUS':<9} {'WALL_S':>8} {'CPU_S':>8} "
        f"{'PEAK_MB':>8} {'IN_MB':>8} {'OUT_MB':>8} TRANSPORT"
    )
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
    if rec.finished is None:
        lines.append(f"status: {rec.status} (no run_finished event)")
    return "\n".join(lines) + "\n"
