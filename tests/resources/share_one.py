"""One of two pipelines that include the same module."""

import dagrun
from tests.resources import shared_mod

common = dagrun.include(shared_mod, prefix="common")


def plus_one(total: int) -> int:
    return total + 1


first = dagrun.bind(plus_one, name="first", inputs={"total": "common.total"})
