"""Build the pipeline's DAG and validate it, before anything runs (no I/O).

``build_graph`` resolves every stage parameter to an input edge, a
``@worker_init`` resource (by name: the pipeline's resources, else one in the
stage's own module) or a parameter value (the rules are in ``stage.py``),
then checks the whole
pipeline and raises one ``ValidationError`` listing every problem: duplicate
names, stages that cannot be imported by reference, missing inputs (with a
"did you mean"), values that do not convert, bad options, unknown ``params``
and ``targets``, and cycles (named in cycle order).

The edges are kept as plain successor lists and ordered with a heap (Kahn's
algorithm, ties in the pipeline's order): a run never imports networkx,
whose import alone costs more than starting the pool. ``Graph.dag`` builds
the ``networkx.DiGraph`` on first use for code that wants the graph library.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ValidationError
from ..pipeline.params import (
    ConversionError,
    annotations_of,
    convert,
    is_secret,
    mask_params,
    plain,
    secret_parameters,
)
from ..pipeline.pipeline import Pipeline
from ..pipeline.resources import Resource, as_resource
from ..pipeline.stage import Stage
from .checks import function_problems, option_problems, value_problems
from .ordering import cycle_problems, topological_order

if TYPE_CHECKING:
    import networkx as nx

RUN_DATE = "run_date"  # a parameter of this name receives the run's logical date
__all__ = ["Graph", "Node", "build_graph", "mask_params"]  # mask_params lives in params

_SKIPPED_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@dataclass(frozen=True)
class Node:
    """A stage with its parameters resolved: where each input comes from, each value."""

    stage: Stage
    inputs: dict[str, str]
    params: dict[str, Any]
    resources: dict[str, str] = field(default_factory=dict)  # parameter -> resource name

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def map_input(self) -> str | None:
        return self.stage.options.map


@dataclass
class Graph:
    """A validated pipeline: nodes, the DAG, a topological order and the run's targets."""

    pipeline: Pipeline
    nodes: dict[str, Node]
    successors: dict[str, list[str]]  # stage -> the distinct stages consuming it
    order: list[str]
    targets: list[str]
    selected: list[str] = field(default_factory=list)
    resources: dict[str, Resource] = field(default_factory=dict)  # those stages ask for

    def upstream(self, name: str) -> list[str]:
        """Distinct stages ``name`` consumes, in order of its parameters."""
        return list(dict.fromkeys(self.nodes[name].inputs.values()))

    def edges(self) -> list[tuple[str, str]]:
        """Every (producer, consumer) edge, producers in topological order."""
        return [(u, v) for u in self.order for v in self.successors[u]]

    def descendants(self, name: str) -> set[str]:
        """Every stage downstream of ``name`` (not ``name`` itself)."""
        found: set[str] = set()
        pending = list(self.successors.get(name, ()))
        while pending:
            stage = pending.pop()
            if stage not in found:
                found.add(stage)
                pending.extend(self.successors[stage])
        return found

    @functools.cached_property
    def dag(self) -> nx.DiGraph:
        """The pipeline as a ``networkx.DiGraph`` (built on first use)."""
        import networkx as nx

        dag = nx.DiGraph()
        dag.add_nodes_from(self.nodes)
        dag.add_edges_from(self.edges())
        return dag


