"""The hello pipeline of the startup workload: ``dagrun run tests/bench/hello.py``."""

from __future__ import annotations

from dagrun import stage


@stage(cache=False)
def hello() -> str:
    """The greeting."""
    return "hello"


@stage(cache=False)
def greet(hello: str) -> str:
    """The greeting, addressed."""
    return f"{hello}, world"
