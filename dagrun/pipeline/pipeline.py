"""``Pipeline``: the set of stages a run is made of.

A pipeline is usually collected from a module: every stage in its namespace,
imported ones included (that is how modules in ``pipelines/`` are reused),
unless the module defines ``pipeline = Pipeline(...)``, which wins. Two
different stages with one name are recorded as a problem and reported by
validation together with every other problem, and so is a stage hidden under
another decorator (``@other`` above ``@stage``): the name in the module is
then the other decorator's wrapper, which is not the function a worker runs.
``@worker_init`` resources are collected the same way, into ``Pipeline.resources``.
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
        self.problems: list[str] = []  # found while collecting; validation reports them
        self.add(stages)

    def add(self, items: Iterable[Any]) -> None:
        """Add stages (decorated functions, ``Stage`` values or ``include`` groups)
        and ``@worker_init`` resources."""
        for item in items:
            record = item if type(item) is Stage else None  # bound copies: checked first
            if record is None:
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
        problems: list[str] = []
        stages = collect_stages(module, problems)
        pipe = cls([*stages, *collect_resources(module)], name=name, source=source)
        pipe.problems.extend(problems)
        return pipe


def collect_stages(module: ModuleType, problems: list[str] | None = None) -> list[Stage]:
    """Every stage reachable from the module's namespace, in definition order.

    A stage found under another decorator is reported into ``problems``.
    """
    found: list[Stage] = []
    for attr, value in list(vars(module).items()):
        if isinstance(value, StageGroup):
            found.extend(value)
        elif isinstance(value, Pipeline):
            continue
        else:
            record = as_stage(value)
            if record is not None:
                if problems is not None and _wrapped(value, record):
                    problems.append(_wrapped_problem(attr, record))
                    continue
                found.append(record)
            elif problems is not None and isinstance(value, type):
                problems.extend(_method_problems(value, module))
            elif problems is not None and callable(value):
                hidden = _hidden_stage(value, module)
                if hidden is not None:
                    problems.append(_wrapped_problem(attr, hidden))
    return found


def _method_problems(cls: type, module: ModuleType) -> list[str]:
    """Stages defined as methods of a class of ``module``: no worker can call them."""
    if cls.__module__ != module.__name__:
        return []
    problems = []
    for value in vars(cls).values():
        record = as_stage(getattr(value, "__func__", value))
        if record is not None:
            problems.append(
                f"stage {record.name!r} is a method of class {cls.__name__!r}; a stage is "
                f"called with its inputs only, never with an instance: define it with `def` "
                f"at the top level of the module, outside the class"
            )
    return problems


def _wrapped(value: Any, record: Stage) -> bool:
    """``value`` carries a stage's record but is not its function: a wrapper around it."""
    return not isinstance(value, Stage) and value is not record.func


def _hidden_stage(value: Any, module: ModuleType) -> Stage | None:
    """A stage of ``module`` held only in the closure of a wrapper (no functools.wraps)."""
    for cell in getattr(value, "__closure__", None) or ():
        try:
            inner = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        record = as_stage(inner)
        if (
            record is not None
            and getattr(inner, "__module__", None) == module.__name__
            and vars(module).get(getattr(inner, "__name__", "")) is not inner
        ):
            return record
    return None


def _wrapped_problem(attr: str, record: Stage) -> str:
    return (
        f"stage {record.name!r} is wrapped by another decorator placed above @stage, so "
        f"{attr!r} in its module is the wrapper, not the stage's function, and worker "
        f"processes cannot find the function to run; put @stage on the top line, above "
        f"every other decorator"
    )


def collect_resources(module: ModuleType) -> list[Resource]:
    """Every ``@worker_init`` resource in the module's namespace, in definition order."""
    found = (as_resource(value) for value in list(vars(module).values()))
    return [record for record in found if record is not None]
