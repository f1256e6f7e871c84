"""The peers: one class per engine, each running any :class:`~tests.bench.tasks.Dag`.

A peer is a context manager: ``__enter__`` starts its engine (a pool, a
cluster, ``ray.init``), ``__exit__`` stops it, and ``run(dag)`` executes the
DAG and returns the sinks' results. Start-up is outside ``run`` on purpose:
the steady-state workloads measure ``run`` only, and the ``startup``
workload measures start-up on its own.

::

    floor           sequential calls in this process (the floor)
    dagrun          dagrun.run(Pipeline, workers=N) — owns its pool, so its
                    start-up is inside run() and is subtracted by the harness
                    (the same DAG of one no-op task, run just before)
    dagrun-empty    dagrun, producers allocate with dagrun.empty (handoff, memory)
    pool            multiprocessing.Pool as the seed guide writes it
                    (``with Pool(processes=N)``, ``apply_async`` + callbacks),
                    driven by a ready queue; values travel by pickling
    ppe             concurrent.futures.ProcessPoolExecutor, same ready queue
    shm             handoff by hand with multiprocessing.shared_memory, the
                    seed's naive way (create, copy in, attach, unlink)
    dask-processes  dask.multiprocessing.get on a warm pool, no fusion
    dask-cluster    distributed.LocalCluster(2 workers x 1 thread), client.get
    ray             ray.remote tasks, refs passed as arguments
    joblib          Parallel(n_jobs=N), level by level (it has no DAG)

A peer that cannot run a DAG says why in :meth:`Peer.unsupported`.
"""

from __future__ import annotations

import functools
import os
import queue
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .tasks import Dag, Task, run_sequential

SHM_PREFIX = "dagrun-bench-"


class Unavailable(Exception):
    """The peer's package is not installed or not usable here."""


class Peer:
    """Base class: start an engine, run DAGs on it, stop it."""

    name: ClassVar[str] = "?"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def unsupported(self, dag: Dag, kind: str) -> str | None:
        """Why this peer does not run ``dag`` of workload ``kind``; None when it does."""
        return None

    def run(self, dag: Dag) -> dict[str, Any]:
        """Run ``dag``; return the sinks' results."""
        raise NotImplementedError


class Floor(Peer):
    """Sequential, in this process."""

    name = "floor"

    def run(self, dag: Dag) -> dict[str, Any]:
        return run_sequential(dag)


def drive_ready_queue(dag: Dag, submit: Callable[[Task, tuple[Any, ...], Callable], None]) -> dict:
    """Run ``dag`` by submitting each task the moment its inputs are done.

    ``submit(task, args, report)`` starts ``task.func(*args, **task.kwargs)``
    somewhere and arranges for ``report(key, ok, value)`` to be called (from any
    thread) when it ends. Results come back to this process and are passed on
    to consumers as arguments; each is dropped after its last consumer.
    """
    done: queue.SimpleQueue[tuple[str, bool, Any]] = queue.SimpleQueue()
    report = lambda key, ok, value: done.put((key, ok, value))  # noqa: E731
    by_key = {t.key: t for t in dag.tasks}
    dependents: dict[str, list[str]] = defaultdict(list)
    waiting = {t.key: len(t.deps) for t in dag.tasks}
    for t in dag.tasks:
        for d in t.deps:
            dependents[d].append(t.key)
    left = dag.consumers()
    sinks = set(dag.sinks)
    results: dict[str, Any] = {}
    for t in dag.tasks:
        if not t.deps:
            submit(t, (), report)
    for _ in range(len(dag.tasks)):
        key, ok, value = done.get()
        if not ok:
            raise value
        results[key] = value
        for k in dependents[key]:
            waiting[k] -= 1
            if waiting[k] == 0:
                t = by_key[k]
                submit(t, tuple(results[d] for d in t.deps), report)
        for d in by_key[key].deps:
            left[d] -= 1
            if left[d] == 0 and d not in sinks:
                del results[d]
    return {k: results[k] for k in dag.sinks}


class SeedPool(Peer):
    """``multiprocessing.Pool`` the way the seed guide uses it."""

    name = "pool"

    def __enter__(self) -> SeedPool:
        from multiprocessing import Pool

        self.pool = Pool(processes=self.workers)
        self.pool.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.__exit__(None, None, None)  # terminate(), as `with Pool()` does
        self.pool.join()

    def run(self, dag: Dag) -> dict[str, Any]:
        def submit(task: Task, args: tuple[Any, ...], report: Callable) -> None:
            self.pool.apply_async(
                task.func,
                args,
                dict(task.kwargs),
                callback=lambda v, k=task.key: report(k, True, v),
                error_callback=lambda e, k=task.key: report(k, False, e),
            )

        return drive_ready_queue(dag, submit)


