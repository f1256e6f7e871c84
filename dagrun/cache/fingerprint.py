"""The code part of a cache key: a function and everything of the project it reaches.

    stage function ──▶ its AST (comments gone, docstrings and ``@stage`` stripped)
        │  names and dotted chains it mentions, resolved in its module's globals
        ├─▶ project function / class ──▶ its AST, and so on, transitively
        ├─▶ project module used whole  ──▶ that module's AST
        ├─▶ plain data (numbers, strings, enums, paths, numpy arrays,
        │             containers of them)  ──▶ by value
        ├─▶ installed library          ──▶ distribution name and version
        ├─▶ standard library           ──▶ nothing (the Python version is in the key)
        └─▶ anything else (a logger, a compiled regex, a client) ──▶ its type's
                                            qualified name, reported "not tracked"

The **project** is every module whose file lies under the pipeline's root
directory and not inside an installed environment (``sys.prefix``,
site-packages) nor in dagrun itself. A module outside both (a sibling on
``PYTHONPATH``) counts as project too: tracking too much re-runs a stage,
tracking too little serves a stale result.

``closure(func, root)`` returns every reached item as ``label -> Ref`` with
labels like ``helpers.norm`` or ``library numpy``, so ``explain`` can name
what changed. Each function, class and module file is analysed once per
process (memoised by object and by file stat); a pipeline that binds one
function 200 times walks it once.
"""

from __future__ import annotations

import ast
import enum
import importlib.metadata
import inspect
import os
import site
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from types import ModuleType
from typing import Any

from .hashing import Unhashable, hash_bytes, hash_value
from .sources import definition, module_tree

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
_DAGRUN_DIR = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class Ref:
    """One item a stage's code reaches: ``kind`` is function, class, module,
    constant, library or untracked; ``digest`` identifies its content (a
    version for a library, a type name for an untracked object)."""

    label: str
    kind: str
    digest: str


@dataclass
class _Analysis:
    ref: Ref
    children: list[Any] = field(default_factory=list)  # project objects or leaf Refs


_COMPILED_FUNCTIONS = frozenset({
    "cython_function_or_method", "fused_cython_function", "ufunc", "_ArrayFunctionDispatcher",
    "builtin_function_or_method", "method_descriptor",
})
_ANALYSES: dict[Any, _Analysis] = {}
_MODULE_KINDS: dict[str, str] = {}
_VERSIONS: dict[str, str] = {}
_DISTRIBUTIONS: dict[str, list[str]] | None = None


def closure(func: Any, root: Path) -> dict[str, Ref]:
    """Every item ``func`` reaches, transitively, keyed by label (``func`` itself first)."""
    out: dict[str, Ref] = {}
    seen: set[int] = set()
    # A stage under a ``functools.wraps`` decorator is the wrapper: what it wraps, down to
    # the innermost function, is the stage's code too (the wrapper only closes over it).
    stack = [func]
    while inspect.isfunction(stack[-1]) and inspect.isfunction(
            getattr(stack[-1], "__wrapped__", None)) and len(stack) < 50:
        stack.append(stack[-1].__wrapped__)  # popped first: the innermost leads the labels
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        analysis = _analyse(obj, root)
        out.setdefault(analysis.ref.label, analysis.ref)
        for child in analysis.children:
            if isinstance(child, Ref):
                out.setdefault(child.label, child)
            else:
                stack.append(child)
    return out


def label_of(obj: Any) -> str:
    """``module.qualname`` of a function or class."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"


def _analyse(obj: Any, root: Path) -> _Analysis:
    known = _ANALYSES.get(obj)
    if known is not None:
        return known
    kind = "class" if inspect.isclass(obj) else "module" if inspect.ismodule(obj) else "function"
    if kind == "module":
        node, scope = module_tree(obj.__file__), vars(obj)
        label = obj.__name__
    else:
        node = definition(obj)
        label = _code_label(obj)
        scope = getattr(obj, "__globals__", None)
        if scope is None:
            module = sys.modules.get(obj.__module__)
            scope = vars(module) if module is not None else {}
    if node is None:
        # Without source, what the code reaches is unknown: the stage runs every time.
        code = getattr(obj, "__code__", None)
        digest = hash_bytes(repr(_code_shape(code)).encode()) if code else "no-source"
        analysis = _Analysis(Ref(label, "no-source", digest))
    else:
        text = ast.dump(node, annotate_fields=False, include_attributes=False)
        analysis = _Analysis(Ref(label, kind, hash_bytes(f"{PYTHON}|{text}".encode())))
        code = getattr(obj, "__code__", None)
        # A function's globals are in co_names, never its locals: a parameter named
        # like a stage (every input is) must not count as a reference to that stage.
        names = _global_names(code) if code is not None else None
        for chain in _chains(node):
            if names is not None and chain[0] not in names:
                continue
            child = _resolve(chain, scope, root)
            if child is not None and child is not obj:
                analysis.children.append(child)
    _ANALYSES[obj] = analysis
    return analysis


def _code_label(obj: Any) -> str:
    """``module.qualname`` of a function as its code says (a wrapper's own, not the name
    ``functools.wraps`` copied onto it); a class's ``label_of``."""
    code = getattr(obj, "__code__", None)
    if code is None:
        return label_of(obj)
    module = getattr(obj, "__globals__", {}).get("__name__", getattr(obj, "__module__", "?"))
    return f"{module}.{code.co_qualname}"


