"""Per-stage checks of validation: what a stage's function and options must be.

Each check returns a list of problems (one paragraph each, naming the stage
and saying how to fix it); ``graph.build_graph`` gathers them with the
pipeline-wide ones and raises once. Everything a worker would otherwise
trip over at run time is caught here: functions a fresh process cannot
import (lambdas, nested functions, methods, stages hidden under another
decorator), functions whose call does not compute a value (generators,
``async def``), options of the wrong type or range, a map over an input
whose annotation says it cannot be split, parameter values a worker cannot
receive (they do not pickle).
"""

from __future__ import annotations

import inspect
import math
import pickle
import sys
from numbers import Real
from typing import Any

from ..pipeline.params import MASK, is_secret, plain
from ..pipeline.stage import Stage
from ..values import unsplittable_annotation

_FIX = "define it with `def` at the top level of the pipeline file or of an importable module"


def function_problems(
    record: Stage, portable: bool, *, label: str = "", resource: bool = False
) -> list[str]:
    """Problems with the stage's function itself: kind, and where workers find it.

    A ``resource`` (``@worker_init``) may be a generator: it yields its value
    and tears down after.
    """
    func = record.func
    label = label or f"stage {record.name!r}"
    qualname = getattr(func, "__qualname__", "")
    module = getattr(func, "__module__", None)
    if "<lambda>" in qualname:
        return [f"{label} is a lambda, which worker processes cannot import; {_FIX}"]
    if "<locals>" in qualname:
        return [
            f"{label} is a nested function ({qualname}), which worker "
            f"processes cannot import; {_FIX}"
        ]
    if not inspect.isfunction(func) and not inspect.isbuiltin(func):
        return [f"{label} is not a plain function ({func!r}); {_FIX}"]
    if "." in qualname:
        owner = qualname.rsplit(".", 1)[0]
        return [
            f"{label} is a method of class {owner!r} ({qualname}); a stage is called with "
            f"its inputs only, never with an instance: {_FIX}, outside the class"
        ]
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        return [
            f"{label} is an `async def` function, which returns a coroutine instead of a "
            f"value; make it a plain `def` (call asyncio.run(...) inside it if it needs "
            f"to await)"
        ]
    if inspect.isgeneratorfunction(func) and not resource:
        return [
            f"{label} is a generator function (it uses `yield`), so calling it computes "
            f"nothing; return a value instead (e.g. `return list(...)`), or use "
            f"@stage(map=...) to fan out over the elements of an input"
        ]
    if not portable:
        return []
    owner_module = sys.modules.get(module or "")
    if owner_module is None or module == "__main__" and not getattr(owner_module, "__file__", None):
        return [
            f"{label} is defined in {module!r}, which a fresh worker process "
            f"cannot import; {_FIX}, or use --start-method fork"
        ]
    target: Any = owner_module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if target is not func:
        return [
            f"{label} cannot be found as {module}.{qualname} by a fresh "
            f"worker process; {_FIX}"
        ]
    return []


def option_problems(record: Stage, inputs: dict[str, str], produced: Any = None) -> list[str]:
    """Options of the wrong type or out of range, and a ``map`` that cannot split its input.

    ``produced`` is the return annotation of the stage a ``map`` fans out over
    (the mapped parameter's own annotation is that of one element).
    """
    options = record.options
    name = record.name
    problems = []
    if options.map is not None and options.map not in inputs:
        have = ", ".join(repr(p) for p in inputs) or "none"
        problems.append(
            f"stage {name!r} maps over {options.map!r}, which is not one of its inputs "
            f"(inputs: {have}); set map= to the name of an input parameter"
        )
    elif options.map is not None and unsplittable_annotation(plain(produced)):
        shown = getattr(plain(produced), "__name__", None) or str(produced)
        problems.append(
            f"stage {name!r} maps over {options.map!r}, whose stage {inputs[options.map]!r} "
            f"returns {shown}, which cannot be split into elements; map over a stage that "
            f"returns an array, a list or a table, or fix its return annotation"
        )
    if options.batch_size is not None and not _integer(options.batch_size, 1):
        problems.append(f"stage {name!r}: batch_size must be a positive integer, "
                        f"got {options.batch_size!r}")
    if not _integer(options.retries, 0):
        problems.append(f"stage {name!r}: retries must be a non-negative integer, "
                        f"got {options.retries!r}")
    if not _number(options.retry_delay, 0):
        problems.append(f"stage {name!r}: retry_delay must be a non-negative number of "
                        f"seconds, got {options.retry_delay!r}")
    if options.timeout is not None and not _number(options.timeout, 0, strict=True):
        problems.append(f"stage {name!r}: timeout must be a positive number of seconds, "
                        f"got {options.timeout!r}")
    for field in ("cpus", "gpus"):
        value = getattr(options, field)
        if not _number(value, 0):
            problems.append(f"stage {name!r}: {field} must be a non-negative number, "
                            f"got {value!r}")
    if options.memory is not None and not _integer(options.memory, 1):
        problems.append(
            f"stage {name!r}: memory must be a positive size in bytes or like '512M' / '2G', "
            f"got {options.memory!r}"
        )
    for key, amount in options.resources:
        if not isinstance(key, str) or not _number(amount, 0):
            problems.append(
                f"stage {name!r}: resources must map names to non-negative numbers, "
                f"got {key!r}: {amount!r}"
            )
    for path in options.watch:
        if not isinstance(path, str):
            problems.append(
                f"stage {name!r}: watch= takes file paths (str or pathlib.Path), "
                f"got {path!r}"
            )
    for kind in options.retry_on:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            problems.append(
                f"stage {name!r}: retry_on takes exception classes, got {kind!r}"
            )
    return problems


def value_problems(record: Stage, values: dict[str, Any], secret: set[str]) -> list[str]:
    """Parameter values a worker process cannot receive (they do not pickle)."""
    problems = []
    for pname, value in values.items():
        if value is None or isinstance(value, str | int | float | bool):
            continue
        try:
            pickle.dumps(value, protocol=5)
        except Exception as exc:  # noqa: BLE001 - any failure means no worker can get it
            shown = MASK if pname in secret else _short(value)
            problems.append(
                f"parameter {pname!r} of stage {record.name!r} has a value ({shown}) that "
                f"cannot be sent to a worker process ({type(exc).__name__}: {exc}); give it "
                f"a value that pickles, or make it a @worker_init resource"
            )
    return problems


def secret_names(hints: dict[str, Any]) -> set[str]:
    """The parameters annotated ``Secret[...]``."""
    return {pname for pname, hint in hints.items() if is_secret(hint)}


def _integer(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _number(value: Any, low: float, *, strict: bool = False) -> bool:
    # int and float first: the ABC check against Real costs more than the rest of a stage's
    # option checks, once per stage of a large pipeline.
    if type(value) not in (int, float) and (not isinstance(value, Real)
                                            or isinstance(value, bool)):
        return False
    if math.isnan(value):
        return False
    return value > low if strict else value >= low


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."
