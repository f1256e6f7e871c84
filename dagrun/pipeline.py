"""``Pipeline``: the set of stages a run is made of.

A pipeline is usually collected from a module: every stage in its namespace,
imported ones included (that is how modules in ``pipelines/`` are reused),
unless the module defines ``pipeline = Pipeline(...)``, which wins. Two
different stages with one name are recorded as a problem and reported by
validation together with every other problem. ``@worker_init`` resources
are collected the same way, into ``Pipeline.resources``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .resources import Resource, as_resource
from .stage import Stage, StageGroup, as_stage


@dataclass(frozen=True)
class ModuleSource:
    """How a worker process re-imports the module a pipeline was loaded from."""

    module: str
    path: str | None = None  # set for pipeline files loaded by path


class Pipeline:
    """A named collection of stages, keyed by stage name."""

    def __init__(
        self,
        stages: Iterable[Any] = (),
        *,
        name: str = "pipeline",
        source: ModuleSource | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.stages: dict[str, Stage] = {}
        self.resources: dict[str, Resource] = {}
        self.duplicates: list[str] = []
        self.add(stages)

    def add(self, items: Iterable[Any]) -> None:
        """Add stages (decorated functions, ``Stage`` values or ``include`` groups)
        and ``@worker_init`` resources."""
        for item in items:
            if isinstance(item, StageGroup | Pipeline):
                self.add(item)
                if isinstance(item, Pipeline):
                    self.resources.update(item.resources)
                continue
            resource = as_resource(item)
            if resource is not None:
                self.resources.setdefault(resource.name, resource)
                continue
            record = as_stage(item)
            if record is None:
                msg = f"Pipeline() expects stages, got {item!r}; decorate it with @stage"
                raise TypeError(msg)
            known = self.stages.get(record.name)
            if known is None:
                self.stages[record.name] = record
            elif not known.same_as(record) and record.name not in self.duplicates:
                self.duplicates.append(record.name)

    def __iter__(self) -> Iterator[Stage]:
        return iter(self.stages.values())

    def __len__(self) -> int:
        return len(self.stages)

    def __contains__(self, name: object) -> bool:
        return name in self.stages

    def __getitem__(self, name: str) -> Stage:
        return self.stages[name]

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r}: {len(self.stages)} stages>"

    @classmethod
    def from_module(cls, module: ModuleType, source: ModuleSource | None = None) -> Pipeline:
        """The module's explicit ``pipeline`` if it has one, else all its stages."""
        explicit = getattr(module, "pipeline", None)
        name = module.__name__.rsplit(".", 1)[-1]
        if isinstance(explicit, Pipeline):
            if explicit.source is None:
                explicit.source = source
            return explicit
        return cls([*collect_stages(module), *collect_resources(module)], name=name, source=source)


def collect_stages(module: ModuleType) -> list[Stage]:
    """Every stage reachable from the module's namespace, in definition order."""
    found: list[Stage] = []
    for value in list(vars(module).values()):
        if isinstance(value, StageGroup):
            found.extend(value)
        elif isinstance(value, Pipeline):
            continue
        else:
            record = as_stage(value)
            if record is not None:
                found.append(record)
    return found


def collect_resources(module: ModuleType) -> list[Resource]:
    """Every ``@worker_init`` resource in the module's namespace, in definition order."""
    found = (as_resource(value) for value in list(vars(module).values()))
    return [record for record in found if record is not None]
