"""The ``ray`` executor: each task is one Ray task.

    --executor ray --address ADDR   an existing cluster (``ray.init(address=...)``); also the
                                    session this process is already connected to
    --executor ray                  a local ``ray.init(num_cpus=workers)``, shut down at close

A task is ``run_task.options(num_returns=2, max_retries=0, ...).remote(call,
*upstream refs)``: Ray resolves the upstream object refs to values on the
worker (moving them through its object store), the first return (the value)
stays in the object store, the second (a small ``Report``) is all the driver
fetches. ``read`` gets a requested output; ``release`` drops our ref, so Ray
frees the object once no task needs it.

Ray retries nothing for us (``max_retries=0``): a worker that dies mid-task
(a crash, the OOM killer, Ray's memory monitor, a lost node) fails that
task as ``WorkerCrashed`` with Ray's message, and dagrun's ``retries``
decide. Timeouts: Ray has none per task; dagrun reports the timeout and
calls ``ray.cancel(force=True)``, which kills the worker process running it,
so a timed-out or Ctrl-C'd task really stops.

Every stage is submitted with ``num_cpus`` (its ``cpus``, default 1) and, when
declared, ``num_gpus``, ``memory`` (bytes) and custom ``resources``. A stage
no node can ever satisfy is a ``UsageError`` before anything runs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import ray
import ray.exceptions
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ...errors import UsageError
from ..base import ExecutorContext
from .checks import check_feasible, check_versions, demand
from .engine import EngineExecutor
from .remote import Call, Report, run_task, versions

# Ray's ways of saying that the process or node running a task is gone.
_LOST = (
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.OutOfMemoryError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.LocalRayletDiedError,
)


def create(context: ExecutorContext) -> RayExecutor:
    """The ``ray`` executor of a run."""
    return RayExecutor(context)


def worker_name() -> str:
    """The Ray node and worker running the calling task."""
    context = ray.get_runtime_context()
    return f"{context.get_node_id()[:12]}/{context.get_worker_id()[:12]}"


class RayExecutor(EngineExecutor):
    """Runs each task on Ray; values stay in Ray's object store."""

    name = "ray"
    unbox = False
    cancel_note = "its Ray task was cancelled (the worker process running it was stopped)"

    def __init__(self, context: ExecutorContext) -> None:
        super().__init__(context)
        self._own = False
        self._connect(context.address, context.workers)
        try:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            self.workers = max(1, int(sum(n["Resources"].get("CPU", 0) for n in nodes)))
            self._task = ray.remote(num_returns=2, max_retries=0)(run_task)
            self._check(nodes, context)
        except BaseException:
            self.close()
            raise

    def _connect(self, address: Any, workers: int) -> None:
        if ray.is_initialized():
            return  # the caller's session: theirs to shut down
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                   "logging_level": logging.ERROR, "configure_logging": False}
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=workers, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            msg = (f"cannot start or reach Ray{f' at {address!r}' if address else ''}: {exc}; "
                   f"start a cluster with `ray start --head`, or leave out --address for a "
                   f"local one")
            raise UsageError(msg) from None
        self._own = True

    def _check(self, nodes: list[dict[str, Any]], context: ExecutorContext) -> None:
        probe = ray.remote(num_cpus=0, max_retries=0)(versions)
        refs = {
            n["NodeManagerAddress"] + "/" + n["NodeID"][:12]: probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote()
            for n in nodes
        }
        check_versions("Ray", dict(zip(refs, ray.get(list(refs.values())), strict=True)))
        self._needs = {name: demand(o) for name, o in context.options.items()}
        self._options = {name: _ray_options(o) for name, o in context.options.items()}
        offered = {n["NodeManagerAddress"] + "/" + n["NodeID"][:12]: _offered(n["Resources"])
                   for n in nodes}
        needs = {s: {**need, "CPU": self._options[s]["num_cpus"]} for s, need in
                 self._needs.items()}
        check_feasible("Ray", needs, offered,
                       "start nodes that offer them, e.g. `ray start --num-gpus 1 "
                       "--resources '{\"name\": 1}'`")

    # -- the engine's part -----------------------------------------------
    def _where(self) -> Callable[[], str]:
        return worker_name

    def _launch(self, key: str, call: Call, args: list[Any]) -> tuple[Any, Any]:
        options = self._options.get(call.spec.key.stage, {"num_cpus": 1})
        value, meta = self._task.options(name=key, **options).remote(call, *args)
        return value, meta

    def _when_done(self, meta: Any, callback: Callable[..., None]) -> None:
        meta.future().add_done_callback(callback)

    def _reports(self, metas: list[Any]) -> list[Report | BaseException]:
        try:  # one call for every report that is in; one by one only if one of them failed
            return list(ray.get(metas))
        except BaseException:  # noqa: BLE001 - the failing ones are told apart below
            pass
        out: list[Report | BaseException] = []
        for meta in metas:
            try:
                out.append(ray.get(meta))
            except BaseException as exc:  # noqa: BLE001 - the caller tells what it was
                out.append(exc)
        return out

    def _fetch_many(self, holders: list[Any]) -> list[Any]:
        return list(ray.get(holders))

    def _crash(self, exc: BaseException) -> str | None:
        if isinstance(exc, _LOST):
            text = str(exc).strip().splitlines()
            return f"the Ray worker running it died ({type(exc).__name__}: " \
                   f"{text[0] if text else ''})"
        if isinstance(exc, ray.exceptions.TaskCancelledError):
            return f"Ray cancelled the task: {exc}"
        return None

    def _cancel(self, objs: list[Any]) -> None:
        for ref in objs[::2] or objs:  # one ref per task is enough
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)

    def _fetch(self, holder: Any) -> Any:
        return ray.get(holder)

    def _drop(self, holder: Any) -> None:
        pass  # dropping our reference (the caller forgets it) lets Ray free the object

    def _everywhere(self, func: Callable[..., bool], *args: Any) -> bool:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if len(nodes) > 1:  # one task per node, each pinned there
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            check = ray.remote(num_cpus=0)(func)
            refs = [check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["NodeID"], soft=False)).remote(*args) for n in nodes]
            return all(ray.get(refs))
        return True  # one node: this machine's own filesystem

    def _put(self, value: Any) -> Any:
        return ray.put(value)

    def kill_all(self) -> None:
        super().kill_all()
        if self._own:
            with contextlib.suppress(Exception):
                ray.shutdown()

    def _stop(self) -> None:
        if self._own and ray.is_initialized():
            ray.shutdown()
        self._own = False


def _ray_options(options: Any) -> dict[str, Any]:
    """Ray's ``.options()`` for a stage's declared needs."""
    out: dict[str, Any] = {"num_cpus": options.cpus}
    if options.gpus:
        out["num_gpus"] = options.gpus
    if options.memory:
        out["memory"] = options.memory
    if options.resources:
        out["resources"] = dict(options.resources)
    return out


def _offered(resources: dict[str, float]) -> dict[str, float]:
    """A node's resources under the names ``demand`` uses (``memory`` is ``MEMORY``)."""
    out = {k: v for k, v in resources.items() if not k.startswith("node:") and k != "memory"}
    out["MEMORY"] = resources.get("memory", 0)
    return out
