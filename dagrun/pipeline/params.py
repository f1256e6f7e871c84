"""Convert pipeline-parameter values given as text (``--param NAME=VALUE``).

The parameter's annotation says how: ``int``, ``float``, ``bool``, ``str``,
``pathlib.Path``, ``list[...]``/``tuple[...]`` (comma-separated), ``X | None``.
Values that are not text (``params={...}`` in Python) are taken as they are.

``Secret[T]`` marks a parameter whose value must never be written down: it
converts like ``T`` and reaches the stage as the plain value, but
``mask_params`` (what a run logs as its parameters) shows it as ``***``.
It is ``Annotated[T, SECRET]``, so type checkers see a plain ``T``.
"""

from __future__ import annotations

import functools
import inspect
import pathlib
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


MASK = "***"


class _SecretMark:
    """The ``Annotated`` metadata that makes a parameter secret."""

    def __repr__(self) -> str:
        return "SECRET"


SECRET = _SecretMark()

if TYPE_CHECKING:
    T = typing.TypeVar("T")
    Secret = Annotated[T, SECRET]
else:

    class Secret:
        """``Secret[str]``: a parameter annotation whose value is masked wherever it is logged."""

        def __class_getitem__(cls, inner: Any) -> Any:
            return Annotated[inner, SECRET]


def is_secret(annotation: Any) -> bool:
    """Whether ``annotation`` is ``Secret[...]`` (also inside ``X | None``)."""
    if typing.get_origin(annotation) is Annotated:
        return any(m is SECRET for m in annotation.__metadata__)
    return any(is_secret(arg) for arg in typing.get_args(annotation))


def plain(annotation: Any) -> Any:
    """``annotation`` without ``Annotated`` metadata (``Secret[int]`` -> ``int``)."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


class ConversionError(ValueError):
    """A text value does not convert to the parameter's type."""


def annotations_of(func: Callable[..., Any]) -> dict[str, Any]:
    """The function's resolved annotations, ``Secret`` marks kept; unresolvable ones left out.

    Resolved once per function (a pipeline binds one function to many stages;
    resolving string annotations compiles each one). Callers must not change
    the dict they get.
    """
    try:
        return _annotations_of(func)
    except TypeError:  # an unhashable callable
        return _resolve_annotations(func)


@functools.lru_cache(maxsize=4096)
def _annotations_of(func: Callable[..., Any]) -> dict[str, Any]:
    return _resolve_annotations(func)


def secret_parameters(func: Callable[..., Any]) -> frozenset[str]:
    """The parameters of ``func`` annotated ``Secret[...]`` (worked out once per function)."""
    try:
        return _secret_parameters(func)
    except TypeError:  # an unhashable callable
        return frozenset(p for p, hint in annotations_of(func).items() if is_secret(hint))


@functools.lru_cache(maxsize=4096)
def _secret_parameters(func: Callable[..., Any]) -> frozenset[str]:
    return frozenset(p for p, hint in annotations_of(func).items() if is_secret(hint))


def _resolve_annotations(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # noqa: BLE001 - a bad annotation must not stop the pipeline
        out = {}
        for name, param in inspect.signature(func).parameters.items():
            if param.annotation is not inspect.Parameter.empty and not isinstance(
                param.annotation, str
            ):
                out[name] = param.annotation
        return out


def convert(text: Any, annotation: Any, default: Any = inspect.Parameter.empty) -> Any:
    """``text`` converted to ``annotation`` (or to the default's type when unannotated)."""
    if not isinstance(text, str):
        return text
    annotation = plain(annotation)
    if annotation is inspect.Parameter.empty or annotation is Any:
        if default is inspect.Parameter.empty or default is None:
            return text
        annotation = type(default)
    return _convert(text, annotation)


def _convert(text: str, annotation: Any) -> Any:
    annotation = plain(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in {"none", "null", ""} and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(text, arg)
            except ConversionError as exc:
                errors.append(str(exc))
        raise ConversionError("; ".join(errors))
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple):
        item = args[0] if args else str
        parts = [p.strip() for p in text.split(",")] if text.strip() else []
        values = [_convert(p, item) for p in parts]
        return (origin or annotation)(values)
    if annotation is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        msg = f"{text!r} is not a boolean (use true/false, yes/no, 1/0)"
        raise ConversionError(msg)
    if annotation in (int, float, complex):
        try:
            return annotation(text.strip())
        except ValueError:
            msg = f"{text!r} is not a valid {annotation.__name__}"
            raise ConversionError(msg) from None
    if annotation is str:
        return text
    if isinstance(annotation, type) and issubclass(annotation, pathlib.PurePath):
        return annotation(text)
    if isinstance(annotation, type):
        try:
            return annotation(text)
        except Exception as exc:  # noqa: BLE001
            msg = f"{text!r} does not convert to {annotation.__name__}: {exc}"
            raise ConversionError(msg) from None
    return text


def mask_params(graph: Any) -> dict[str, Any]:
    """Every pipeline parameter of a ``graph.Graph`` with its value, ``Secret`` ones ``***``.

    Keys are as ``--param`` takes them (``prefix.name`` inside an included
    module); a name that any stage declares secret is masked everywhere.
    """
    out: dict[str, Any] = {}
    secret: set[str] = set()
    for name in graph.selected or graph.order:
        node = graph.nodes[name]
        try:
            hints = annotations_of(node.stage.func)
        except (TypeError, ValueError):
            hints = {}
        hidden = secret_parameters(node.stage.func) if hints else set()
        for pname, value in node.params.items():
            key = f"{node.stage.prefix}.{pname}" if node.stage.prefix else pname
            out.setdefault(key, value)
            if pname in hidden:
                secret.add(key)
    return {key: MASK if key in secret else value for key, value in out.items()}
