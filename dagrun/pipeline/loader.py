"""Import a pipeline from a ``.py`` file or an importable module name.

A file is imported under a module name of its own (its stem, unless that name
is taken) and registered in ``sys.modules`` so its functions pickle by
reference; worker processes started with ``spawn`` or ``forkserver`` repeat
the same import from the ``ModuleSource`` before they unpickle any stage.

Every failure of the import is a ``PipelineLoadError`` naming the file and
line, except an interrupt: ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM under
the CLI, see ``signals``) passes through untouched, so a pipeline that hangs
at import can be stopped with the signal's exit code.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from ..errors import DagrunError, PipelineLoadError
from .pipeline import ModuleSource, Pipeline

_PACKAGE = str(Path(__file__).resolve().parent.parent)


def load(target: str | Path | ModuleType | Pipeline) -> Pipeline:
    """The pipeline named by a path, a module name, a module or a ``Pipeline``."""
    if isinstance(target, Pipeline):
        return target
    if isinstance(target, ModuleType):
        return Pipeline.from_module(target, ModuleSource(target.__name__))
    text = str(target)
    if text.endswith(".py") or "/" in text or Path(text).is_file():
        module, source = _import_file(Path(text))
    else:
        module, source = _import_name(text)
    pipe = Pipeline.from_module(module, source)
    if source.path is not None and pipe.name == module.__name__:
        pipe.name = Path(source.path).stem  # `my-pipeline.py` is "my-pipeline", in history too
    return pipe


def import_source(source: ModuleSource) -> ModuleType:
    """Import a pipeline's module in a worker process, the way the driver did."""
    if source.module in sys.modules:
        return sys.modules[source.module]
    if source.path is not None:
        return _exec_file(Path(source.path), source.module)
    return importlib.import_module(source.module)


def _import_name(name: str) -> tuple[ModuleType, ModuleSource]:
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            msg = (
                f"pipeline {name!r} is neither a .py file nor an importable module; "
                f"give a path to the pipeline file, or a module name on the Python path"
            )
            raise PipelineLoadError(msg) from None
        raise _load_error(name, exc) from None
    except (DagrunError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - any import failure is the user's to see
        raise _load_error(name, exc) from None
    return module, ModuleSource(name)


def _import_file(path: Path) -> tuple[ModuleType, ModuleSource]:
    path = path.resolve()
    if path.is_dir():
        msg = (
            f"pipeline {str(path)!r} is a directory; give the pipeline's .py file, or for a "
            f"package its module name (e.g. `pipelines.images`)"
        )
        raise PipelineLoadError(msg)
    if not path.is_file():
        msg = f"pipeline file {str(path)!r} does not exist; check the path"
        raise PipelineLoadError(msg)
    name = _module_name_for(path)
    try:
        module = _exec_file(path, name)
    except (DagrunError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001
        raise _load_error(str(path), exc) from None
    return module, ModuleSource(name, str(path))


def _module_name_for(path: Path) -> str:
    name = path.stem if path.stem.isidentifier() else "dagrun_pipeline"
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) != str(path):
        name = f"dagrun_pipeline_{abs(hash(str(path))):x}"
    return name


def _exec_file(path: Path, name: str) -> ModuleType:
    # The pipeline's own folder goes on the path, as `python pipeline.py` would do,
    # so it can import its sibling modules.
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        msg = f"cannot import {str(path)!r} as Python; is it a .py file?"
        raise PipelineLoadError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _load_error(what: str, exc: BaseException) -> PipelineLoadError:
    if isinstance(exc, SyntaxError):
        where = f"{exc.filename}, line {exc.lineno}"
        detail = f"{exc.msg}\n    {(exc.text or '').rstrip()}"
        msg = f"pipeline {what!r} has a syntax error at {where}: {detail}\nFix it and run again."
        return PipelineLoadError(msg)
    frames = traceback.extract_tb(exc.__traceback__)
    user = [
        f for f in frames if "importlib" not in f.filename and not f.filename.startswith(_PACKAGE)
    ]
    where = f" (at {user[-1].filename}, line {user[-1].lineno})" if user else ""
    msg = (
        f"pipeline {what!r} failed to import{where}: {type(exc).__name__}: {exc}\n"
        "Fix the error and run again."
    )
    return PipelineLoadError(msg)
