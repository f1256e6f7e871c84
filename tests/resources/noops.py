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


def nap(a: float = 0.0, b: float = 0.0, seconds: float = 0.002) -> float:
    import time

    time.sleep(seconds)
    return time.time()


def random_dag(count: int, seed: int = 0) -> Pipeline:
    """Each stage depends on up to two random earlier stages."""
    import random

    rng = random.Random(seed)
    stages = []
    for i in range(count):
        picks = rng.sample(range(i), k=min(i, rng.randint(0, 2)))
        inputs = {param: f"n{j}" for param, j in zip(("a", "b"), picks, strict=False)}
        stages.append(bind(nap, name=f"n{i}", inputs=inputs))
    return Pipeline(stages, name="random_dag")


def quick_or_crash(index: int = 0, crash_at: int = -1) -> int:
    import os

    if index == crash_at:
        os._exit(5)
    return index


def many_quick(count: int, crash_at: int) -> Pipeline:
    """Many short tasks of one function (so they get queued in workers), one crashing."""
    stages = [bind(quick_or_crash, name=f"q{i}", index=i, crash_at=crash_at) for i in range(count)]
    return Pipeline(stages, name="many_quick")
