"""Cache keys for a whole graph, and why each stage would (or would not) run.

Keys form a Merkle chain down the DAG, computed in topological order::

    key(stage) = xxh3_128(canonical JSON of components)
    components = {
        "format":  CACHE_FORMAT_VERSION,
        "python":  "3.11"                       (absent when version= pins the code)
        "code":    {label: [kind, digest]}      the function and all it reaches,
                                                or {"version": "<pinned>"}
        "params":  {name: digest}               bound / given / default values;
                                                run_date only where the stage takes it
        "files":   {name or path: digest}       Path parameters and watch= paths
        "inputs":  {param: [upstream, its key]}
    }

plus human-only ``shown`` (short reprs of parameters) and ``untracked``
(globals counted by type only), which do not enter the key. A stage with
``cache=False`` gets ``volatile=True``; a stage downstream of one has its
key computed from that upstream's key until the runner knows the value and
passes it in ``outputs`` (then the input counts by its content hash).

``explain`` compares a key with the cache (hit, corrupt, miss) and, on a
miss, the components recorded by the last run of the same pipeline, and
says in words what changed. Pure over its inputs apart from ``cache`` reads.
"""

from __future__ import annotations

import glob
import inspect
import json
import os
import pathlib
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CacheCorrupt, UnhashableParameter
from ..graph.build import Graph
from .fingerprint import PYTHON, closure, label_of
from .hashing import Unhashable, hash_bytes, hash_path, hash_value

CACHE_FORMAT_VERSION = 1
_SHOWN_CHARS = 60


@dataclass(frozen=True)
class KeyRecord:
    """A stage's cache key and the components it was made from."""

    key: str
    components: dict[str, Any] = field(default_factory=dict)
    volatile: bool = False  # computed every run, never stored (``why`` says what makes it so)
    why: str = ""
    failed: bool = False  # a recorded key: the stage failed under it, last time it ran
    unstored: bool = False  # a recorded key: its result was not written (cheaper to remake)


@dataclass(frozen=True)
class Reason:
    """Whether a stage would run, and why, in words."""

    stage: str
    would_run: bool
    reason: str
    notes: tuple[str, ...] = ()


def pipeline_key(graph: Graph) -> str:
    """A stable name for the pipeline (its file or module), for the manifest."""
    source = graph.pipeline.source
    if source is not None and source.path:
        return str(Path(source.path).resolve())
    if source is not None:
        return source.module
    return graph.pipeline.name


def project_root(graph: Graph) -> Path:
    """The directory whose modules count as the pipeline's own code."""
    source = graph.pipeline.source
    if source is not None and source.path:
        return Path(source.path).resolve().parent
    name = source.module if source is not None else None
    if name is None and graph.nodes:
        name = next(iter(graph.nodes.values())).stage.func.__module__
    module = sys.modules.get((name or "").split(".")[0])
    file = getattr(module, "__file__", None)
    if file is None:
        return Path.cwd()
    path = Path(file).resolve()
    return path.parent.parent if path.name == "__init__.py" else path.parent


def plan_keys(
    graph: Graph,
    run_date: Any = None,
    *,
    outputs: Mapping[str, Any] | None = None,
    root: Path | None = None,
) -> dict[str, KeyRecord]:
    """Every stage's ``KeyRecord``, in topological order; raises ``UnhashableParameter``."""
    root = root or project_root(graph)
    outputs = outputs or {}
    closures: dict[Any, dict[str, list[str]]] = {}
    keys: dict[str, KeyRecord] = {}
    for name in graph.order:
        node = graph.nodes[name]
        record = node.stage
        options = record.options
        func = record.func
        components: dict[str, Any] = {"format": CACHE_FORMAT_VERSION}
        if options.version is not None:
            components["code"] = {"version": options.version}
        else:
            components["python"] = PYTHON
            components["function"] = label_of(func)
            code = closures.get(func)
            if code is None:
                code = {label: [ref.kind, ref.digest] for label, ref in closure(func, root).items()}
                closures[func] = code
            components["code"] = code
        values = dict(node.params)
        if run_date is not None and "run_date" in _hints(func)[""]:
            values["run_date"] = run_date
        params, files, shown = _params(name, values, func)
        for path in options.watch:
            files[f"watch:{path}"] = hash_watched(path)
        components["params"] = params
        components["files"] = files
        inputs: dict[str, list[str]] = {}
        for param, upstream in node.inputs.items():
            if upstream in outputs:
                try:
                    inputs[param] = [upstream, "value:" + hash_value(outputs[upstream])]
                except Unhashable as exc:
                    raise UnhashableParameter(name, param, str(exc)) from None
            else:
                inputs[param] = [upstream, keys[upstream].key]
        components["inputs"] = inputs
        key = hash_bytes(json.dumps(components, sort_keys=True).encode())
        components["shown"] = shown
        components["untracked"] = sorted(
            f"{label} ({kind_digest[1]})"
            for label, kind_digest in components["code"].items()
            if isinstance(kind_digest, list) and kind_digest[0] == "untracked"
        )
        why = _why_volatile(options.cache, components["code"])
        keys[name] = KeyRecord(key, components, volatile=bool(why), why=why)
    return keys


