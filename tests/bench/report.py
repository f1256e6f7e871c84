"""Score the samples, check the performance goals, and write the table and the JSON.

Each cell (case x peer) gets its per-sample scores (see ``workloads``), their
median, and two ratios of medians: against the floor and against dagrun.
Goals are checked from those medians, all from the same run; a goal whose
inputs were not measured (``--quick``, ``--only``, a peer unavailable) is
reported as not measured, never guessed. Nothing here asserts: a benchmark
measures.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from . import report_more
from .harness import REPO, Cell
from .workloads import UNITS, WORKLOADS, GiB, cores

FLOOR, DAGRUN = "floor", "dagrun"


@dataclass
class Scored:
    """A cell's scores."""

    cell: Cell
    values: list[float]  # the displayed score, one per sample
    basis: list[float]  # what ratios compare (usually the same)
    median: float | None
    basis_median: float | None
    ratio_floor: float | None = None
    ratio_dagrun: float | None = None
    extra: str = ""


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0 or a < 0:
        return None
    return a / b


def score(cells: list[Cell]) -> dict[tuple[str, str], dict[str, Scored]]:
    """``{(workload, case): {peer: Scored}}``."""
    grouped: dict[tuple[str, str], dict[str, Cell]] = {}
    for c in cells:
        grouped.setdefault((c.case.workload, c.case.name), {})[c.peer] = c
    out: dict[tuple[str, str], dict[str, Scored]] = {}
    for key, row in grouped.items():
        workload = key[0]
        floor = row.get(FLOOR)
        floor_net = None
        if floor and workload == "handoff":
            floor_net = _median([s["net_s"] for s in floor.samples])
        scored: dict[str, Scored] = {}
        for peer, c in row.items():
            if workload == "handoff":
                # each sample against the floor's median: the noise here is per process
                # (first touches of fresh memory), not drift, so pairing by repetition
                # would add the floor's outliers to every peer's samples
                basis = [s["net_s"] for s in c.samples]
                values = [b - floor_net for b in basis] if floor_net is not None else []
            elif workload == "overhead":
                n = c.case.params["n"]
                values = [s["net_s"] / (n - 1) * 1e6 for s in c.samples]
                basis = values
            elif workload == "memory":
                values = [s["peak_net_bytes"] / GiB for s in c.samples]
                basis = values
            elif workload == "startup":
                values = [s["wall_s"] for s in c.samples]
                basis = values
            elif workload in report_more.OWN:
                values = basis = report_more.values(workload, c.samples)
            else:
                values = [s["net_s"] for s in c.samples]
                basis = values
            scored[peer] = Scored(c, values, basis, _median(values), _median(basis))
        for s in scored.values():
            f, d = scored.get(FLOOR), scored.get(DAGRUN)
            s.ratio_floor = _ratio(s.basis_median, f.basis_median if f else None)
            s.ratio_dagrun = _ratio(s.basis_median, d.basis_median if d else None)
            if workload == "parallel" and f and f.median and s.median:
                speedup = f.median / s.median
                eff = speedup / min(cores(), s.cell.case.params["tasks"])
                s.extra = f"speedup {speedup:.2f}, efficiency {eff:.2f}"
            if workload == "memory" and s.median is not None:
                two = 2 * s.cell.case.params["nbytes"] / GiB
                walls = [r["net_s"] for r in s.cell.samples]
                s.extra = f"{s.median / two:.2f}× two-array floor; wall {_median(walls):.2f}s"
            if workload == "handoff" and s.cell.samples:
                s.extra = f"end to end {_median(s.basis) * 1e3:.0f} ms"
            if workload == "startup" and s.cell.samples and "engine_start_s" in s.cell.samples[0]:
                eng = _median([r["engine_start_s"] + r["run_s"] for r in s.cell.samples])
                s.extra = f"engine start + hello {eng * 1e3:.0f} ms"
        out[key] = scored
    return out


# --- goals --------------------------------------------------------------------------------


def _get(scores: dict, workload: str, case: str, peer: str) -> Scored | None:
    s = scores.get((workload, case), {}).get(peer)
    return s if s is not None and s.median is not None else None


def _largest(
    scores: dict, workload: str, prefix: str = "", peers: tuple[str, ...] = ()
) -> str | None:
    """The largest case of ``workload`` where all ``peers`` have a median (else the largest)."""
    names = [c for (w, c) in scores if w == workload and c.startswith(prefix)]
    if not names:
        return None
    both = [c for c in names if all(_get(scores, workload, c, p) for p in peers)]
    names = both or names

    def size(case: str) -> int:
        params = next(iter(scores[(workload, case)].values())).cell.case.params
        return params.get("nbytes", params.get("n", 0))

    return max(names, key=size)


