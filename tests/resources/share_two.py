"""The other of two pipelines that include the same module."""

import dagrun
from tests.resources import shared_mod

common = dagrun.include(shared_mod, prefix="common")


def plus_two(total: int) -> int:
    return total + 2


second = dagrun.bind(plus_two, name="second", inputs={"total": "common.total"})
