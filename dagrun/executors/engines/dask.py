"""The ``dask`` executor: each task is one Dask task on a distributed cluster.

    --executor dask --address tcp://HOST:PORT   a running scheduler (or a ``Client``)
    --executor dask                             a LocalCluster of ``workers`` single-threaded
                                                worker processes, started and closed by the run

A task is ``client.submit(run_task, call, *upstream futures)`` under the key
``dagrun-<run id>-<stage>[-<batch>]-<attempt>``; its value, a
``(value, Report)`` pair, stays on the worker that made it, and the engine
moves it to the workers of its consumers. A second, tiny task
``getitem(pair, 1)`` (placed where the pair is) brings only the ``Report``
back to the driver. ``read`` fetches a requested output; ``release`` drops
our future, so Dask frees the value as soon as no task needs it.

Dask retries nothing for us: a LocalCluster we start runs with
``distributed.scheduler.allowed-failures`` 0, so a worker that dies mid-task
fails that task with ``KilledWorker`` (reported as ``WorkerCrashed``) and
dagrun's ``retries`` decide. A cluster someone else started keeps its own
setting (Dask's default is 3): set it to 0 there too for the same behaviour.
Timeouts: Dask has none per task; dagrun reports the timeout and cancels
the future. A cancel stops a task that is still waiting; a task already
running cannot be interrupted (it runs in a worker thread): its worker
finishes it and drops the result. The same holds for Ctrl-C.

Stages that declare ``cpus`` (other than 1), ``memory``, ``gpus`` or
``resources`` are submitted with Dask ``resources=`` (``CPU``, ``MEMORY``
in bytes, ``GPU``, and the custom names); a LocalCluster we start declares
each worker with this machine's CPUs and memory. A stage no worker can ever
satisfy is a ``UsageError`` before anything runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
from collections.abc import Callable
from typing import Any

import dask
import distributed
from distributed.scheduler import KilledWorker

from ...errors import UsageError
from ..base import ExecutorContext
from .checks import check_feasible, check_versions, demand
from .engine import EngineExecutor
from .remote import Call, Report, close_resources, run_task, versions

_CONNECT_TIMEOUT_S = 30  # reaching a scheduler, and waiting for its first worker
_CLOSE_TIMEOUT_S = 10


def create(context: ExecutorContext) -> DaskExecutor:
    """The ``dask`` executor of a run."""
    return DaskExecutor(context)


def worker_address() -> str:
    """The address of the Dask worker running the calling task."""
    try:
        return distributed.get_worker().address
    except ValueError:
        return f"pid {os.getpid()}"


class DaskExecutor(EngineExecutor):
    """Runs each task on a Dask distributed cluster; values stay on the workers."""

    chains = True  # a chained task gets its input's future: the engine runs it when ready

    name = "dask"
    unbox = True
    cancel_note = (
        "its Dask future was cancelled (a task already running on a worker cannot be "
        "interrupted: the worker finishes it and drops the result)"
    )

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        self.cluster: distributed.LocalCluster | None = None
        self._own_client = False
        self._pids: list[int] = []
        self.client = self._connect(context.address, context.workers)
        self._arrived: dict[str, bytes] = {}
        self.topic = f"dagrun-{self.run_id}"
        self.client.subscribe_topic(self.topic, self._on_report)
        try:
            workers = self.client.scheduler_info(n_workers=-1)["workers"]
            self.workers = max(1, sum(w.get("nthreads", 1) for w in workers.values()))
            check_versions("Dask", self.client.run(versions))
            self._needs = {name: demand(o) for name, o in context.options.items()}
            offered = {addr: w.get("resources", {}) for addr, w in workers.items()}
            check_feasible("Dask", self._needs, offered,
                           'start workers that declare them, e.g. `dask worker ADDRESS '
                           '--resources "CPU=8 MEMORY=32e9 GPU=1"`')
        except BaseException:
            self.close()
            raise

    def _connect(self, address: Any, workers: int) -> distributed.Client:
        if isinstance(address, distributed.Client):
            return address
        if address:
            try:
                client = distributed.Client(address, timeout=_CONNECT_TIMEOUT_S,
                                            set_as_default=False)
                self._own_client = True
                client.wait_for_workers(1, timeout=_CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                msg = (f"cannot use the Dask scheduler at {address!r}: {exc}; start one with "
                       f"`dask scheduler` and at least one `dask worker {address}`, or leave "
                       f"out --address for a local cluster")
                raise UsageError(msg) from None
            return client
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            self.cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address=":0", silence_logs=logging.ERROR,  # None does not disable it
                resources=_machine_resources(),
            )
        self._own_client = True
        client = distributed.Client(self.cluster, set_as_default=False)
        self._pids = list(client.run(os.getpid).values())
        return client

    # -- the engine's part -----------------------------------------------
    def _where(self) -> Callable[[], str]:
        return worker_address

    def _launch(self, key: str, call: Call, args: list[Any]) -> tuple[Any, Any]:
        need = self._needs.get(call.spec.key.stage) or None
        pair = self.client.submit(run_task, call, *args, key=key, pure=False, resources=need)
        return pair, pair

    def _when_done(self, meta: Any, callback: Callable[..., None]) -> None:
        # A finished task's report arrives as an event (``_on_report``); only an engine
        # failure (a lost worker, a cancellation) is learnt from the future itself.
        meta.add_done_callback(lambda fut: None if fut.status == "finished" else callback())

    def _on_report(self, event: tuple[float, Any]) -> None:
        key, blob = event[1]
        self._arrived[key] = blob
        self._notify(key)

    def _reports(self, metas: list[Any]) -> list[Report | BaseException]:
        out: list[Report | BaseException] = []
        for meta in metas:
            blob = self._arrived.pop(meta.key, None)
            if blob is not None:
                out.append(pickle.loads(blob))
                continue
            try:
                out.append(meta.result()[1])
            except BaseException as exc:  # noqa: BLE001 - the caller tells what it was
                out.append(exc)
        return out

    def _fetch_many(self, holders: list[Any]) -> list[Any]:
        return [pair[0] for pair in self.client.gather(holders)]

    def _crash(self, exc: BaseException) -> str | None:
        if isinstance(exc, KilledWorker):
            return f"the Dask worker running it died (KilledWorker: {exc})"
        if isinstance(exc, distributed.client.FutureCancelledError | OSError):
            return f"Dask lost the task: {type(exc).__name__}: {exc}"
        return None

    def _cancel(self, objs: list[Any]) -> None:
        self.client.cancel(objs, force=True)

    def _fetch(self, holder: Any) -> Any:
        return holder.result()[0]

    def _drop(self, holder: Any) -> None:
        holder.release()

    def _everywhere(self, func: Callable[..., bool], *args: Any) -> bool:
        return all(self.client.run(func, *args).values())

    def _put(self, value: Any) -> Any:
        return self.client.scatter(value, hash=False)

    def kill_all(self) -> None:
        super().kill_all()
        for pid in self._pids:  # our LocalCluster's worker processes: a second Ctrl-C
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def _stop(self) -> None:
        client = getattr(self, "client", None)
        try:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.run(close_resources, self.run_id, on_error="ignore")
                if self._own_client:
                    client.close(timeout=_CLOSE_TIMEOUT_S)
        finally:
            if self.cluster is not None:
                self.cluster.close(timeout=_CLOSE_TIMEOUT_S)
                self.cluster = None


def _machine_resources() -> dict[str, float]:
    """What each worker of a LocalCluster offers: this machine's CPUs and memory."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"CPU": float(len(os.sched_getaffinity(0))), "MEMORY": float(memory)}