class Executor(Peer):
    """``concurrent.futures.ProcessPoolExecutor`` with the same ready queue."""

    name = "ppe"

    def __enter__(self) -> Executor:
        from concurrent.futures import ProcessPoolExecutor

        self.executor = ProcessPoolExecutor(max_workers=self.workers)
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def run(self, dag: Dag) -> dict[str, Any]:
        def submit(task: Task, args: tuple[Any, ...], report: Callable) -> None:
            def done(fut: Any, k: str = task.key) -> None:
                exc = fut.exception()
                report(k, exc is None, exc if exc is not None else fut.result())

            self.executor.submit(task.func, *args, **task.kwargs).add_done_callback(done)

        return drive_ready_queue(dag, submit)


# --- the naive shared_memory handoff (seed guide style) -------------------------------------


def shm_produce(nbytes: int, name: str) -> tuple[str, tuple[int, ...], str]:
    """Producer: make the array, copy it into a new SharedMemory block, return its name."""
    from multiprocessing import shared_memory

    from .tasks import produce

    a = produce(nbytes)
    shm = shared_memory.SharedMemory(name=name, create=True, size=max(a.nbytes, 1))
    buf = np.ndarray(a.shape, dtype=a.dtype, buffer=shm.buf)
    buf[:] = a[:]  # copy once
    del buf
    shm.close()
    return shm.name, a.shape, a.dtype.str


def shm_consume(handle: tuple[str, tuple[int, ...], str]) -> float:
    """Consumer: attach by name, read, close."""
    from multiprocessing import shared_memory

    from .tasks import consume

    name, shape, dtype = handle
    existing = shared_memory.SharedMemory(name=name)
    arr = np.ndarray(shape, dtype=dtype, buffer=existing.buf)
    try:
        return consume(arr)
    finally:
        del arr
        existing.close()


def is_handoff(dag: Dag) -> bool:
    """True for the handoff workload's DAG (a producer and a consumer)."""
    return [t.key for t in dag.tasks] == ["produce", "consume"]


class NaiveShm(SeedPool):
    """Handoff through a hand-written ``SharedMemory`` block on the seed's Pool."""

    name = "shm"

    def unsupported(self, dag: Dag, kind: str) -> str | None:
        return None if kind == "handoff" else "hand-written handoff only"

    def run(self, dag: Dag) -> dict[str, Any]:
        if not is_handoff(dag):
            return super().run(dag)
        from multiprocessing import shared_memory

        nbytes = dag.tasks[0].kwargs["nbytes"]
        handle = self.pool.apply_async(shm_produce, (nbytes, SHM_PREFIX + uuid.uuid4().hex)).get()
        try:
            value = self.pool.apply_async(shm_consume, (handle,)).get()
        finally:
            shm = shared_memory.SharedMemory(name=handle[0])
            shm.close()
            shm.unlink()
        return {"consume": value}


# --- Dask ---------------------------------------------------------------------------------


def dask_graph(dag: Dag, prefix: str = "") -> dict[str, tuple]:
    """``dag`` as a low-level Dask graph (constants bound with functools.partial).

    ``prefix`` makes keys unique per run: a distributed scheduler may still hold
    the previous run's keys and would hand back their old values.
    """
    graph: dict[str, tuple] = {}
    for t in dag.tasks:
        fn = functools.partial(t.func, **t.kwargs) if t.kwargs else t.func
        graph[prefix + t.key] = (fn, *(prefix + d for d in t.deps))
    return graph


