"""A stage that takes the run's logical date, and fails on one chosen date."""

import datetime

from dagrun import stage


@stage
def day(run_date: datetime.date, fail_on: str = "") -> str:
    print(f"logical date {run_date.isoformat()} ({type(run_date).__name__})")
    if run_date.isoformat() == fail_on:
        raise RuntimeError(f"no data for {run_date}")
    return run_date.isoformat()
