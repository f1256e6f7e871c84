"""``@stage`` and the ``Stage`` value.

``@stage`` attaches a frozen ``Stage`` record to the function and returns the
function itself, so a stage stays a plain, directly callable (and picklable by
reference) function. ``bind`` and ``include`` derive new ``Stage`` values from
existing ones — a new name, a namespace prefix, bound parameters and renamed
inputs — the ``functools.partial`` of stages.

How a parameter of a stage is resolved (in ``graph.py``):

1. listed in ``Stage.inputs``          -> an input from that stage;
2. ``<prefix>.<param>`` is a stage    -> an input from it (stages of one included
                                          module find each other first);
3. ``<param>`` is a stage              -> an input from it;
4. otherwise                           -> a pipeline parameter: ``params``
   given for the run, else the value bound with ``bind``/``include``, else the
   function's default.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from ..errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])

STAGE_ATTRIBUTE = "__dagrun_stage__"


@dataclass(frozen=True)
class StageOptions:
    """How a stage is run; see ``stage`` for the meaning of each field."""

    retries: int = 0
    retry_delay: float = 0.0
    retry_on: tuple[type[BaseException], ...] = ()
    timeout: float | None = None
    map: str | None = None
    batch_size: int | None = None
    concat: bool = False
    cache: bool = True
    tags: tuple[str, ...] = ()
    cpus: float = 1.0
    memory: int | None = None  # bytes this stage's task needs at its peak
    gpus: float = 0.0
    resources: tuple[tuple[str, float], ...] = ()  # custom engine resources, sorted
    version: str | None = None  # pins the code part of the cache key
    watch: tuple[str, ...] = ()  # files whose content is part of the cache key


@dataclass(frozen=True, eq=False)
class Stage:
    """One node of a pipeline: a function, its name and how it is wired."""

    func: Callable[..., Any]
    name: str
    options: StageOptions = field(default_factory=StageOptions)
    inputs: dict[str, str] = field(default_factory=dict)
    bound: dict[str, Any] = field(default_factory=dict)
    prefix: str = ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **{**self.bound, **kwargs})

    @property
    def parameters(self) -> list[inspect.Parameter]:
        """The function's parameters, in order."""
        return list(inspect.signature(self.func).parameters.values())

    def bind(
        self, name: str | None = None, *, inputs: Mapping[str, str] | None = None, **params: Any
    ) -> Stage:
        """A copy of this stage under ``name``, with inputs renamed and parameters bound."""
        # Built directly, without the frozen dataclass's ``__init__`` (a setattr per field) or
        # ``dataclasses.replace`` (which also reads every field's definition): a generated
        # pipeline binds one stage thousands of times.
        record = object.__new__(Stage)
        record.__dict__.update(func=self.func, name=name or self.name, options=self.options,
                               inputs={**self.inputs, **(inputs or {})},
                               bound={**self.bound, **params}, prefix=self.prefix)
        return record

    def same_as(self, other: Stage) -> bool:
        """True when both describe the same node (a stage reached twice by import)."""
        return (
            self.func is other.func
            and self.name == other.name
            and self.options == other.options
            and self.inputs == other.inputs
            and self.bound == other.bound
            and self.prefix == other.prefix
        )

    def __repr__(self) -> str:
        return f"<Stage {self.name!r} ({self.func.__module__}.{self.func.__qualname__})>"


class StageGroup(tuple):  # type: ignore[type-arg]
    """The stages made by one ``include``; a pipeline collects all of them."""


@overload
def stage(func: F, /) -> F: ...
@overload
def stage(
    func: None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    retry_on: Iterable[type[BaseException]] | type[BaseException] = (),
    timeout: float | None = None,
    map: str | None = None,
    batch_size: int | None = None,
    concat: bool = False,
    cache: bool = True,
    tags: Iterable[str] = (),
    cpus: float = 1.0,
    memory: int | str | None = None,
    gpus: float = 0.0,
    resources: Mapping[str, float] | None = None,
    version: str | None = None,
    watch: Iterable[str] | str = (),
) -> Callable[[F], F]: ...


