"""Executors: where tasks run, built by name from an ``ExecutorContext``.

``base`` holds the protocol and the records that travel; ``inline`` runs in
the calling process; ``local`` is the supervised process pool; ``dask`` and
``ray`` hand tasks to those engines (optional extras); ``worker`` is the task
body every executor shares. The runner asks ``create(name, context)`` for an
executor and never names one itself, so a new executor (an optional extra, a
test's scripted one) plugs in with ``register`` or through the
``dagrun.executors`` entry-point group, without touching the loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from .base import Executor

Factory = Callable[[Any], Any]  # ExecutorContext -> Executor

# Built-in executors, imported on first use: "module:function".
_BUILTIN = {
    "local": ("dagrun.executors.local:create", None),
    "inline": ("dagrun.executors.inline:create", None),
    "dask": ("dagrun.executors.engines.dask:create", "dask"),
    "ray": ("dagrun.executors.engines.ray:create", "ray"),
}
_registered: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Make ``executor=name`` build its executor with ``factory(context)``."""
    _registered[name] = factory


def names() -> list[str]:
    """Every executor name this installation knows."""
    return sorted({*_BUILTIN, *_registered, *_entry_points()})


def known(name: str) -> bool:
    """Whether ``name`` is an executor; the installed packages' metadata is read only for a
    name that is neither built in nor registered (reading it costs milliseconds)."""
    return name in _BUILTIN or name in _registered or name in _entry_points()


def check(executor: str | Factory) -> None:
    """A ``UsageError`` unless ``executor`` is a factory or the name of a known executor."""
    if not callable(executor) and not known(executor):
        msg = f"unknown executor {executor!r}; choose one of: {', '.join(names())}"
        raise UsageError(msg)


def create(name: str, context: Any) -> Executor:
    """The executor called ``name``, built from ``context``; a clear ``UsageError`` if unknown
    or if what its factory built lacks a member of the ``Executor`` protocol."""
    from .base import EXECUTOR_MEMBERS  # the registry itself stays light: the CLI reads it

    built = factory(name)(context)
    missing = [m for m in EXECUTOR_MEMBERS if not hasattr(built, m)]
    if missing:
        with contextlib.suppress(Exception):
            built.close()
        msg = (
            f"executor {name!r} lacks {', '.join(missing)} of the Executor protocol "
            f"(dagrun.executors.base.Executor); implement them, or inherit the usual answers "
            f"from dagrun.executors.base.Capabilities"
        )
        raise UsageError(msg)
    return built


def factory(name: str) -> Factory:
    """The factory of executor ``name``, importing its module (a missing extra is a UsageError)."""
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        target, extra = _BUILTIN[name]
    else:
        target, extra = _entry_points().get(name, ""), None
        if not target:
            msg = f"unknown executor {name!r}; choose one of: {', '.join(names())}"
            raise UsageError(msg)
    module_name, _, attr = target.partition(":")
    try:
        module = import_module(module_name)
    except ImportError as exc:
        if extra is None:
            raise
        msg = (
            f"executor {name!r} needs the optional extra {extra!r} ({exc.name or exc} is not "
            f"installed); install it with: pip install 'dagrun[{extra}]'"
        )
        raise UsageError(msg) from exc
    return getattr(module, attr)


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    try:
        return {ep.name: ep.value for ep in entry_points(group="dagrun.executors")}
    except Exception:  # noqa: BLE001 - broken metadata must not break the built-ins
        return {}