class DaskProcesses(Peer):
    """Dask's ``processes`` scheduler on a warm pool, without task fusion."""

    name = "dask-processes"

    def __enter__(self) -> DaskProcesses:
        try:
            from concurrent.futures import ProcessPoolExecutor

            import dask.multiprocessing as dmp
        except ImportError as exc:
            raise Unavailable(f"dask not installed ({exc})") from exc
        self.get = dmp.get
        os.environ.setdefault("PYTHONHASHSEED", "6640")  # what dask does for its own pools
        self.executor = ProcessPoolExecutor(
            self.workers, mp_context=dmp.get_context(), initializer=dmp.initialize_worker_process
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def run(self, dag: Dag) -> dict[str, Any]:
        keys = list(dag.sinks)
        values = self.get(dask_graph(dag), keys, pool=self.executor, optimize_graph=False)
        return dict(zip(keys, values, strict=True))


class DaskCluster(Peer):
    """A 2-worker ``distributed.LocalCluster`` (one thread per worker process)."""

    name = "dask-cluster"

    def __enter__(self) -> DaskCluster:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise Unavailable(f"dask[distributed] not installed ({exc})") from exc
        self.cluster = LocalCluster(
            n_workers=self.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        self.client = Client(self.cluster)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.cluster.close()

    def run(self, dag: Dag) -> dict[str, Any]:
        if is_handoff(dag):
            return self._handoff(dag)
        prefix = f"{uuid.uuid4().hex[:8]}-"
        values = self.client.get(dask_graph(dag, prefix), [prefix + k for k in dag.sinks])
        return dict(zip(dag.sinks, values, strict=True))

    def _handoff(self, dag: Dag) -> dict[str, Any]:
        """Producer on one worker, consumer pinned to the other: a real transfer.

        Left alone, the scheduler runs the consumer where the data already is
        and nothing is handed off at all.
        """
        first, second = sorted(self.client.scheduler_info()["workers"])[:2]
        produce, consume = dag.tasks
        fut = self.client.submit(produce.func, **produce.kwargs, workers=[first], pure=False)
        out = self.client.submit(consume.func, fut, workers=[second], pure=False)
        return {"consume": out.result()}


# --- Ray ----------------------------------------------------------------------------------


class Ray(Peer):
    """Ray tasks; object refs passed as arguments, freed by Ray's reference counting."""

    name = "ray"

    def __enter__(self) -> Ray:
        try:
            import ray
        except ImportError as exc:
            raise Unavailable(f"ray not installed ({exc})") from exc
        self.ray = ray
        ray.init(
            num_cpus=self.workers,
            include_dashboard=False,
            logging_level="ERROR",
            log_to_driver=False,
        )
        self.remotes: dict[Callable, Any] = {}
        return self

    def __exit__(self, *exc: object) -> None:
        self.ray.shutdown()

    def run(self, dag: Dag) -> dict[str, Any]:
        refs: dict[str, Any] = {}
        for t in dag.tasks:
            rf = self.remotes.get(t.func)
            if rf is None:
                rf = self.remotes[t.func] = self.ray.remote(t.func)
            refs[t.key] = rf.remote(*(refs[d] for d in t.deps), **t.kwargs)
        wanted = [refs[k] for k in dag.sinks]
        refs.clear()  # let Ray free intermediates as soon as their consumers are done
        return dict(zip(dag.sinks, self.ray.get(wanted), strict=True))


# --- joblib -------------------------------------------------------------------------------


class Joblib(Peer):
    """``joblib.Parallel`` (loky), one call per level of the DAG."""

    name = "joblib"

    def __enter__(self) -> Joblib:
        try:
            from joblib import Parallel, delayed
        except ImportError as exc:
            raise Unavailable(f"joblib not installed ({exc})") from exc
        self.delayed = delayed
        self.parallel = Parallel(n_jobs=self.workers)
        self.parallel.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.parallel.__exit__(None, None, None)

    def unsupported(self, dag: Dag, kind: str) -> str | None:
        if len(dag) > 100 and max(len(level) for level in dag.levels()) == 1:
            return "no DAG notion; a long chain would be one Parallel call per task"
        return None

    def run(self, dag: Dag) -> dict[str, Any]:
        left = dag.consumers()
        sinks = set(dag.sinks)
        results: dict[str, Any] = {}
        for level in dag.levels():
            calls = (self.delayed(t.func)(*(results[d] for d in t.deps), **t.kwargs) for t in level)
            for t, value in zip(level, self.parallel(calls), strict=True):
                results[t.key] = value
            for t in level:
                for d in t.deps:
                    left[d] -= 1
                    if left[d] == 0 and d not in sinks:
                        del results[d]
        return {k: results[k] for k in dag.sinks}


# --- dagrun -------------------------------------------------------------------------------


class Dagrun(Peer):
    """``dagrun.run`` with the local executor; its pool lives inside each run."""

    name = "dagrun"
    in_place = False

    def __enter__(self) -> Dagrun:
        try:
            import dagrun

            from . import stages
        except ImportError as exc:
            raise Unavailable(f"dagrun not importable ({exc})") from exc
        missing = [a for a in ("run", "bind", "Pipeline") if not hasattr(dagrun, a)]
        if self.in_place and not hasattr(dagrun, "empty"):
            missing.append("empty")
        if missing:
            raise Unavailable(f"dagrun has no {', '.join(missing)} yet")
        self.dagrun = dagrun
        self.stages = stages
        self.state = tempfile.TemporaryDirectory(prefix="dagrun-bench-state-")
        self.extra = run_options(dagrun.run)
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.cleanup()

    def unsupported(self, dag: Dag, kind: str) -> str | None:
        if self.in_place and kind not in ("handoff", "memory"):
            return "in-place variant of the array workloads only"
        return None

    def executor_options(self) -> dict[str, Any]:
        """How ``dagrun.run`` reaches its executor (the local pool here)."""
        return {"executor": "local"}

    def run(self, dag: Dag) -> dict[str, Any]:
        pipeline = self.stages.to_pipeline(dag, in_place=self.in_place)
        with self.dagrun.run(
            pipeline,
            workers=self.workers,
            state_dir=self.state.name,
            log_format="json",
            **self.executor_options(),
            **self.extra,
        ) as result:
            if result.status != "succeeded":
                errors = list(getattr(result, "errors", {}).items())[:2]
                why = "; ".join(f"{k}: {str(e).splitlines()[0] if str(e) else e!r}"
                                for k, e in errors)
                msg = f"dagrun run {result.status}: {why}"
                raise RuntimeError(msg)
            return {k: _detach(result[k]) for k in dag.sinks}


class DagrunEmpty(Dagrun):
    """dagrun with producers that allocate in place (``dagrun.empty``)."""

    name = "dagrun-empty"
    in_place = True


class DagrunShm(Dagrun):
    """dagrun with every large result in shared memory (``DAGRUN_HOLD_MIN=off``).

    The default keeps a large result with a single consumer in its worker;
    this variant measures the cross-process path that fan-out takes.
    """

    name = "dagrun-shm"

    def __enter__(self) -> Dagrun:
        os.environ["DAGRUN_HOLD_MIN"] = "off"  # this child process runs one measurement
        return super().__enter__()

    def unsupported(self, dag: Dag, kind: str) -> str | None:
        if kind not in ("handoff", "memory"):
            return "shared-memory variant of the array workloads only"
        return None


class DagrunBase(Dagrun):
    """dagrun as it was at another commit (``--baseline REF``), side by side with this one.

    The harness checks the commit out and names a directory holding only its
    ``dagrun`` package in ``DAGRUN_BENCH_BASE``; it goes first on ``sys.path``
    (and on ``PYTHONPATH``, for spawned workers) before dagrun is imported.
    """

    name = "dagrun-base"

    def __enter__(self) -> Dagrun:
        import sys

        base = os.environ.get("DAGRUN_BENCH_BASE")
        if not base:
            raise Unavailable("no --baseline given")
        if "dagrun" in sys.modules:
            raise Unavailable("dagrun was imported before the baseline could be put first")
        sys.path.insert(0, base)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [base, os.environ.get(
            "PYTHONPATH")]))
        return super().__enter__()