def _code_shape(code: Any) -> tuple[Any, ...]:
    # Without source (defined by exec, say) the bytecode stands in for the AST.
    consts = tuple(_code_shape(c) if inspect.iscode(c) else repr(c) for c in code.co_consts)
    return (code.co_code, consts, code.co_names)


def _global_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _global_names(const)
    return names


def _resolve(chain: list[str], scope: dict[str, Any], root: Path) -> Any:
    """A child of the analysis for a dotted name, or None when it does not count."""
    name = chain[0]
    if name not in scope:
        return None  # a local, an argument or a builtin
    obj = scope[name]
    path = [name]
    for attr in chain[1:]:
        if not isinstance(obj, ModuleType) or not hasattr(obj, attr):
            break
        obj = getattr(obj, attr)
        path.append(attr)
    owner = scope.get("__name__", "?")
    wrapped = getattr(obj, "__wrapped__", None)
    if wrapped is not None and inspect.isfunction(inspect.unwrap(obj)):
        obj = inspect.unwrap(obj)
    from ..pipeline.stage import Stage

    if isinstance(obj, Stage):
        obj = obj.func
    if isinstance(obj, ModuleType):
        kind = _module_kind(obj, root)
        if kind == "project" and getattr(obj, "__file__", None):
            return obj
        return _module_ref(obj, kind)
    if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj):
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        if module is None:
            return Ref(f"{owner}.{'.'.join(path)}", "untracked", _type_name(obj))
        kind = _module_kind(module, root)
        if kind == "project" and not inspect.isbuiltin(obj):
            return obj
        return _module_ref(module, kind)
    if type(obj).__name__ in _COMPILED_FUNCTIONS:
        # numpy's ufuncs and dispatchers, Cython functions (pyarrow, pandas): functions
        # of their library, which counts by its version.
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        if module is not None and _module_kind(module, root) != "project":
            return _module_ref(module, _module_kind(module, root))
    label = f"{owner}.{'.'.join(path)}"
    if _plain(obj):
        try:
            return Ref(label, "constant", hash_value(obj))
        except (Unhashable, RecursionError):
            pass
    return Ref(label, "untracked", _type_name(obj))


def _module_ref(module: ModuleType, kind: str) -> Ref | None:
    if kind == "stdlib":
        return None
    top = module.__name__.split(".")[0]
    return Ref(f"library {top}", "library", _version(top, sys.modules.get(top)))


def _plain(value: Any, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if value is None or isinstance(
        value, bool | int | float | complex | str | bytes | enum.Enum | PurePath
    ):
        return True
    if type(value).__module__ == "numpy":  # constant arrays and numpy scalars, by value
        return not getattr(getattr(value, "dtype", None), "hasobject", True)
    if isinstance(value, list | tuple | set | frozenset):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _type_name(obj: Any) -> str:
    cls = obj if inspect.isclass(obj) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _chains(node: ast.AST) -> list[list[str]]:
    """Every name and dotted chain (``a``, ``a.b.c``) the node mentions, in order."""
    found: dict[tuple[str, ...], None] = {}

    def visit(n: ast.AST) -> None:
        if isinstance(n, ast.Attribute):
            parts = []
            base: ast.AST = n
            while isinstance(base, ast.Attribute):
                parts.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name):
                found[(base.id, *reversed(parts))] = None
                return
        elif isinstance(n, ast.Name):
            found[(n.id,)] = None
            return
        for child in ast.iter_child_nodes(n):
            visit(child)

    visit(node)
    return [list(chain) for chain in found]


def _module_kind(module: ModuleType, root: Path) -> str:
    """``project``, ``stdlib`` or ``library`` (dagrun itself counts as a library)."""
    name = module.__name__
    known = _MODULE_KINDS.get(name)
    if known is not None:
        return known
    top = name.split(".")[0]
    file = getattr(module, "__file__", None)
    if file is None:
        kind = "stdlib" if top in sys.stdlib_module_names or top == "builtins" else "library"
    else:
        path = os.path.realpath(file)
        if path.startswith(_DAGRUN_DIR + os.sep):
            kind = "library"
        elif any(path.startswith(prefix) for prefix in _environment_prefixes()):
            kind = "stdlib" if top in sys.stdlib_module_names else "library"
        elif top in sys.stdlib_module_names:
            kind = "stdlib"
        else:
            kind = "project"
    _MODULE_KINDS[name] = kind
    return kind


def _environment_prefixes() -> list[str]:
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    try:
        prefixes.update(site.getsitepackages())
    except AttributeError:
        pass
    return [os.path.realpath(p) + os.sep for p in prefixes]


def _version(top: str, module: ModuleType | None = None) -> str:
    """``dist==version`` of the distribution providing import name ``top``."""
    global _DISTRIBUTIONS
    known = _VERSIONS.get(top)
    if known is not None:
        return known
    version = _try_version(top)
    if version is None and isinstance(getattr(module, "__version__", None), str):
        version = f"{top}=={module.__version__}"  # type: ignore[union-attr]
    if version is None:
        # Slow (reads every installed distribution's file list): only when the
        # distribution is named unlike its import name and has no __version__.
        if _DISTRIBUTIONS is None:
            _DISTRIBUTIONS = dict(importlib.metadata.packages_distributions())
        for dist in _DISTRIBUTIONS.get(top, []):
            version = _try_version(dist)
            if version is not None:
                break
    _VERSIONS[top] = version or "unknown"
    return _VERSIONS[top]


def _try_version(dist: str) -> str | None:
    try:
        return f"{dist}=={importlib.metadata.version(dist)}"
    except importlib.metadata.PackageNotFoundError:
        return None
