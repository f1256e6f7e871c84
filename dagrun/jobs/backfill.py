"""``dagrun backfill``: one run per logical date of a range, oldest first.

``dates`` and ``pending`` are pure: the inclusive range, and which of its
dates still need a run given the history (a date counts as done when a run
of the same pipeline with that ``run_date`` succeeded). ``backfill`` runs
them in this process, one after the other; a failed date does not stop the
rest, a signal does (exit 130 / 143), and so does another run holding the
pipeline's lock (exit 3). The exit code is 1 if any date did not succeed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..events.history import RunRecord, scan_runs

MAX_DAYS = 36600  # a century of days: a range longer than this is a typo


@dataclass(frozen=True)
class DayOutcome:
    """What happened to one date of the range."""

    day: date
    status: str  # succeeded, failed, timed_out, skipped
    run_id: str | None
    note: str = ""


def dates(start: date, end: date) -> list[date]:
    """Every date from ``start`` to ``end``, both included; a reversed range is a UsageError."""
    if end < start:
        msg = (
            f"--from {start.isoformat()} is after --to {end.isoformat()}; the range runs forward: "
            f"give the earlier date to --from"
        )
        raise UsageError(msg)
    count = (end - start).days + 1
    if count > MAX_DAYS:
        msg = f"--from {start} --to {end} spans {count} days; backfill at most {MAX_DAYS}"
        raise UsageError(msg)
    return [start + timedelta(days=i) for i in range(count)]


def done_dates(records: list[RunRecord], pipeline: str) -> dict[str, str]:
    """ISO date -> id of a run of ``pipeline`` that succeeded with that run date."""
    out: dict[str, str] = {}
    for rec in records:
        if rec.pipeline == pipeline and rec.status == "succeeded" and rec.run_date:
            out.setdefault(str(rec.run_date)[:10], rec.run_id)
    return out


def backfill(
    run_one: Callable[[date], Any],
    days: list[date],
    *,
    state_dir: Path,
    pipeline: str,
    force: bool,
    report: Callable[[DayOutcome], None],
) -> list[DayOutcome]:
    """Run ``run_one(day)`` (which returns a ``RunResult``) for each day not already done."""
    done = {} if force else done_dates(scan_runs(state_dir), pipeline)
    outcomes = []
    for day in days:
        if day.isoformat() in done:
            outcome = DayOutcome(day, "skipped", done[day.isoformat()], "already succeeded")
        else:
            with run_one(day) as result:  # Interrupted and LockHeldError end the backfill
                note = ", ".join(result.errors) if result.errors else ""
                outcome = DayOutcome(day, result.status, result.run_id, note)
        outcomes.append(outcome)
        report(outcome)
    return outcomes