class DagrunDask(Dagrun):
    """dagrun's ``dask`` executor on a LocalCluster started once (as ``dask-cluster`` is).

    Beside ``dask-cluster`` (the same engine driven by hand with ``client.get``)
    it measures what dagrun's executor adds over hand-written engine code.
    """

    name = "dagrun-dask"

    def __enter__(self) -> Dagrun:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise Unavailable(f"dask[distributed] not installed ({exc})") from exc
        self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                    processes=True, dashboard_address=":0")
        self.client = Client(self.cluster, set_as_default=False)
        return super().__enter__()

    def executor_options(self) -> dict[str, Any]:
        return {"executor": "dask", "address": self.client}

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.client.close()
        self.cluster.close()

    def unsupported(self, dag: Dag, kind: str) -> str | None:
        return None if kind in ("overhead", "parallel", "handoff") else "engine peers: DAGs only"


class DagrunRay(Dagrun):
    """dagrun's ``ray`` executor in a Ray session started once (as ``ray`` is)."""

    name = "dagrun-ray"

    def __enter__(self) -> Dagrun:
        try:
            import ray
        except ImportError as exc:
            raise Unavailable(f"ray not installed ({exc})") from exc
        self.ray = ray
        ray.init(num_cpus=self.workers, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
        return super().__enter__()

    def executor_options(self) -> dict[str, Any]:
        return {"executor": "ray"}

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.ray.shutdown()

    def unsupported(self, dag: Dag, kind: str) -> str | None:
        return None if kind in ("overhead", "parallel", "handoff") else "engine peers: DAGs only"


def run_options(run: Callable[..., Any]) -> dict[str, Any]:
    """Extra keyword arguments for ``dagrun.run``: turn the cache off where it can be."""
    import inspect

    try:
        params = inspect.signature(run).parameters
    except (TypeError, ValueError):
        return {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "no_cache" in params or takes_any:
        return {"no_cache": True}
    if "cache" in params:
        return {"cache": False}
    return {}


def _detach(value: Any) -> Any:
    """A copy of an array result, so it outlives the run's shared memory."""
    return np.array(value) if isinstance(value, np.ndarray) else value


PEERS: dict[str, type[Peer]] = {
    p.name: p
    for p in (
        Floor,
        Dagrun,
        DagrunEmpty,
        DagrunShm,
        DagrunBase,
        DagrunDask,
        DagrunRay,
        SeedPool,
        Executor,
        NaiveShm,
        DaskProcesses,
        DaskCluster,
        Ray,
        Joblib,
    )
}
