"""What earlier runs of a pipeline say about its stages: how long and how much memory.

    end of a run ─▶ <run dir>/stages.json   {stage: wall_s (all its tasks), growth (one task)}
    start of a run ─▶ the last ``recent_runs`` such files of the same pipeline ─▶ medians
                        ─▶ priority (policies.bottom_levels) and admission (policies.admits)

Each run writes one small file, so the next run reads a few kilobytes, not
the event logs. A stage never seen before has no estimate: it counts as one
unit of time (a structural estimate) and as no memory of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..settings import tuning

FILE = "stages.json"


@dataclass(frozen=True)
class Estimates:
    """Per stage: seconds of work (all its tasks) and bytes one of its tasks grows by."""

    wall_s: dict[str, float] = field(default_factory=dict)
    growth: dict[str, int] = field(default_factory=dict)


def record(run_dir: Path, pipeline: str, metrics: Iterable[Mapping[str, Any]]) -> None:
    """Write this run's per-stage measurements (only tasks that finished count)."""
    wall: dict[str, float] = {}
    growth: dict[str, int] = {}
    for m in metrics:
        stage = str(m["stage"])
        wall[stage] = wall.get(stage, 0.0) + float(m.get("wall_s") or 0.0)
        growth[stage] = max(growth.get(stage, 0), int(m.get("rss_growth_bytes") or 0))
    data = {"pipeline": pipeline, "wall_s": wall, "growth": growth}
    try:
        (run_dir / FILE).write_bytes(orjson.dumps(data))
    except OSError:
        pass  # estimates are an optimisation: a read-only run directory loses nothing else


def load(state_dir: Path, pipeline: str, limit: int | None = None) -> Estimates:
    """Medians over the last ``limit`` runs (the tuning's ``recent_runs``) of ``pipeline``."""
    if limit is None:
        limit = tuning().recent_runs
    runs = state_dir / "runs"
    try:
        names = sorted(os.listdir(runs), reverse=True)  # run ids sort by start time
    except OSError:
        return Estimates()
    walls: dict[str, list[float]] = {}
    growths: dict[str, list[int]] = {}
    seen = 0
    for name in names:
        if seen >= limit:
            break
        try:
            data = orjson.loads((runs / name / FILE).read_bytes())
        except (OSError, ValueError):  # orjson.JSONDecodeError is a ValueError
            continue
        if not isinstance(data, dict) or data.get("pipeline") != pipeline:
            continue
        seen += 1
        for stage, value in (data.get("wall_s") or {}).items():
            walls.setdefault(stage, []).append(float(value))
        for stage, value in (data.get("growth") or {}).items():
            growths.setdefault(stage, []).append(int(value))
    return Estimates(
        {s: _median(v) for s, v in walls.items()},
        {s: int(_median(v)) for s, v in growths.items()},
    )


def _median(values: list[float] | list[int]) -> float:
    """The median (``statistics.median``, without its checks: one per stage of a large run)."""
    if len(values) == 1:
        return values[0]
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def default_budget(margin: float) -> int | None:
    """The memory a run may plan for: the cgroup's limit or the machine's, less ``margin``."""
    from ..executors.oom import OomWatch

    limit = OomWatch().limit
    return int(limit * (1 - margin)) if limit else None
