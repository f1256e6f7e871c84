"""What planning decided about a ready stage, for the loop to apply.

    Planner.plan(stage) ─▶ None            queued (or chained, or waiting on another run's entry)
                       ├─▶ FromCache       settled from the cache: adopt the output, no task runs
                       ├─▶ Batches         a mapped stage runs as ``count`` batches (0: done, empty)
                       └─▶ FailedUnrun     failed before any task ran (e.g. its input has no length)

The planner never changes the run's state itself: it returns one of these
plain records, and the runner applies it to the scheduler (the only owner of
the transitions), the ledger and the reporter, as it applies an outcome. Most
stages are simply queued, so ``plan`` answers None and nothing is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..executors.base import ErrorInfo, Output


@dataclass(frozen=True, slots=True)
class FromCache:
    """``stage``'s result is an intact cache entry: ``output`` is adopted and no task runs."""

    stage: str
    output: Output


@dataclass(frozen=True, slots=True)
class Batches:
    """Mapped ``stage`` runs as ``count`` batches (already queued); 0 means done, empty."""

    stage: str
    count: int
    concat: bool  # its batches' results are joined into one array or table


@dataclass(frozen=True, slots=True)
class FailedUnrun:
    """``stage`` failed for good before any of its tasks ran."""

    stage: str
    info: ErrorInfo


Decision = FromCache | Batches | FailedUnrun