def _why_volatile(cache: bool, code: Mapping[str, Any]) -> str:
    """Why a stage must run every time, or ''."""
    if not cache:
        return "cache=False: runs every time"
    blind = sorted(label for label, kind_digest in code.items()
                   if isinstance(kind_digest, list) and kind_digest[0] == "no-source")
    if blind:
        return (f"source not available ({', '.join(blind)}): what it reads cannot be known, "
                f"so it runs every time; define it in a file")
    return ""


def hash_watched(path: str) -> str:
    """A ``watch=`` entry's digest: a file's or directory's content, or every file a glob
    pattern matches (names and contents); ``missing`` when nothing matches."""
    if not glob.has_magic(path):
        return hash_path(path)
    matched = sorted(glob.glob(path, recursive=True))
    if not matched:
        return "missing"
    return hash_bytes(json.dumps([[m, hash_path(m)] for m in matched]).encode())


def _params(
    stage: str, values: Mapping[str, Any], func: Any
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    hints = _hints(func)
    params: dict[str, str] = {}
    files: dict[str, str] = {}
    shown: dict[str, str] = {}
    for pname, value in values.items():
        try:
            params[pname] = hash_value(value)
        except (Unhashable, RecursionError) as exc:
            raise UnhashableParameter(stage, pname, str(exc)) from None
        text = repr(value)
        shown[pname] = text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
        if _is_path(value, hints.get(pname)) and value is not None:
            path = Path(value)
            if path.exists():
                files[pname] = hash_path(path)
    return params, files, shown


_HINTS: dict[Any, dict[str, Any]] = {}


def _hints(func: Any) -> dict[str, Any]:
    known = _HINTS.get(func)
    if known is None:
        from ..pipeline.params import annotations_of

        known = annotations_of(func)
        known[""] = tuple(inspect.signature(func).parameters)
        _HINTS[func] = known
    return known


def _is_path(value: Any, annotation: Any) -> bool:
    if isinstance(value, pathlib.PurePath):
        return True
    if annotation is None or not isinstance(value, str | os.PathLike):
        return False
    candidates = typing.get_args(annotation) or (annotation,)
    return any(isinstance(c, type) and issubclass(c, pathlib.PurePath) for c in candidates)


def explain(
    graph: Graph, cache: Any, keys: Mapping[str, KeyRecord], pipeline: str
) -> dict[str, Reason]:
    """For every selected stage: would it run, and why (nothing is run)."""
    out: dict[str, Reason] = {}
    for name in graph.selected or graph.order:
        rec = keys[name]
        notes = tuple(f"not tracked: {item}" for item in rec.components.get("untracked", []))
        notes += tuple(f"watch {label.removeprefix('watch:')!r} matches nothing"
                       for label, digest in rec.components.get("files", {}).items()
                       if label.startswith("watch:") and digest == "missing")
        volatile_up = [u for u in graph.upstream(name) if u in out and keys[u].volatile]
        if rec.volatile:
            out[name] = Reason(name, True, rec.why, notes)
            continue
        if volatile_up:
            ups = ", ".join(repr(u) for u in volatile_up)
            why = f"upstream {ups} runs every time; its result decides"
            out[name] = Reason(name, True, why, notes)
            continue
        damage = None
        try:
            entry = cache.lookup(rec.key)
        except CacheCorrupt as exc:
            entry, damage = None, exc.reason
        if entry is not None:
            out[name] = Reason(name, False, "cached", notes)
            continue
        previous = cache.previous(pipeline, name)
        changes = [] if previous is None else describe_changes(previous.components, rec)
        running_up = [u for u in graph.upstream(name) if out.get(u) and out[u].would_run]
        if damage is not None:
            why = f"cache entry is damaged ({damage}); it will be recomputed"
        elif previous is None:
            why = "no cache entry (no earlier run recorded)"
        elif previous.failed and not changes:
            why = "it failed last time, with everything as it is now; it will run again"
        elif previous.unstored and not changes:
            why = ("not stored: recomputing is cheaper than writing and reading its result "
                   "(a large value made quickly)")
        elif changes:
            running = {f"input {u!r} changed": f"upstream {u!r} will run" for u in running_up}
            why = "; ".join(running.get(change, change) for change in changes)
            if previous.failed:
                why += " (it failed last time)"
        elif running_up:
            why = f"upstream {', '.join(repr(u) for u in running_up)} will run"
        else:
            why = "no cache entry (removed, or the earlier run did not finish it)"
        out[name] = Reason(name, True, why, notes)
    return out


def describe_changes(old: Mapping[str, Any], rec: KeyRecord) -> list[str]:
    """What differs between recorded components and ``rec``'s, in words."""
    new = rec.components
    changes: list[str] = []
    if old.get("format") != new.get("format"):
        changes.append("cache format changed")
    if old.get("python") != new.get("python"):
        changes.append(f"Python version changed ({old.get('python')} -> {new.get('python')})")
    changes.extend(_code_changes(old.get("code", {}), new.get("code", {}), new.get("function")))
    old_params, new_params = old.get("params", {}), new.get("params", {})
    old_shown, new_shown = old.get("shown", {}), new.get("shown", {})
    for pname in sorted(set(old_params) | set(new_params)):
        if old_params.get(pname) != new_params.get(pname):
            before, after = old_shown.get(pname, "?"), new_shown.get(pname, "?")
            changes.append(f"parameter {pname!r} changed ({before} -> {after})")
    old_files, new_files = old.get("files", {}), new.get("files", {})
    for fname in sorted(set(old_files) | set(new_files)):
        if old_files.get(fname) != new_files.get(fname):
            what = fname.removeprefix("watch:")
            kind = "watched file" if fname.startswith("watch:") else "file of parameter"
            changes.append(f"{kind} {what!r} changed")
    old_inputs, new_inputs = old.get("inputs", {}), new.get("inputs", {})
    for param in sorted(set(old_inputs) | set(new_inputs)):
        if old_inputs.get(param) != new_inputs.get(param):
            upstream = (new_inputs.get(param) or old_inputs.get(param))[0]
            changes.append(f"input {upstream!r} changed")
    return changes


def _code_changes(old: Mapping[str, Any], new: Mapping[str, Any], first: Any) -> list[str]:
    if "version" in old or "version" in new:
        if old.get("version") != new.get("version"):
            return [f"pinned version changed ({old.get('version')} -> {new.get('version')})"]
        return []
    out = []
    for label in sorted(set(old) | set(new)):
        before, after = old.get(label), new.get(label)
        if before == after:
            continue
        kind = (after or before)[0]
        noun = {
            "function": "function" if label == first else "helper",
            "class": "class",
            "module": "module",
            "constant": "constant",
            "library": "",
            "untracked": "global",
        }.get(kind, kind)
        if kind == "library":
            out.append(f"{label} changed ({before and before[1]} -> {after and after[1]})")
        elif before is None:
            out.append(f"{noun} {label} is newly used")
        elif after is None:
            out.append(f"{noun} {label} is no longer used")
        else:
            out.append(f"{noun} {label} changed")
    return out


__all__ = [
    "CACHE_FORMAT_VERSION",
    "KeyRecord",
    "Reason",
    "describe_changes",
    "explain",
    "label_of",
    "pipeline_key",
    "plan_keys",
    "project_root",
]
