"""Which run directories to delete: ``--keep-runs N`` and ``clean --runs --older-than AGE``.

``runs_to_prune`` is pure (records in, records out); ``prune_runs`` deletes.
A run still going on (status ``running``) is never deleted; ``--keep-runs``
counts per pipeline, so one state directory can hold several schedules.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..events.history import RunRecord, scan_runs


def runs_to_prune(
    records: list[RunRecord],
    *,
    keep: int | None = None,
    older_than: float | None = None,
    pipeline: str | None = None,
    now: datetime,
) -> list[RunRecord]:
    """Records (newest first) that retention removes; ``older_than`` is in seconds."""
    out = []
    seen: dict[str, int] = {}
    for rec in records:
        if rec.status == "running" or (pipeline is not None and rec.pipeline != pipeline):
            continue
        seen[rec.pipeline] = seen.get(rec.pipeline, 0) + 1
        too_many = keep is not None and seen[rec.pipeline] > keep
        too_old = (
            older_than is not None
            and rec.started is not None
            and rec.started < now - timedelta(seconds=older_than)
        )
        if keep is not None and older_than is not None:
            if too_many and too_old:
                out.append(rec)
        elif too_many or too_old:
            out.append(rec)
    return out


def prune_runs(
    state_dir: Path,
    *,
    keep: int | None = None,
    older_than: float | None = None,
    pipeline: str | None = None,
) -> list[Path]:
    """Delete the run directories retention selects; the deleted paths."""
    doomed = runs_to_prune(
        scan_runs(state_dir), keep=keep, older_than=older_than, pipeline=pipeline,
        now=datetime.now(UTC),
    )
    for rec in doomed:
        shutil.rmtree(rec.run_dir, ignore_errors=True)
    return [rec.run_dir for rec in doomed]
