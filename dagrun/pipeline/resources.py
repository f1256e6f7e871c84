"""Per-worker resources: ``@worker_init`` functions, run once per worker process.

    @dagrun.worker_init
    def model() -> Model:             # runs once in each worker that needs it
        return load_model()

    @stage
    def predict(rows, model):         # gets its worker's `model`; not a stage input
        ...

This is ``Pool(initializer=...)`` made declarative. A stage asks for a
resource by parameter name (``graph.py`` resolves such a parameter to
``Node.resources``, neither an input nor a pipeline parameter). Each worker
process keeps one ``Resources`` pool: the first task there that needs
``model`` calls the function and the value is kept for every later task in
that process. A replaced worker (crash, timeout, ``--max-tasks-per-worker``)
starts with an empty pool, so the function runs again there. A generator
function is set up by its first ``yield`` and torn down (the code after the
``yield``) when its worker exits normally: the pattern for connections. The
inline executor keeps one pool for the whole run.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])

RESOURCE_ATTRIBUTE = "__dagrun_resource__"


@dataclass(frozen=True)
class Resource:
    """A per-worker value: the function that makes it, and the name stages ask for."""

    func: Callable[[], Any]
    name: str


@overload
def worker_init(func: F, /) -> F: ...
@overload
def worker_init(func: None = None, /, *, name: str | None = None) -> Callable[[F], F]: ...


def worker_init(func: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Declare a function that makes a resource once per worker process.

    A stage receives the value through a parameter of the same ``name``
    (default: the function's name). The function takes no arguments; it runs
    in the worker the first time one of its tasks needs it, and again in a
    replacement worker. A generator function is torn down after its ``yield``
    when the worker exits. Returns the function itself, still callable.
    """

    def decorate(fn: F) -> F:
        record = Resource(func=fn, name=name or getattr(fn, "__name__", "<unnamed>"))
        setattr(fn, RESOURCE_ATTRIBUTE, record)
        return fn

    return decorate(func) if func is not None else decorate


def as_resource(obj: Any) -> Resource | None:
    """The ``Resource`` behind ``obj`` (a ``Resource`` or a decorated function), else None."""
    if isinstance(obj, Resource):
        return obj
    record = getattr(obj, RESOURCE_ATTRIBUTE, None) if callable(obj) else None
    return record if isinstance(record, Resource) else None


class Resources:
    """One process's resource values, made on first use and torn down by ``close``."""

    def __init__(self, funcs: Mapping[str, Callable[[], Any]]) -> None:
        self._funcs = dict(funcs)
        self._values: dict[str, Any] = {}
        self._teardown: list[tuple[str, Generator[Any, None, None]]] = []

    def get(self, name: str) -> Any:
        """The value of resource ``name`` in this process, made now if it is the first ask."""
        if name in self._values:
            return self._values[name]
        func = self._funcs[name]
        if inspect.isgeneratorfunction(func):
            generator = func()
            value = next(generator)
            self._teardown.append((name, generator))
        else:
            value = func()
        self._values[name] = value
        return value

    def close(self) -> None:
        """Tear down generator resources, last made first; a failing teardown is reported."""
        while self._teardown:
            name, generator = self._teardown.pop()
            try:
                next(generator, None)
            except Exception as exc:  # noqa: BLE001 - one bad teardown must not stop the others
                print(f"dagrun: teardown of worker resource {name!r} failed: "
                      f"{type(exc).__name__}: {exc}", file=sys.stderr)
        self._values.clear()
