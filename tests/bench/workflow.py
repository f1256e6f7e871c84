"""The workflow workload: scientific workflow instances from WfCommons recipes, scheduled.

::

    wfcommons recipe (Epigenomics, Montage, Cycles, Blast), fixed seed, N tasks
      -> instance JSON (cached in bench-results/workflows/: wfcommons takes ~6 s to import)
      -> scaled: runtimes x (work_s / total runtime), output bytes x (out_total / total bytes)
      -> model:  lower bound max(critical path, work / 2) and a greedy list schedule on 2
                 machines (highest bottom level first among ready tasks, true durations)
      -> measured, each peer in its own child process (``measure``):
           dagrun        dagrun.run twice on one state directory, no_cache=True: the first
                         run prioritises by the DAG's shape, the second by the first's times
           dagrun-cli    ``dagrun run tests/bench/wf_cli.py`` as a whole command, fresh state
           dask-cluster  LocalCluster, 2 single-threaded worker processes, client.get

A task burns ``tasks.burn`` iterations (calibrated: ``iterations_per_s``) and
returns a uint8 array of its scaled output bytes (``wfstages``). Every
record carries the model's numbers, so the report needs no instance.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "bench-results" / "workflows"
ENV = "DAGRUN_BENCH_WF"  # the scaled instance the CLI pipeline module builds
RECIPES = {
    "epigenomics": "EpigenomicsRecipe",
    "montage": "MontageRecipe",
    "cycles": "CyclesRecipe",
    "blast": "BlastRecipe",
    "seismology": "SeismologyRecipe",
    "genome": "GenomeRecipe",
}


@dataclass(frozen=True)
class WfTask:
    """One task of a scaled instance."""

    name: str
    seconds: float
    nbytes: int
    parents: tuple[str, ...]


def generate(recipe: str, n: int, seed: int) -> dict[str, Any]:
    """An instance of ``recipe`` with about ``n`` tasks, from WfCommons, seeded.

    WfCommons draws from ``random`` and ``numpy.random``; both are seeded, and
    file names (uuid4, not seeded) are not kept, so an instance is the same
    on every run.
    """
    import numpy as np
    from wfcommons import WorkflowGenerator
    from wfcommons.wfchef import recipes

    random.seed(seed)
    np.random.seed(seed)
    cls = getattr(recipes, RECIPES[recipe])
    wf = WorkflowGenerator(cls.from_num_tasks(n)).build_workflow()
    import networkx as nx

    order = list(nx.lexicographical_topological_sort(wf))
    ids = {name: f"{_ident(wf.tasks[name].name)}_{i:03d}" for i, name in enumerate(order)}
    tasks = [
        {
            "name": ids[name],
            "runtime": float(wf.tasks[name].runtime or 0.0),
            "out_bytes": int(sum(f.size or 0 for f in wf.tasks[name].output_files)),
            "parents": sorted(ids[p] for p in wf.predecessors(name)),
        }
        for name in order
    ]
    return {"recipe": recipe, "requested": n, "seed": seed, "tasks": tasks}


def _ident(text: str) -> str:
    return re.sub(r"\W", "_", text).strip("_").lower() or "task"


def instance(recipe: str, n: int, seed: int) -> dict[str, Any]:
    """The instance, from the cache under bench-results/ or generated (and cached)."""
    path = CACHE / f"{recipe}-{n}-seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    data = generate(recipe, n, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)  # atomic: two children generating at once both end with one file
    return data


def scaled(data: dict[str, Any], work_s: float, out_total: int) -> list[WfTask]:
    """The instance's tasks with runtimes summing to ``work_s`` and outputs to ``out_total``."""
    rows = data["tasks"]
    total_rt = sum(t["runtime"] for t in rows) or 1.0
    total_out = sum(t["out_bytes"] for t in rows) or 1
    return [
        WfTask(t["name"], t["runtime"] * work_s / total_rt,
               int(t["out_bytes"] * out_total / total_out), tuple(t["parents"]))
        for t in rows
    ]


# --- the model ------------------------------------------------------------------------------


def bottom_levels(tasks: list[WfTask], dur: dict[str, float]) -> dict[str, float]:
    """Longest path from each task to an exit, its own duration included."""
    children: dict[str, list[str]] = {t.name: [] for t in tasks}
    for t in tasks:
        for p in t.parents:
            children[p].append(t.name)
    level: dict[str, float] = {}
    for t in reversed(tasks):  # tasks are in topological order
        level[t.name] = dur[t.name] + max((level[c] for c in children[t.name]), default=0.0)
    return level


def list_schedule(tasks: list[WfTask], dur: dict[str, float], machines: int = 2) -> float:
    """Makespan of the greedy list schedule: highest bottom level first among ready tasks."""
    import heapq

    level = bottom_levels(tasks, dur)
    waiting = {t.name: len(t.parents) for t in tasks}
    children: dict[str, list[str]] = {t.name: [] for t in tasks}
    for t in tasks:
        for p in t.parents:
            children[p].append(t.name)
    ready = [(-level[t.name], t.name) for t in tasks if not t.parents]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []  # (finish time, task)
    now = 0.0
    while ready or running:
        while ready and len(running) < machines:
            _, name = heapq.heappop(ready)
            heapq.heappush(running, (now + dur[name], name))
        now, name = heapq.heappop(running)
        done = [name]
        while running and running[0][0] <= now:  # everything finishing at this instant
            done.append(heapq.heappop(running)[1])
        for d in done:
            for c in children[d]:
                waiting[c] -= 1
                if waiting[c] == 0:
                    heapq.heappush(ready, (-level[c], c))
    return now


