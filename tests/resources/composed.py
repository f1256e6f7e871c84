"""The reusable module included twice under prefixes, and a stage joining both."""

from dagrun import bind, include
from tests.resources import reusable

small = include(reusable, prefix="small", params={"count": 3})
big = include(reusable, prefix="big", params={"count": 10, "factor": 10})


def combine(small_total: int, big_total: int) -> tuple[int, int]:
    return small_total, big_total


both = bind(combine, name="both", inputs={"small_total": "small.summed", "big_total": "big.summed"})
