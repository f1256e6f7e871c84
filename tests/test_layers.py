"""The package's shape: import contracts, no import cycle, the public surface pinned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx
import pytest

import dagrun

ROOT = Path(__file__).parent.parent


def test_no_module_imports_itself_through_others():
    """No import cycle between dagrun's modules, function-level imports included."""
    graph = grimp.build_graph("dagrun", exclude_type_checking_imports=True)
    edges = nx.DiGraph(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
    )
    assert list(nx.simple_cycles(edges)) == []


@pytest.mark.slow
def test_layers_hold():
    """`lint-imports` keeps every contract in pyproject.toml."""
    linter = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_documented_imports_keep_working():
    """The imports the README shows resolve, the moved `dagrun.summary` among them."""
    import dagrun.summary
    from dagrun.summary import summarize

    from dagrun.executors import register
    from dagrun.settings import Tuning

    assert dagrun.summary.summarize is summarize
    assert dagrun.summary.__name__ == "dagrun.events.summary"
    assert callable(register) and Tuning().prefetch > 0


def test_public_names_are_pinned():
    """`dagrun.__all__` is exactly the public API; each name resolves."""
    assert sorted(dagrun.__all__) == [
        "DagrunError", "Interrupted", "LockHeldError", "ParameterError", "Pipeline",
        "PipelineLoadError", "RunResult", "Secret", "StageFailed", "StageTimeout", "StoreError",
        "StoreFull", "UsageError", "ValidationError", "WorkerCrashed", "bind", "empty",
        "include", "run", "stage", "worker_init", "zeros",
    ]
    for name in dagrun.__all__:
        assert getattr(dagrun, name) is not None


def test_every_error_is_in_the_tree():
    """Each exception class dagrun defines derives from DagrunError and is drawn in
    errors.py's docstring, but for four internal ones that are always caught inside."""
    import importlib
    import inspect
    import pkgutil
    import re

    from dagrun import errors

    internal = {"Unhashable", "ConversionError", "_Emergency", "_Large"}
    found = {}
    for info in pkgutil.walk_packages(dagrun.__path__, "dagrun."):
        if info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ModuleNotFoundError as exc:  # an optional extra that is not installed here
            if exc.name in ("dask", "distributed", "ray"):
                continue
            raise
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == info.name):
                found[name] = obj
    assert internal <= set(found)
    for name, cls in found.items():
        if name in internal:
            continue
        assert issubclass(cls, errors.DagrunError), name
        assert cls.__module__ == "dagrun.errors", name
        assert re.search(rf"(── | ){name}\s", errors.__doc__), name