def stage(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay: float = 0.0,
    retry_on: Iterable[type[BaseException]] | type[BaseException] = (),
    timeout: float | None = None,
    map: str | None = None,
    batch_size: int | None = None,
    concat: bool = False,
    cache: bool = True,
    tags: Iterable[str] = (),
    cpus: float = 1.0,
    memory: int | str | None = None,
    gpus: float = 0.0,
    resources: Mapping[str, float] | None = None,
    version: str | None = None,
    watch: Iterable[str] | str = (),
) -> Any:
    """Declare a function as a pipeline stage.

    The function's parameters that name other stages are its inputs; the rest
    are pipeline parameters. Options:

    - ``name``: the stage's name (default: the function's name).
    - ``retries``: how many times a failed attempt is tried again.
    - ``retry_delay``: seconds before the first retry; doubles each time, with jitter.
    - ``retry_on``: exception types worth retrying (default: any exception;
      crashes and timeouts are always retried).
    - ``timeout``: seconds an attempt may run before its worker is stopped.
    - ``map``: the input to fan out over, in parallel batches. A list, tuple or
      numpy array is mapped element by element: the function runs once per
      element (for an array, a read-only zero-copy view along axis 0 of the
      shared input) and consumers get the ordered list of results. A table
      (Arrow ``Table``/``RecordBatch``, pandas or polars ``DataFrame``) is
      mapped over row chunks: the function runs once per batch, given that
      batch's rows as a zero-copy slice (``table.slice``), and consumers get
      the ordered list of per-chunk results. An empty input maps to ``[]``.
      A failing element fails its batch, with the element's index (or the
      chunk's row range) in the message; ``retries`` re-run the batch.
    - ``batch_size``: elements (or table rows) per task of a mapped stage.
      Default: ``ceil(n / (4 * workers))``, about four batches per worker, so
      uneven elements still balance while per-task overhead stays small.
    - ``concat``: join a mapped stage's results into what a vectorised function
      over the whole input would return: per-element results are stacked
      (``np.stack``: n results of shape s give (n, *s), scalars (n,); other
      values stay a list), per-chunk results of a table or frame are
      concatenated. See ``dagrun.values``.
    - ``cache``: whether results may be reused by later runs.
    - ``tags``: free-form labels shown by ``dagrun list``.
    - ``cpus``, ``memory``, ``gpus``, ``resources``: what one task of the stage
      needs (``memory`` in bytes or as ``"512M"``/``"2G"``): worker resources
      on Dask, resource requests on Ray, admission on the local executor.
    - ``version``: pins the code part of the cache key by hand.
    - ``watch``: paths whose content is part of the cache key.

    Returns the function itself, still directly callable.
    """
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    options = StageOptions(
        retries=retries,
        retry_delay=retry_delay,
        retry_on=tuple(retry_on),
        timeout=timeout,
        map=map,
        batch_size=batch_size,
        concat=concat,
        cache=cache,
        tags=(tags,) if isinstance(tags, str) else tuple(tags),
        cpus=cpus,
        memory=_bytes_option(memory),
        gpus=gpus,
        resources=tuple(sorted((resources or {}).items())),
        version=version,
        watch=_paths(watch),
    )

    def decorate(fn: F) -> F:
        record = Stage(func=fn, name=name or getattr(fn, "__name__", "<unnamed>"), options=options)
        try:
            setattr(fn, STAGE_ATTRIBUTE, record)
            fn.bind = record.bind  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            # Builtins and some callables refuse attributes; hand back a Stage instead.
            return record  # type: ignore[return-value]
        return fn

    return decorate(func) if func is not None else decorate


def _bytes_option(value: int | str | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    from ..units import parse_size

    try:
        return parse_size(value)
    except UsageError:
        return value  # type: ignore[return-value] # validation names the stage and the value


def _paths(watch: Any) -> tuple[Any, ...]:
    # Paths become text; anything else is kept for validation to report.
    if isinstance(watch, str | os.PathLike):
        watch = (watch,)
    try:
        items = tuple(watch)
    except TypeError:
        return (watch,)
    return tuple(os.fspath(w) if isinstance(w, os.PathLike) else w for w in items)


def as_stage(obj: Any) -> Stage | None:
    """The ``Stage`` behind ``obj`` (a ``Stage`` or a decorated function), else None."""
    if isinstance(obj, Stage):
        return obj
    record = getattr(obj, STAGE_ATTRIBUTE, None) if callable(obj) else None
    return record if isinstance(record, Stage) else None
