"""A function's, class's or module's source as a normalised AST, read once per file version.

Docstrings are dropped (they do not change behaviour) and ``@stage(...)``
decorators with them (they hold run options); definitions are indexed by
qualified name, ``<locals>`` included, so a wrapper defined inside a decorator
is found by its code's own qualified name. Source that has no file (a notebook
cell) is read from ``linecache``.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import os
import tokenize
from typing import Any

_TREES: dict[tuple[str, int, int], tuple[ast.Module, dict[str, list[ast.AST]]]] = {}


def definition(obj: Any) -> ast.AST | None:
    """The normalised AST node that defines a function or class, or None."""
    code = getattr(obj, "__code__", None)
    try:
        file = code.co_filename if code is not None else inspect.getsourcefile(obj)
    except TypeError:
        return None
    if file is None:
        return None
    parsed = _parsed(file) if os.path.exists(file) else _parsed_from_linecache(file)
    if parsed is None:
        return None
    tree, index = parsed
    qualname = code.co_qualname if code is not None else getattr(obj, "__qualname__", "")
    candidates = index.get(qualname, [])
    if not candidates:
        return None
    node = candidates[-1]
    if code is not None and len(candidates) > 1:
        for candidate in candidates:
            if _first_line(candidate) == code.co_firstlineno:
                node = candidate
    return _without_stage_decorator(node)


def module_tree(file: str) -> ast.AST:
    """The normalised AST of a whole module file."""
    return _parsed(file)[0]


def _parsed(file: str) -> tuple[ast.Module, dict[str, list[ast.AST]]]:
    info = os.stat(file)
    memo_key = (file, info.st_mtime_ns, info.st_size)
    known = _TREES.get(memo_key)
    if known is not None:
        return known
    with tokenize.open(file) as f:
        tree = ast.parse(f.read(), filename=file)
    index: dict[str, list[ast.AST]] = {}
    _strip_and_index(tree, "", index)
    _TREES[memo_key] = (tree, index)
    return tree, index


def _parsed_from_linecache(file: str) -> tuple[ast.Module, dict[str, list[ast.AST]]] | None:
    """The source of code that has no file (a notebook cell), where ``linecache`` holds it."""
    lines = linecache.getlines(file)
    if not lines:
        return None
    try:
        tree = ast.parse("".join(lines), filename=file)
    except SyntaxError:
        return None
    index: dict[str, list[ast.AST]] = {}
    _strip_and_index(tree, "", index)
    return tree, index


def _strip_and_index(node: ast.AST, prefix: str, index: dict[str, list[ast.AST]]) -> None:
    """Drop docstrings (they do not change behaviour) and index definitions by qualname."""
    body = getattr(node, "body", None)
    if isinstance(body, list) and isinstance(
        node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    ):
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            if isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            qualname = f"{prefix}{child.name}"
            index.setdefault(qualname, []).append(child)
            inner = f"{qualname}.<locals>." if not isinstance(child, ast.ClassDef) else qualname
            _strip_and_index(child, inner if inner.endswith(".") else inner + ".", index)
        else:
            _strip_and_index(child, prefix, index)


def _first_line(node: ast.AST) -> int:
    lines = [node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]
    return min(lines)


def _without_stage_decorator(node: ast.AST) -> ast.AST:
    # ``@stage(retries=..., timeout=...)`` holds run options, not behaviour.
    decorators = getattr(node, "decorator_list", None)
    if not decorators:
        return node
    kept = [d for d in decorators if not _is_stage_decorator(d)]
    if len(kept) == len(decorators):
        return node
    clone = type(node)(**{f: getattr(node, f, None) for f in node._fields})
    clone.decorator_list = kept
    return clone


def _is_stage_decorator(node: ast.AST) -> bool:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Name):
        return target.id == "stage"
    return isinstance(target, ast.Attribute) and target.attr == "stage"
