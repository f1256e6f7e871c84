"""Checks and preparations before a Dask or Ray run: versions, resources, shipping code.

Pure where they can be: each takes what the engine reported and raises one
``UsageError`` naming every problem, before anything runs.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cloudpickle

from ...errors import UsageError
from .remote import versions

__all__ = ["check_feasible", "check_versions", "demand", "pickle_by_value"]


def check_versions(engine: str, found: Mapping[str, Mapping[str, str]]) -> None:
    """Raise a ``UsageError`` naming every worker whose versions differ from the driver's."""
    mine = versions()
    problems = [
        f"{worker}: " + ", ".join(f"{k} {v.get(k)} (driver {mine[k]})" for k in mine
                                  if v.get(k) != mine[k])
        for worker, v in sorted(found.items()) if any(v.get(k) != mine[k] for k in mine)
    ]
    if problems:
        msg = (f"the {engine} workers run other versions than this driver: "
               f"{'; '.join(problems)}; install the same Python, dagrun, numpy and pyarrow "
               f"versions on the workers and the driver")
        raise UsageError(msg)


def demand(options: Any) -> dict[str, float]:
    """What a stage declared it needs, as engine resource amounts; empty when nothing was."""
    wanted = {"CPU": options.cpus if options.cpus != 1.0 else 0.0, "GPU": options.gpus,
              "MEMORY": float(options.memory or 0), **dict(options.resources)}
    return {k: float(v) for k, v in wanted.items() if v}


def check_feasible(engine: str, needs: Mapping[str, Mapping[str, float]],
                   workers: Mapping[str, Mapping[str, float]], hint: str) -> None:
    """Raise a ``UsageError`` for each stage that no worker can ever satisfy."""
    problems = []
    for stage, need in sorted(needs.items()):
        if need and not any(all(have.get(k, 0) >= v for k, v in need.items())
                            for have in workers.values()):
            asked = ", ".join(f"{k}={v:g}" for k, v in need.items())
            problems.append(f"stage {stage!r} needs {asked}")
    if problems:
        offered = "; ".join(f"{w}: {dict(r) or 'nothing'}" for w, r in sorted(workers.items()))
        msg = (f"no {engine} worker can ever run these stages: {'; '.join(problems)} "
               f"(workers offer {offered or 'nothing: there are no workers'}); {hint}")
        raise UsageError(msg)


def pickle_by_value(sources: Sequence[Any]) -> None:
    """Ship the pipeline's module, and modules beside it, by value to the engine's workers."""
    for source in sources:
        module = sys.modules.get(source.module)
        if module is None or getattr(module, "__file__", None) is None:
            continue
        top = sys.modules.get(source.module.split(".")[0], module)
        folder = Path(top.__file__ or "").resolve().parent
        for name, other in list(sys.modules.items()):
            path = getattr(other, "__file__", None)
            if path and _local(Path(path).resolve(), folder) and name.split(".")[0] != "dagrun":
                with contextlib.suppress(ValueError):
                    cloudpickle.register_pickle_by_value(other)


def _local(path: Path, folder: Path) -> bool:
    return path.is_relative_to(folder) and "site-packages" not in path.parts
