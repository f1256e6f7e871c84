"""A scheduled job whose first run is slow: later ticks pass while it goes on."""

import datetime
import os
import time

from dagrun import stage


@stage
def tick(run_date: datetime.datetime | None = None, marker: str = "", seconds: float = 2.5) -> str:
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(seconds)
    return str(run_date)
