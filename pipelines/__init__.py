"""Reusable pipeline modules and runnable examples.

Each module is a library of stages: import it into another pipeline, include
it under a prefix with ``dagrun.include`` (as ``composed`` does), or run it on
its own from the repository root:

    dagrun run pipelines.images      # flagship: parallel image filtering, stats to Parquet
    dagrun run pipelines.etl         # tabular ETL with Arrow: CSV/Parquet in, Parquet out
    dagrun run pipelines.composed    # both, ETL included twice under two prefixes

Inputs live in ``data/`` at the repository root; outputs go under ``out/``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def data_path(path: str | Path) -> Path:
    """``path`` as given when it exists (relative to the current directory), else under the
    repository root, so ``data/...`` defaults work from any directory."""
    given = Path(path)
    if given.is_absolute() or given.exists():
        return given
    return ROOT / given
