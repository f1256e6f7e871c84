"""Programmatic pipelines of no-op stages: independent, and a chain."""

from dagrun import Pipeline, bind


def noop() -> None:
    return None


def link(prev: int | None = None) -> int:
    return 0 if prev is None else prev + 1


def independent(count: int) -> Pipeline:
    return Pipeline([bind(noop, name=f"t{i}") for i in range(count)], name="independent")


def chain(count: int) -> Pipeline:
    stages = [bind(link, name="t0")]
    stages += [bind(link, name=f"t{i}", inputs={"prev": f"t{i - 1}"}) for i in range(1, count)]
    return Pipeline(stages, name="chain")