def goals(scores: dict) -> list[dict[str, Any]]:
    """The performance goals, each met / not met / not measured, with its numbers."""
    out: list[dict[str, Any]] = []

    def add(goal: str, met: bool | None, detail: str) -> None:
        out.append({"goal": goal, "met": met, "detail": detail})

    # overhead: every shape, at the largest task count measured
    shapes = ("independent", "chain", "layered")
    for goal, peer, factor in (
        ("overhead ≤ 100 µs/task on every shape", None, 100.0),
        ("overhead ≥ 4× cheaper than Ray on every shape", "ray", 4.0),
        ("overhead ≥ 20× cheaper than Dask LocalCluster on every shape", "dask-cluster", 20.0),
    ):
        met: bool | None = True
        parts = []
        want = (DAGRUN, peer) if peer else (DAGRUN,)
        for shape in shapes:
            case = _largest(scores, "overhead", shape, want)
            d = _get(scores, "overhead", case, DAGRUN) if case else None
            if d is None:
                met = None
                parts.append(f"{shape}: dagrun not measured")
                continue
            if peer is None:
                ok = d.median <= factor
                parts.append(f"{case}: {d.median:.0f} µs")
            else:
                p = _get(scores, "overhead", case, peer)
                if p is None:
                    met = None
                    parts.append(f"{case}: {peer} not measured")
                    continue
                ok = p.median / d.median >= factor
                parts.append(f"{case}: {p.median / d.median:.1f}×")
            if met is not None:
                met = met and ok
        add(goal, met, "; ".join(parts))

    par = _get(scores, "parallel", "8x0.5s", DAGRUN)
    fl = _get(scores, "parallel", "8x0.5s", FLOOR)
    if par and fl:
        eff = fl.median / par.median / min(cores(), par.cell.case.params["tasks"])
        add("parallel efficiency ≥ 0.95", eff >= 0.95, f"{eff:.2f} on {cores()} cores")
    else:
        add("parallel efficiency ≥ 0.95", None, "not measured")

    for peer in (DAGRUN, "dagrun-shm"):
        size = _largest(scores, "handoff", "", (peer, "ray"))
        d = _get(scores, "handoff", size, peer) if size else None
        ray = _get(scores, "handoff", size, "ray") if size else None
        at = f"at {size}" if size else ""
        goal = f"handoff of a returned array ({peer}): overhead ≤ Ray's"
        if d and ray:
            add(goal, d.median <= ray.median,
                f"{at}: {peer} {d.median * 1e3:.0f} ms, Ray {ray.median * 1e3:.0f} ms")
        else:
            add(goal, None, f"{at}: not measured")
    size = _largest(scores, "handoff", "", (DAGRUN, "pool"))
    d = _get(scores, "handoff", size, DAGRUN) if size else None
    pool = _get(scores, "handoff", size, "pool") if size else None
    at = f"at {size}" if size else ""
    if d and pool:
        ok = d.median <= 0 or pool.median / d.median >= 100
        ratio = "∞" if d.median <= 0 else f"{pool.median / d.median:.0f}×"
        add("handoff: ≥ 100× below the pickling Pool", ok,
            f"{at}: Pool {pool.median * 1e3:.0f} ms / dagrun {d.median * 1e3:.0f} ms = {ratio}")
    else:
        add("handoff: ≥ 100× below the pickling Pool", None, f"{at}: not measured")
    size = _largest(scores, "handoff", "", ("dagrun-empty",))
    e = _get(scores, "handoff", size, "dagrun-empty") if size else None
    at = f"at {size}" if size else ""
    if e:
        add("handoff with dagrun.empty: overhead < 10 ms", e.median < 0.010,
            f"{at}: {e.median * 1e3:.1f} ms")
    else:
        add("handoff with dagrun.empty: overhead < 10 ms", None, f"{at}: not measured")

    for peer in (DAGRUN, "dagrun-empty", "dagrun-shm"):
        mem = _largest(scores, "memory", "", (peer, "dask-cluster"))
        m = _get(scores, "memory", mem, peer) if mem else None
        goal = f"memory chain ({peer}): peak ≤ 1.1× two-array floor"
        if m:
            x = m.median / (2 * m.cell.case.params["nbytes"] / GiB)
            add(goal, x <= 1.1, f"{mem}: {m.median:.2f} GiB = {x:.2f}×")
        else:
            add(goal, None, f"{mem or ''}: not measured")
        dc = _get(scores, "memory", mem, "dask-cluster") if mem else None
        goal = f"memory chain ({peer}): wall ≤ Dask LocalCluster's"
        if m and dc:
            w = _median([r["net_s"] for r in m.cell.samples])
            wd = _median([r["net_s"] for r in dc.cell.samples])
            add(goal, w <= wd, f"{mem}: {w:.2f} s vs {wd:.2f} s")
        else:
            add(goal, None, f"{mem or ''}: not measured")

    h = _get(scores, "startup", "help", DAGRUN)
    add("`dagrun --help` < 0.3 s", (h.median < 0.3) if h else None,
        f"{h.median:.3f} s" if h else "not measured")
    return out + report_more.goals(scores)


