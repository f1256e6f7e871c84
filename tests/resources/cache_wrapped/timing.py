"""A decorator in another module, as a project's utilities would have it."""

import functools
import time

elapsed: list[float] = []


def timed(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            elapsed.append(time.perf_counter() - started)

    return wrapper
