"""Ten stages that crash their worker on every attempt (retried once), and one that must finish."""

import os
import time

from dagrun import Pipeline, stage


@stage(retries=1)
def crash(code: int = 10) -> int:
    os._exit(code)


@stage
def survivor(delay: float = 0.2) -> str:
    time.sleep(delay)
    return "alive"


pipeline = Pipeline([*(crash.bind(f"crash_{i}", code=10 + i) for i in range(10)), survivor])