def build_graph(
    pipeline: Pipeline,
    params: Mapping[str, Any] | None = None,
    targets: Iterable[str] | None = None,
    *,
    portable: bool = False,
) -> Graph:
    """Resolve and validate ``pipeline``; raise ``ValidationError`` with every problem.

    ``portable`` demands that every stage can be imported by reference in a
    fresh interpreter (``spawn``, ``forkserver``, clusters).
    """
    params = dict(params or {})
    problems: list[str] = list(pipeline.problems)
    if not pipeline.stages and not problems:
        problems.append(
            f"pipeline {pipeline.name!r} has no stages, so a run would do nothing; decorate "
            f"its functions with @stage (or check that this is the pipeline's file: a "
            f"package's module is named like `package.module`)"
        )
    for name in pipeline.duplicates:
        problems.append(
            f"two different stages are named {name!r}; rename one with "
            f"@stage(name=...) or dagrun.bind(..., name=...)"
        )
    used_params: set[str] = set()
    nodes: dict[str, Node] = {}
    resources: dict[str, Resource] = {}
    sound: set[Any] = set()  # functions already checked and found fine (bound copies share one)
    sound_options: set[int] = set()  # StageOptions (alive in the pipeline) found fine
    for record in pipeline:
        kind_problems = [] if record.func in sound else function_problems(record, portable)
        if not kind_problems and inspect.isfunction(record.func):
            sound.add(record.func)
        problems.extend(kind_problems)
        node, node_problems = _resolve(record, pipeline, params, used_params, resources)
        problems.extend(node_problems)
        nodes[record.name] = node
        if not kind_problems and id(record.options) not in sound_options:
            mapped = node.inputs.get(record.options.map or "")
            produced = _hints(pipeline[mapped]).get("return") if mapped in pipeline else None
            found = option_problems(record, node.inputs, produced)
            problems.extend(found)
            if not found and record.options.map is None:  # the same options, the same answer
                sound_options.add(id(record.options))
        if not kind_problems:
            problems.extend(value_problems(record, node.params,
                                           set(secret_parameters(record.func))))
    for resource in resources.values():
        problems.extend(_resource_problems(resource, pipeline, portable))

    free = _free_parameter_names(nodes, pipeline)
    for key in params:
        if key in used_params:
            continue
        if key in nodes:
            takers = sorted(n.name for n in nodes.values() if key in n.inputs.values())
            by = f" (stage {', '.join(map(repr, takers))} takes it as an input)" if takers else ""
            problems.append(
                f"{key!r} is a stage, not a parameter{by}: a parameter named like a stage is "
                f"always that stage's output; rename the parameter in the stage's function "
                f"to set it with --param"
            )
        else:
            hint = _did_you_mean(key, free)
            known = ", ".join(sorted(free)) or "none"
            problems.append(
                f"unknown parameter {key!r}{hint}; this pipeline's parameters are: {known}"
            )

    successors: dict[str, list[str]] = {name: [] for name in nodes}
    for node in nodes.values():
        for upstream in dict.fromkeys(node.inputs.values()):
            if upstream in nodes:
                successors[upstream].append(node.name)
    order = topological_order(successors, _position(pipeline))
    if len(order) < len(nodes):
        problems.extend(cycle_problems(successors, set(nodes) - set(order)))

    target_list = list(dict.fromkeys(targets or []))
    for target in target_list:
        if target not in nodes:
            problems.append(
                f"unknown target {target!r}{_did_you_mean(target, nodes)}; "
                f"see `dagrun list` for the stages"
            )
    if problems:
        raise ValidationError(problems)

    if not target_list:
        target_list = [n for n in order if not successors[n]]
    selected = (order if len(target_list) == len(nodes)
                else _with_ancestors(nodes, order, target_list))
    used = {r for n in selected for r in nodes[n].resources.values()}
    wanted = {name: r for name, r in resources.items() if name in used}
    return Graph(pipeline, nodes, successors, order, target_list, selected, wanted)


def _hints(record: Stage) -> dict[str, Any]:
    try:
        return _signature(record.func)[1]
    except (TypeError, ValueError):
        return {}


def _with_ancestors(nodes: Mapping[str, Node], order: list[str], targets: list[str]) -> list[str]:
    # One walk from all targets at once, not one per target (layered DAGs have
    # thousands of targets sharing most of their ancestors).
    wanted = set(targets)
    pending = list(targets)
    while pending:
        for upstream in nodes[pending.pop()].inputs.values():
            if upstream in nodes and upstream not in wanted:
                wanted.add(upstream)
                pending.append(upstream)
    return [n for n in order if n in wanted]


def _position(pipeline: Pipeline) -> dict[str, int]:
    return {name: i for i, name in enumerate(pipeline.stages)}