# --- output -------------------------------------------------------------------------------


def _fmt(workload: str, v: float | None) -> str:
    if v is None:
        return "—"
    if workload == "handoff":
        return f"{v * 1e3:+.1f} ms"
    if workload == "overhead":
        return f"{v:.1f} µs" if v < 100 else f"{v:.0f} µs"
    if workload == "memory":
        return f"{v:.2f} GiB"
    if workload in ("scaling", "liveview"):
        return f"{v:.0f} µs"
    return f"{v:.3f} s"


def _x(r: float | None) -> str:
    if r is None:
        return "—"
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def _status(s: Scored) -> str:
    c = s.cell
    return c.status if c.status != "ok" else ("ok" if c.samples else "—")


def long_table(scores: dict) -> str:
    """Every cell with all its samples (the terminal table)."""
    lines = []
    for workload in WORKLOADS:
        keys = [k for k in scores if k[0] == workload]
        if not keys:
            continue
        lines += ["", f"## {workload} ({UNITS[workload]})", "",
                  "| case | peer | median | ×floor | ×dagrun | samples | notes |",
                  "| --- | --- | ---: | ---: | ---: | --- | --- |"]
        for key in keys:
            for peer, s in scores[key].items():
                samples = ", ".join(_fmt(workload, v) for v in s.values)
                if s.cell.status == "ok":
                    note = "; ".join(filter(None, [s.extra, s.cell.note]))
                else:
                    note = f"{s.cell.status}: {s.cell.note}"
                if any(r.get("leftovers") for r in s.cell.samples):
                    note += " (left processes or /dev/shm entries behind)"
                if any(r.get("teardown_error") for r in s.cell.samples):
                    note += " (engine teardown hung or failed)"
                lines.append(
                    f"| {key[1]} | {peer} | {_fmt(workload, s.median)} | {_x(s.ratio_floor)} | "
                    f"{_x(s.ratio_dagrun)} | {samples} | {note[:140]} |"
                )
    return "\n".join(lines)


def pivot_table(scores: dict, workload: str) -> str:
    """Peers x cases: median, and (× dagrun) for the others."""
    keys = [k for k in scores if k[0] == workload]
    if not keys:
        return ""
    peers: list[str] = []
    for k in keys:
        peers += [p for p in scores[k] if p not in peers]
    head = f"| peer | {' | '.join(k[1] for k in keys)} |"
    lines = [head, "|" + " --- |" * (len(keys) + 1)]
    for peer in peers:
        cells = []
        for k in keys:
            s = scores[k].get(peer)
            if s is None:
                cells.append("")
            elif s.median is None:
                cells.append(_status(s) if s.cell.status != "ok" else "—")
            else:
                txt = _fmt(workload, s.median)
                if workload == "parallel" and s.extra:
                    txt += f" ({s.extra.split(', ')[1]})"
                elif workload == "memory" and s.extra:
                    ratio, wall = s.extra.split("; ")[:2]
                    txt += f" ({ratio.split()[0]}), {wall.split()[1]}"
                elif peer != DAGRUN and s.ratio_dagrun is not None:
                    txt += f" ({_x(s.ratio_dagrun)})"
                cells.append(txt)
        lines.append(f"| {peer} | {' | '.join(cells)} |")
    return "\n".join(lines)


