"""The five workloads: their cases, which peers run them, and how a sample is scored.

A :class:`Case` is one column of a workload's table (``1GiB``,
``layered-10000``…). Its ``params`` are JSON, sent to the child process that
rebuilds the DAG with :func:`build`. Every DAG workload also has a *tiny*
version of the same shape (one page instead of 1 GiB, one task instead of
10,000) that the child runs just before the real one; ``net_s`` is the real
run's wall time minus the tiny run's, so each peer's fixed per-run costs
(dagrun starting its pool, a Ray round trip) cancel out and what remains is
the cost of the data or of the extra tasks. Start-up is its own workload.

Scores (``metric``), one number per sample::

    handoff   overhead_s  net_s(peer) - median net_s(floor)
    overhead  us_per_task net_s / (tasks - 1) * 1e6
    parallel  net_s       speedup = floor / peer, efficiency = speedup / min(cores, tasks)
    memory    peak_bytes  peak(real) - peak(tiny) of RssAnon(tree) + /dev/shm
    startup   wall_s      the whole command, interpreter start-up included
    workflow  wall_s      one run's own wall time (dagrun: the second run); see ``workflow``
    scaling   us_per_task (wall(N) - wall(1)) / (N - 1), driver's ru_maxrss; see ``scaling``
    liveview  us_per_task the same for 1,000 no-ops per console mode; see ``scaling``

The last three measure in their own modules (``workflow.measure``,
``scaling.measure_*``), called by the child instead of the peer-and-DAG path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from . import tasks
from .tasks import PAGE_ELEMS, Dag, MiB

GiB = 1024 * MiB

DAG_PEERS = (
    "floor",
    "dagrun",
    "pool",
    "ppe",
    "dask-processes",
    "dask-cluster",
    "ray",
    "joblib",
)
# dagrun's own dask and ray executors: 1,000-task overhead, the 128 MiB handoff, parallel.
ENGINE_PEERS = ("dagrun-dask", "dagrun-ray")
ARRAY_PEERS = ("floor", "dagrun", "dagrun-empty", "dagrun-shm", "pool", "ppe", "shm", "joblib",
               "dask-processes", "dask-cluster", "ray")
MEMORY_PEERS = ("floor", "dagrun", "dagrun-empty", "dagrun-shm", "pool", "joblib", "dask-processes",
                "dask-cluster", "ray")
STARTUP_HELP_PEERS = ("floor", "typer", "dagrun")
STARTUP_HELLO_PEERS = ("floor", "dagrun", "dagrun-api", "pool", "pool-forkserver", "ppe",
                       "dask-processes", "dask-cluster", "ray", "joblib")

WORKLOADS = ("handoff", "overhead", "parallel", "memory", "startup", "workflow", "scaling",
             "liveview")
OWN_MEASURE = ("workflow", "scaling", "liveview")  # measured by their own modules
UNITS = {
    "handoff": "overhead over the floor, ms",
    "overhead": "µs per task",
    "parallel": "wall s (speedup / efficiency)",
    "memory": "peak above idle, GiB (× two-array floor)",
    "startup": "wall s",
    "workflow": "wall s of the run itself (dagrun: second run on the first's history)",
    "scaling": "µs per task above a one-task run",
    "liveview": "µs per task above a one-task run",
}
WORKFLOW_PEERS = ("dagrun", "dask-cluster", "dagrun-cli")
# recipe, tasks asked for (WfCommons makes about that many), seed: genomics, astronomy, crops
WORKFLOWS = (("epigenomics", 200, 42), ("montage", 300, 42), ("cycles", 150, 42))
SCALING_SHAPES = ("independent", "map-list", "map-array", "map-table")
# A 100,000-task map is stopped by dagrun's max_runtime (over a list it grows quadratically);
# the independent shape's time is mostly before the run starts, which max_runtime does not
# bound, so the case's timeout (cap + 130 s) bounds it: a timeout there is the measurement.
SCALING_CAP_S = 20.0
LIVEVIEW_PEERS = ("none", "json-pipe", "console-pty")


def cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Case:
    """One column of a workload: its parameters and the peers that run it."""

    workload: str
    name: str
    params: dict[str, Any]
    peers: tuple[str, ...]
    quick_peers: tuple[str, ...] = ()  # in --quick: these peers only; empty: not run
    reps: int = 0  # 0: the run's default
    quick_reps: int = 0  # in --quick; 0: the run's default
    full: bool = True  # False: a --quick stand-in, left out of the full run
    timeout_s: float = 0  # 0: the run's default
    extra: dict[str, Any] = field(default_factory=dict)


def size_name(nbytes: int) -> str:
    """``1GiB``, ``128MiB``."""
    return f"{nbytes // GiB}GiB" if nbytes >= GiB else f"{nbytes // MiB}MiB"


def cases(iterations: int) -> list[Case]:
    """Every case of the full run (``iterations``: calibrated ~0.5 s of ``tasks.burn``)."""
    out: list[Case] = []
    quick_handoff = {
        8 * MiB: (),
        128 * MiB: ("floor", "dagrun", "dagrun-empty", "pool", "shm"),
        GiB: ("floor", "dagrun", "dagrun-empty"),
    }
    for nbytes, quick in quick_handoff.items():
        # 5 repetitions: first touches of fresh memory make single samples noisy here;
        # the cell time budget keeps the slow pickling peers to what fits
        peers = (*ARRAY_PEERS, *ENGINE_PEERS) if nbytes == 128 * MiB else ARRAY_PEERS
        out.append(Case("handoff", size_name(nbytes), {"nbytes": nbytes}, peers, quick,
                        reps=5))
    for n in (1_000, 10_000):
        for shape in ("independent", "chain", "layered"):
            quick: tuple[str, ...] = ()
            if n == 1_000:
                quick = ("floor", "dagrun", "pool", "dask-processes")
            if n == 1_000 and shape == "layered":
                quick = (*quick, "dask-cluster")
            peers = (*DAG_PEERS, *ENGINE_PEERS) if n == 1_000 else DAG_PEERS
            out.append(Case("overhead", f"{shape}-{n}", {"shape": shape, "n": n}, peers, quick))
    out.append(Case("parallel", "8x0.5s", {"tasks": 8, "iterations": iterations},
                    (*DAG_PEERS, *ENGINE_PEERS), ("floor", "dagrun", "pool")))
    out.append(Case("memory", "6x512MiB", {"stages": 6, "nbytes": 512 * MiB}, MEMORY_PEERS))
    out.append(Case("memory", "6x128MiB", {"stages": 6, "nbytes": 128 * MiB},
                    ("floor", "dagrun", "dagrun-empty", "pool", "dask-cluster", "ray"),
                    ("floor", "dagrun", "dagrun-empty", "dask-cluster"), full=False))
    out.append(Case("startup", "help", {"what": "help"}, STARTUP_HELP_PEERS,
                    STARTUP_HELP_PEERS, reps=5))
    out.append(Case("startup", "hello", {"what": "hello"}, STARTUP_HELLO_PEERS,
                    ("floor", "dagrun", "dagrun-api", "pool-forkserver", "dask-cluster")))
    for method in ("fork", "forkserver"):
        out.append(Case("startup", f"three-{method}", {"what": "three", "method": method},
                        ("dagrun", "pool"), ("dagrun", "pool") if method == "fork" else (),
                        reps=5, quick_reps=3))
    return out + more_cases(iterations)


def more_cases(iterations: int) -> list[Case]:
    """The workflow, scaling and liveview cases (``iterations``: ~0.5 s of ``tasks.burn``)."""
    out: list[Case] = []
    per_s = 2 * iterations
    for recipe, n, seed in WORKFLOWS:
        params = {"recipe": recipe, "tasks": n, "seed": seed, "work_s": 20.0,
                  "out_total": 64 * MiB, "iterations_per_s": per_s}
        out.append(Case("workflow", f"{recipe}-{n}", params, WORKFLOW_PEERS, reps=2,
                        timeout_s=240))
    quick = {"recipe": "montage", "tasks": 60, "seed": 42, "work_s": 4.0,
             "out_total": 16 * MiB, "iterations_per_s": per_s}
    out.append(Case("workflow", "montage-60-4s", quick, WORKFLOW_PEERS, ("dagrun",),
                    full=False, quick_reps=1, timeout_s=120))
    for n in (1_000, 10_000, 100_000):
        for shape in SCALING_SHAPES:
            params = {"shape": shape, "n": n,
                      **({"max_runtime_s": SCALING_CAP_S} if n == 100_000 else {})}
            out.append(Case("scaling", f"{shape}-{n}", params, ("dagrun",),
                            ("dagrun",) if n == 1_000 else (), reps=3 if n == 1_000 else 1,
                            quick_reps=1, timeout_s=SCALING_CAP_S + 130))
    out.append(Case("liveview", "1000", {"n": 1_000}, LIVEVIEW_PEERS, LIVEVIEW_PEERS,
                    quick_reps=1))
    return out


def build(workload: str, params: dict[str, Any], *, tiny: bool = False) -> Dag:
    """The DAG a child runs for ``workload`` (or its tiny twin)."""
    if workload == "handoff":
        return tasks.handoff_dag(4096 if tiny else params["nbytes"])
    if workload == "overhead":
        return tasks.overhead_dag(params["shape"], 1 if tiny else params["n"])
    if workload == "parallel":
        return tasks.parallel_dag(1, 1) if tiny else tasks.parallel_dag(
            params["tasks"], params["iterations"]
        )
    if workload == "memory":
        return tasks.memory_dag(params["stages"], 4096 if tiny else params["nbytes"])
    msg = f"no DAG for workload {workload!r}"
    raise ValueError(msg)


def expected(workload: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The sinks' correct values where they are cheap to know (None: not checked)."""
    if workload == "handoff":
        return {"consume": 1.5 * -(-(params["nbytes"] // 8) // PAGE_ELEMS)}
    if workload == "memory":
        pages = -(-(params["nbytes"] // 8) // PAGE_ELEMS)
        return {"check": (1.5 + params["stages"] - 1) * pages}
    return None


def calibrate(target_s: float = 0.5) -> int:
    """Iterations of ``tasks.burn`` that take about ``target_s`` on this machine."""
    import time

    n = 200_000
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        tasks.burn(n)
        best = min(best, time.perf_counter() - t0)
    return max(1, int(n * target_s / best))
