"""dagrun stage versions of :mod:`tests.bench.tasks`, and the DAG-to-Pipeline translation.

Each stage does exactly what its plain twin in ``tasks`` does; the stages
take their inputs by parameter name (``prev``, ``a``/``b``, ``x0``…) and
:func:`to_pipeline` binds copies of them under the DAG's task keys with
``dagrun.bind(stage, name=key, inputs={param: dep_key}, **constants)``.

The ``*_empty`` variants allocate their output with ``dagrun.empty`` so that
returning it copies nothing (the in-place handoff).

Importing this module imports dagrun; the harness treats an ImportError here
as "dagrun unavailable" rather than a failure of the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import dagrun
from dagrun import stage

from . import tasks as plain
from .tasks import PAGE_ELEMS, Dag

MAX_REDUCE_INPUTS = 8


@stage(cache=False)
def noop() -> None:
    """Do nothing (a source task)."""
    return None


@stage(cache=False)
def link(prev: Any = None) -> None:
    """Do nothing with one input."""
    return None


@stage(cache=False)
def combine(a: Any = None, b: Any = None) -> None:
    """Do nothing with two inputs."""
    return None


@stage(cache=False)
def burn(iterations: int = 1_000_000) -> int:
    """Spin the CPU in pure Python."""
    return plain.burn(iterations)


@stage(cache=False)
def total(
    x0: Any = None, x1: Any = None, x2: Any = None, x3: Any = None,
    x4: Any = None, x5: Any = None, x6: Any = None, x7: Any = None,
) -> int:
    """Reduce up to eight results."""
    return sum(x for x in (x0, x1, x2, x3, x4, x5, x6, x7) if x is not None)


@stage(cache=False)
def produce(nbytes: int = 8 << 20) -> np.ndarray:
    """Make a fresh float64 array (an ordinary returned array)."""
    return plain.produce(nbytes)


@stage(cache=False)
def produce_empty(nbytes: int = 8 << 20) -> np.ndarray:
    """Make a float64 array allocated in place with ``dagrun.empty``."""
    out = dagrun.empty((nbytes // 8,), np.float64)
    out.fill(1.5)
    return out


@stage(cache=False)
def consume(x: Any = None) -> float:
    """Read one element per page."""
    return float(x[::PAGE_ELEMS].sum())


@stage(cache=False)
def step(prev: Any = None) -> np.ndarray:
    """A fresh array from the previous one (returned normally)."""
    return prev + 1.0


@stage(cache=False)
def step_empty(prev: Any = None) -> np.ndarray:
    """A fresh array from the previous one, written straight into ``dagrun.empty``."""
    out = dagrun.empty(prev.shape, prev.dtype)
    np.add(prev, 1.0, out=out)
    return out


# plain function -> (stage, names of the parameters that take the task's deps, in order)
_ORDINARY: dict[Callable[..., Any], tuple[Any, tuple[str, ...]]] = {
    plain.noop: (noop, ()),
    plain.link: (link, ("prev",)),
    plain.combine: (combine, ("a", "b")),
    plain.burn: (burn, ()),
    plain.total: (total, tuple(f"x{i}" for i in range(MAX_REDUCE_INPUTS))),
    plain.produce: (produce, ()),
    plain.consume: (consume, ("x",)),
    plain.step: (step, ("prev",)),
}
_IN_PLACE = {**_ORDINARY, plain.produce: (produce_empty, ()), plain.step: (step_empty, ("prev",))}


def to_pipeline(dag: Dag, *, in_place: bool = False) -> dagrun.Pipeline:
    """The dagrun ``Pipeline`` running ``dag`` (with ``dagrun.empty`` outputs if ``in_place``)."""
    table = _IN_PLACE if in_place else _ORDINARY
    stages = []
    for t in dag.tasks:
        fn, params = table[t.func]
        if len(t.deps) > len(params):
            msg = f"task {t.key!r} has {len(t.deps)} inputs; its stage takes {len(params)}"
            raise ValueError(msg)
        inputs = dict(zip(params, t.deps, strict=False))
        stages.append(dagrun.bind(fn, name=t.key, inputs=inputs, **dict(t.kwargs)))
    return dagrun.Pipeline(stages)


# --- the scaling workload's maps: one source and a map over it with batch_size=1 ------------


@stage(cache=False)
def list_source(n: int = 1000) -> list[int]:
    """``n`` list items."""
    return list(range(n))


@stage(cache=False)
def array_source(n: int = 1000) -> np.ndarray:
    """``n`` array rows."""
    return np.arange(n, dtype=np.int64)


@stage(cache=False)
def table_source(n: int = 1000) -> Any:
    """``n`` Arrow table rows."""
    import pyarrow as pa

    return pa.table({"x": np.arange(n, dtype=np.int64)})


@stage(cache=False, map="list_source", batch_size=1)
def over_list(list_source: Any) -> None:
    """Nothing, once per list item."""
    return None


@stage(cache=False, map="array_source", batch_size=1)
def over_array(array_source: Any) -> None:
    """Nothing, once per array row."""
    return None


@stage(cache=False, map="table_source", batch_size=1)
def over_table(table_source: Any) -> None:
    """Nothing, once per one-row table."""
    return None


MAPS = {"list": (list_source, over_list), "array": (array_source, over_array),
        "table": (table_source, over_table)}


def map_pipeline(kind: str) -> dagrun.Pipeline:
    """A source of ``n`` elements (parameter ``n``) and a no-op map over it, batch_size=1."""
    return dagrun.Pipeline(list(MAPS[kind]), name=f"map-{kind}")
