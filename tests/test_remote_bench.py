"""Measurements of the Dask and Ray executors (run by hand; no tests are collected here).

    .venv/bin/python -m tests.test_remote_bench [N]

1. Overhead per task: N no-op stages (100 chains of N/100 links) driven through the
   executor as the runner drives it, against hand-written ``client.submit`` /
   ``ray.remote`` code building the same DAG; both on two single-threaded workers.
2. A 128 MiB array handed from one stage to the next on this host, against the same
   pipeline returning an empty array (the difference is the cost of the 128 MiB).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cloudpickle

from dagrun.control.scheduler import TaskKey
from dagrun.executors import create
from dagrun.executors.base import ExecutorContext, TaskOutcome, TaskSpec
from dagrun.store import StoreConfig
from tests.test_remote import context_for, drive

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def noop(*inputs: Any, **named: Any) -> int:
    return 0


def _deps(n: int) -> dict[int, list[int]]:
    links = max(1, n // 100)
    return {i: [i - 1] if i % links else [] for i in range(n)}


def dagrun_wall(engine: str, n: int, **engine_args: Any) -> float:
    """Seconds to run the no-op DAG through the executor, from first submit to last outcome."""
    deps = _deps(n)
    config = StoreConfig.for_run(f"bench{time.monotonic_ns():x}", tempfile.mkdtemp())
    context = ExecutorContext(funcs={f"s{i}": noop for i in range(n)}, resources={},
                              options={}, config=config, workers=2, **engine_args)
    exe = create(engine, context)
    try:
        users: dict[int, list[int]] = {}
        for i, before in deps.items():
            for d in before:
                users.setdefault(d, []).append(i)
        outputs: dict[int, Any] = {}
        ready = [i for i, before in deps.items() if not before]
        began = time.perf_counter()
        running = 0
        while ready or running:
            while ready and exe.free_slots() > 0:
                i = ready.pop()
                inputs = {f"x{d}": outputs[d] for d in deps[i]}
                exe.submit(TaskSpec(TaskKey(f"s{i}"), 1, inputs, {}, time.time()))
                running += 1
            for event in exe.wait(None):
                if isinstance(event, TaskOutcome):
                    assert event.ok, event.error
                    running -= 1
                    i = int(event.key.stage[1:])
                    outputs[i] = event.handle
                    for d in deps[i]:
                        exe.release(outputs[d])
                    ready.extend(users.get(i, []))
        return time.perf_counter() - began
    finally:
        exe.close()


def dask_by_hand(n: int) -> float:
    import dask
    import distributed

    deps = _deps(n)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        began = time.perf_counter()
        futures: dict[int, Any] = {}
        for i in range(n):
            futures[i] = client.submit(noop, *(futures[d] for d in deps[i]), pure=False)
        distributed.wait(list(futures.values()))
        return time.perf_counter() - began


def ray_by_hand(n: int) -> float:
    import ray

    deps = _deps(n)
    task = ray.remote(max_retries=0)(noop)
    began = time.perf_counter()
    refs: dict[int, Any] = {}
    for i in range(n):
        refs[i] = task.remote(*(refs[d] for d in deps[i]))
    ray.get(list(refs.values()))
    return time.perf_counter() - began


def handoff(engine: str, mib: int) -> float:
    graph, context = context_for("remote_cases", Path(tempfile.mkdtemp()),
                                 targets=["big_sum"], params={"mib": mib})
    exe = create(engine, context)
    try:
        began = time.perf_counter()
        driven = drive(exe, graph)
        assert not driven.errors, driven.errors
        return time.perf_counter() - began
    finally:
        exe.close()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rows = []
    mine, theirs = dagrun_wall("dask", n), dask_by_hand(n)
    rows.append(("dask", mine, theirs))
    big = min(handoff("dask", 128) - handoff("dask", 0) for _ in range(3))
    print(f"dask: 128 MiB handoff adds {big * 1000:.0f} ms", flush=True)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ray_by_hand(50)  # start the worker processes first, for both
        mine, theirs = dagrun_wall("ray", n), ray_by_hand(n)
        rows.append(("ray", mine, theirs))
        big_ray = min(handoff("ray", 128) - handoff("ray", 0) for _ in range(3))
        print(f"ray: 128 MiB handoff adds {big_ray * 1000:.0f} ms", flush=True)
    finally:
        ray.shutdown()
    for engine, mine, theirs in rows:
        print(f"{engine}: {n} no-op tasks: dagrun {mine:.2f} s ({mine / n * 1e3:.2f} ms/task), "
              f"by hand {theirs:.2f} s ({theirs / n * 1e3:.2f} ms/task); dagrun adds "
              f"{(mine - theirs) / n * 1e3:.2f} ms/task")


if __name__ == "__main__":
    main()
