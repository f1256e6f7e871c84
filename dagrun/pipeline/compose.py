"""Reusing stages: ``bind`` (one stage under a new name, inputs renamed, parameters
bound) and ``include`` (every stage of a module under a prefix)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import ModuleType
from typing import Any

from ..errors import UsageError
from .pipeline import collect_stages
from .stage import Stage, StageGroup, as_stage


def bind(
    obj: Any, name: str | None = None, *, inputs: Mapping[str, str] | None = None, **params: Any
) -> Stage:
    """A copy of a stage under a new ``name``, with ``inputs`` renamed and ``params`` bound.

    ``inputs`` maps a parameter of the function to the stage that feeds it.
    """
    record = as_stage(obj)
    if record is None:
        record = Stage(func=obj, name=name or getattr(obj, "__name__", "<unnamed>"))
    return record.bind(name, inputs=inputs, **params)


def include(
    source: ModuleType | Iterable[Any],
    prefix: str,
    *,
    params: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
) -> StageGroup:
    """Include every stage of a module (or a list of stages) under ``prefix``.

    Each stage ``s`` becomes ``<prefix>.s``; stages of the source keep feeding
    each other inside the prefix. ``params`` binds parameters of the included
    stages (like ``functools.partial``); ``inputs`` connects parameters that
    the source expects from outside to stages of the including pipeline.
    Including one module twice under two prefixes gives two independent copies.
    """
    stages = collect_stages(source) if isinstance(source, ModuleType) else _stages_of(source)
    params = dict(params or {})
    external = dict(inputs or {})
    known = {p.name for record in stages for p in record.parameters}
    unknown = sorted(set(params) - known)
    if unknown:
        msg = (
            f"include(prefix={prefix!r}) binds {', '.join(map(repr, unknown))}, which no "
            f"included stage takes as a parameter; check the spelling or drop it"
        )
        raise UsageError(msg)
    group = []
    for record in stages:
        names = {p.name for p in record.parameters}
        group.append(
            replace(
                record,
                name=f"{prefix}.{record.name}",
                prefix=f"{prefix}.{record.prefix}" if record.prefix else prefix,
                inputs={**record.inputs, **{k: v for k, v in external.items() if k in names}},
                bound={**record.bound, **{k: v for k, v in params.items() if k in names}},
            )
        )
    return StageGroup(group)


def _stages_of(items: Iterable[Any]) -> list[Stage]:
    out = []
    for item in items:
        record = as_stage(item)
        if record is None:
            msg = f"include() expects stages, got {item!r}; decorate it with @stage"
            raise TypeError(msg)
        out.append(record)
    return out