def model(tasks: list[WfTask], machines: int = 2) -> dict[str, float]:
    """Work, critical path, the lower bound and the list schedule, on the scaled durations."""
    dur = {t.name: t.seconds for t in tasks}
    work = sum(dur.values())
    critical = max(bottom_levels(tasks, dur).values(), default=0.0)
    return {
        "work_s": work,
        "critical_s": critical,
        "bound_s": max(critical, work / machines),
        "list_s": list_schedule(tasks, dur, machines),
        "edges": sum(len(t.parents) for t in tasks),
        "max_fan_in": max((len(t.parents) for t in tasks), default=0),
    }


# --- the same instance for each engine --------------------------------------------------------


def plain_dag(tasks: list[WfTask], iterations_per_s: float) -> Any:
    """The instance as a ``tasks.Dag`` of ``wfstages.work`` calls (Dask runs this)."""
    from .tasks import Dag, Task
    from .wfstages import work

    out = tuple(
        Task(t.name, work, t.parents,
             {"iterations": int(t.seconds * iterations_per_s), "nbytes": t.nbytes})
        for t in tasks
    )
    return Dag(out, tuple(sinks(tasks)))


def sinks(tasks: list[WfTask]) -> list[str]:
    """Tasks nothing consumes."""
    consumed = {p for t in tasks for p in t.parents}
    return [t.name for t in tasks if t.name not in consumed]


def pipeline(tasks: list[WfTask], iterations_per_s: float, name: str) -> Any:
    """The instance as a ``dagrun.Pipeline`` of bound copies of ``wfstages.wf_task``."""
    import dagrun

    from .wfstages import INPUTS, MAX_INPUTS, wf_task

    stages = []
    for t in tasks:
        if len(t.parents) > MAX_INPUTS:
            msg = f"task {t.name} has {len(t.parents)} inputs; the stage takes {MAX_INPUTS}"
            raise ValueError(msg)
        stages.append(dagrun.bind(
            wf_task, name=t.name, inputs=dict(zip(INPUTS, t.parents, strict=False)),
            iterations=int(t.seconds * iterations_per_s), nbytes=t.nbytes,
        ))
    return dagrun.Pipeline(stages, name=name)


def from_params(params: dict[str, Any]) -> list[WfTask]:
    """The scaled instance a case's parameters describe."""
    data = instance(params["recipe"], params["tasks"], params["seed"])
    return scaled(data, params["work_s"], params["out_total"])


def cli_pipeline() -> Any:
    """The pipeline ``tests/bench/wf_cli.py`` defines: the case JSON in ``$DAGRUN_BENCH_WF``."""
    params = json.loads(os.environ[ENV])
    name = f"wf-{params['recipe']}-{params['tasks']}"
    return pipeline(from_params(params), params["iterations_per_s"], name)


# --- measurement (in a child process) ---------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _dagrun_run(pipe: Any, state: str, workers: int) -> tuple[float, dict[str, float]]:
    """One ``dagrun.run``: its wall time and the task durations it measured."""
    import dagrun

    t0 = time.perf_counter()
    with dagrun.run(pipe, workers=workers, executor="local", state_dir=state,
                    log_format="none", no_cache=True) as res:
        wall = time.perf_counter() - t0
        if res.status != "succeeded":
            msg = f"dagrun run {res.status}: {list(getattr(res, 'errors', {}))[:3]}"
            raise RuntimeError(msg)
        durations = {str(m["stage"]): float(m.get("wall_s") or 0.0) for m in res.metrics}
    return wall, durations


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One sample of ``spec["peer"]`` on the instance ``spec["params"]`` describes."""
    params, peer, workers = spec["params"], spec["peer"], spec["workers"]
    tasks = from_params(params)
    record: dict[str, Any] = {"status": "ok", "loadavg_1m": os.getloadavg()[0],
                              "tasks": len(tasks), **model(tasks, workers)}
    ips = params["iterations_per_s"]
    name = f"wf-{params['recipe']}-{params['tasks']}"
    if peer == "dagrun":
        pipe = pipeline(tasks, ips, name)
        with tempfile.TemporaryDirectory(prefix="dagrun-bench-state-") as state:
            first, _ = _dagrun_run(pipe, state, workers)
            second, durations = _dagrun_run(pipe, state, workers)
        real = [WfTask(t.name, durations.get(t.name, t.seconds), 0, t.parents) for t in tasks]
        record.update(wall_s=second, first_s=first, second_s=second,
                      work_measured_s=sum(durations.values()),
                      list_measured_s=list_schedule(real, {t.name: t.seconds for t in real},
                                                    workers))
    elif peer == "dagrun-cli":
        with tempfile.TemporaryDirectory(prefix="dagrun-bench-state-") as state:
            argv = [str(Path(sys.executable).parent / "dagrun"), "run", "tests/bench/wf_cli.py",
                    "--workers", str(workers), "--state-dir", state, "--no-cache",
                    "--log-format", "json"]
            path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
            env = {**os.environ, ENV: json.dumps(params), "PYTHONPATH": path}
            wall, proc = _timed(lambda: subprocess.run(
                argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        if proc.returncode != 0:
            msg = f"dagrun run exited {proc.returncode}: {proc.stderr.decode()[-300:]}"
            raise RuntimeError(msg)
        record["wall_s"] = wall
    elif peer == "dask-cluster":
        from .peers import PEERS

        dag = plain_dag(tasks, ips)
        start, cluster = _timed(lambda: PEERS["dask-cluster"](workers).__enter__())
        try:
            record["wall_s"], _ = _timed(lambda: cluster.run(dag))
        finally:
            cluster.__exit__(None, None, None)
        record["engine_start_s"] = start
    else:
        return {"status": "n/a", "note": f"no workflow measurement for {peer}"}
    return record
