"""Mistakes that used to surface only at run time: each is a validation problem now."""

from __future__ import annotations

import functools
import threading

from dagrun import stage


def logged(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def bare(func):
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


@logged
@stage
def wrapped() -> int:
    return 1


@bare
@stage
def hidden() -> int:
    return 2


@stage
def generated():
    yield 1


@stage
async def awaited() -> int:
    return 1


class Holder:
    @stage
    def method(self) -> int:
        return 1


@stage
def count(n: int = 3) -> int:
    return n


@stage(map="count")
def each(count: int) -> int:
    return count


@stage
def itself(itself: int = 1) -> int:
    return itself


@stage
def locked(lock: object = threading.Lock()) -> int:  # noqa: B008 - the point of the fixture
    return 1


@stage(cpus=-1, memory="lots", gpus=-2, resources={"licences": "many"}, watch=[3],
       timeout="10", retries=-1, batch_size=0, retry_delay=-1)
def optioned(count: int) -> int:
    return count
