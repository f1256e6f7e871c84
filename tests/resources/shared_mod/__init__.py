"""Stages two pipelines include: their shared entries are computed once."""

import time

from dagrun import stage


@stage
def base(trace: str = "") -> list:
    if trace:
        with open(trace, "a") as f:
            f.write("base\n")
    time.sleep(0.5)
    return list(range(100))


@stage
def total(base: list) -> int:
    return sum(base)