def _resolve(
    record: Stage,
    pipeline: Pipeline,
    params: Mapping[str, Any],
    used: set[str],
    resources: dict[str, Resource],
) -> tuple[Node, list[str]]:
    problems: list[str] = []
    inputs: dict[str, str] = {}
    values: dict[str, Any] = {}
    wanted: dict[str, str] = {}
    try:
        signature, hints = _signature(record.func)
    except (TypeError, ValueError):
        return Node(record, {}, {}), [f"stage {record.name!r} has no inspectable signature"]
    for param in signature.parameters.values():
        if param.kind in _SKIPPED_KINDS:
            continue
        pname = param.name
        explicit = record.inputs.get(pname)
        if explicit is not None:
            if explicit not in pipeline:
                problems.append(
                    f"stage {record.name!r} takes its input {pname!r} from stage "
                    f"{explicit!r}, which is not in the pipeline"
                    f"{_did_you_mean(explicit, pipeline.stages)}"
                )
            inputs[pname] = explicit
            continue
        scoped = f"{record.prefix}.{pname}" if record.prefix else None
        if scoped is not None and scoped in pipeline and scoped != record.name:
            inputs[pname] = scoped
            continue
        if pname in pipeline and pname not in record.bound:
            if pname == record.name:
                problems.append(
                    f"stage {record.name!r} takes a parameter named {pname!r}, like itself: a "
                    f"parameter named like a stage is that stage's output, and a stage cannot "
                    f"consume its own output; rename the parameter (or the stage, with "
                    f"@stage(name=...))"
                )
                continue
            inputs[pname] = pname
            continue
        resource = None if pname in record.bound else _resource_for(pname, record, pipeline)
        if resource is not None:
            known = resources.setdefault(resource.name, resource)
            if known.func is not resource.func:
                problems.append(
                    f"stage {record.name!r} asks for worker resource {pname!r}, but two "
                    f"different @worker_init functions are named {pname!r}; rename one"
                )
            wanted[pname] = resource.name
            continue
        key = scoped if scoped is not None and scoped in params else pname
        if key in params and (key == scoped or pname not in record.bound):
            used.add(key)
            try:
                values[pname] = convert(params[key], hints.get(pname, param.annotation),
                                        param.default)
            except ConversionError as exc:
                hint = hints.get(pname)
                # A Secret's value never reaches a message.
                why = "the value given does not convert" if is_secret(hint) else str(exc)
                problems.append(
                    f"parameter {key!r} of stage {record.name!r}: {why}; "
                    f"give a value of type {_type_name(plain(hint))}"
                )
        elif pname in record.bound:
            values[pname] = record.bound[pname]
        elif param.default is not inspect.Parameter.empty:
            values[pname] = param.default
        elif pname == RUN_DATE:
            values[pname] = None  # the run's logical date, given when the run starts
        else:
            hint = _did_you_mean(pname, pipeline.stages)
            problems.append(
                f"stage {record.name!r} needs {pname!r}, but no stage is named {pname!r} "
                f"and the parameter has no default{hint}; add that stage, give the "
                f"parameter a default, or pass --param {pname}=VALUE"
            )
    return Node(record, inputs, values, wanted), problems


def _resource_for(pname: str, record: Stage, pipeline: Pipeline) -> Resource | None:
    """The pipeline's resource ``pname``, else one the stage's own module defines."""
    resource = pipeline.resources.get(pname)
    if resource is None:
        found = as_resource(getattr(record.func, "__globals__", {}).get(pname))
        resource = found if found is not None and found.name == pname else None
    return resource


def _resource_problems(resource: Resource, pipeline: Pipeline, portable: bool) -> list[str]:
    label = f"worker resource {resource.name!r}"
    problems = []
    if resource.name in pipeline:
        problems.append(
            f"{resource.name!r} is both a stage and a @worker_init resource; rename one"
        )
    try:
        signature = inspect.signature(resource.func)
    except (TypeError, ValueError):
        return [*problems, f"{label} has no inspectable signature"]
    required = [
        p.name for p in signature.parameters.values()
        if p.default is inspect.Parameter.empty and p.kind not in _SKIPPED_KINDS
    ]
    if required:
        problems.append(
            f"{label} takes required parameter(s) {', '.join(map(repr, required))}; a "
            f"@worker_init function is called with no arguments: give them defaults"
        )
    problems.extend(function_problems(Stage(resource.func, resource.name), portable,
                                      label=label, resource=True))
    return problems


@functools.lru_cache(maxsize=4096)
def _signature(func: Any) -> tuple[inspect.Signature, dict[str, Any]]:
    # Programmatic pipelines bind one function thousands of times: inspect it once.
    return inspect.signature(func), annotations_of(func)


def _free_parameter_names(nodes: Mapping[str, Node], pipeline: Pipeline) -> set[str]:
    names: set[str] = set()
    for node in nodes.values():
        for pname in node.params:
            if pname not in node.stage.bound:
                names.add(pname)
            if node.stage.prefix:
                names.add(f"{node.stage.prefix}.{pname}")
    return names


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation or "str")