def goals_table(gs: list[dict[str, Any]]) -> str:
    """The goals, met or not."""
    mark = {True: "met", False: "**not met**", None: "not measured"}
    lines = ["| goal | result | numbers (medians, this run) |", "| --- | --- | --- |"]
    lines += [f"| {g['goal']} | {mark[g['met']]} | {g['detail']} |" for g in gs]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        st = os.statvfs("/dev/shm")
        shm = st.f_blocks * st.f_frsize
    except OSError:
        shm = 0
    versions = {}
    for pkg in ("numpy", "pyarrow", "dask", "distributed", "ray", "joblib", "psutil"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "dagrun"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            commit += " + uncommitted changes"
    except OSError:
        commit = ""
    return {
        "cpu": model,
        "usable_cpus": cores(),
        "memory_gib": round(mem / GiB, 1),
        "dev_shm_gib": round(shm / GiB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "dagrun_commit": commit,
    }


def to_json(scores: dict, gs: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """Everything, with every sample's raw record."""
    workloads: dict[str, Any] = {}
    for (workload, case), row in scores.items():
        w = workloads.setdefault(workload, {"unit": UNITS[workload], "cases": {}})
        first = next(iter(row.values())).cell.case
        w["cases"][case] = {
            "params": first.params,
            "peers": {
                peer: {
                    "status": s.cell.status,
                    "note": s.cell.note,
                    "median": s.median,
                    "samples": s.values,
                    "ratio_floor": s.ratio_floor,
                    "ratio_dagrun": s.ratio_dagrun,
                    "summary": s.extra,
                    "records": s.cell.samples,
                }
                for peer, s in row.items()
            },
        }
    return {"meta": meta, "goals": gs, "workloads": workloads}


def load(path: Path) -> tuple[list[Cell], dict[str, Any]]:
    """The cells and metadata of a results JSON written by :func:`to_json`."""
    from .workloads import Case

    data = json.loads(path.read_text())
    cells = []
    for workload, w in data["workloads"].items():
        for name, case in w["cases"].items():
            c = Case(workload, name, case["params"], tuple(case["peers"]))
            for peer, p in case["peers"].items():
                cells.append(Cell(c, peer, list(p["records"]), p["status"], p["note"]))
    return cells, data["meta"]


def markdown(scores: dict, gs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The README's benchmark section."""
    m = meta["machine"]
    when = meta["finished"][:10]
    out = [
        "## Benchmarks",
        "",
        f"Measured {when} on {m['cpu'] or 'an unnamed CPU'} ({m['usable_cpus']} usable cores, "
        f"{m['memory_gib']} GiB RAM, /dev/shm {m['dev_shm_gib']} GiB), Python {m['python']}, "
        f"dagrun {m['dagrun_commit']}, with `{meta['command']}` "
        f"({meta['reps']} repetitions{'' if meta.get('reps_forced') else ', handoff 5'}, "
        "fewer where a cell's time budget ran out; interleaved; medians). "
        "Every sample, ratio and raw "
        "record is in [`tests/bench/results.json`](tests/bench/results.json); "
        "`make bench` reruns it (`BENCH_ARGS=--quick` for the reduced set).",
        "",
        "Peers: `floor` is the same work in one process; `dagrun` as shipped (a large "
        "result whose only consumer can start at once stays in its worker), `dagrun-empty` "
        "with producers writing into `dagrun.empty`, `dagrun-shm` with `DAGRUN_HOLD_MIN=off` "
        "(every value through shared memory, consumers in other processes); "
        "`pool` is `multiprocessing.Pool` "
        "as the seed guide writes it (`apply_async`, values pickled), `ppe` "
        "`concurrent.futures.ProcessPoolExecutor` — both driven by a ready queue for DAGs; "
        "`shm` a hand-written `shared_memory` handoff; `dask-processes` Dask's processes "
        "scheduler (no fusion), `dask-cluster` a 2-worker `LocalCluster`; `ray`; `joblib` "
        "(level by level). Engines are started before the clock runs; dagrun starts its pool "
        "inside `dagrun.run`, so every DAG workload subtracts the same peer's run of a tiny "
        "DAG of the same shape (start-up is measured on its own under *startup*).",
        "",
        "### Goals",
        "",
        goals_table(gs),
    ]
    captions = {
        "handoff": "Handoff of a float64 array from a producer to its consumer (in another "
        "process, except where a peer keeps it in the producer's worker): overhead over the "
        "in-process floor (ms: median end to end minus the floor's median), (end-to-end "
        "time ÷ dagrun's).",
        "overhead": "No-op tasks: µs per task, (÷ dagrun's: below 1× the peer is cheaper).",
        "parallel": "8 CPU-bound tasks of ~0.5 s and a reduce: wall s (efficiency on the "
        "machine's cores).",
        "memory": "Chain of six stages each making a fresh array from the previous one: peak "
        "of all processes' private memory + /dev/shm above idle (× the two-array floor), "
        "wall s.",
        "startup": "Whole commands from a shell: wall s (× dagrun). `help`: `dagrun --help` vs "
        "`python -c pass` / `import typer`; `hello`: a two-stage pipeline, `dagrun run` from "
        "the CLI vs `python -c` with the same imports and each peer starting its engine; "
        "`three-M`: a three-stage pipeline, `dagrun run --start-method M` vs a plain "
        "`multiprocessing.Pool` script (start method M) running the same three functions.",
    }
    for workload in WORKLOADS:
        table = "" if workload in report_more.OWN else pivot_table(scores, workload)
        if table:
            out += ["", f"### {workload}", "", captions[workload], "", table]
    return "\n".join(out + report_more.sections(scores)) + "\n"


def write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def dump_json(path: Path, data: dict[str, Any]) -> None:
    """Write the results JSON."""
    write(path, json.dumps(data, indent=1, default=str) + "\n")


def now() -> str:
    """UTC now, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")
