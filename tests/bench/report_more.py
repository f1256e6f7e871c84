"""Scores, goals and tables of the workflow, scaling and liveview workloads, and start-up's ratio.

``report`` calls in here for these workloads: ``values`` (one score per
sample), ``goals`` (appended to the goals table) and ``sections`` (the README
tables). Every number is a median over the samples of this run; goals are
met / not met / not measured, never asserted.

Workflow goals, per instance: dagrun's second run within 1.03x the list
schedule, both on the scaled durations (what the tasks should take) and on
the durations the second run measured (what they took on this machine under
its load: a fair comparison when other processes slow the tasks down); and
both dagrun runs no slower than Dask LocalCluster's run.
"""

from __future__ import annotations

import statistics
from typing import Any

OWN = ("workflow", "scaling", "liveview")


def values(workload: str, samples: list[dict[str, Any]]) -> list[float]:
    """The displayed score of each sample."""
    if workload == "workflow":
        return [s["wall_s"] for s in samples]
    return [s["us_per_task"] for s in samples]


def _med(samples: list[dict[str, Any]], key: str) -> float | None:
    xs = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(xs) if xs else None


def _row(scores: dict, workload: str) -> dict[str, dict[str, Any]]:
    return {case: row for (w, case), row in scores.items() if w == workload}


def _samples(row: dict[str, Any], peer: str) -> list[dict[str, Any]]:
    s = row.get(peer)
    return s.cell.samples if s is not None else []


def workflow_numbers(row: dict[str, Any]) -> dict[str, float | None]:
    """The medians of one instance: model, dagrun's two runs, Dask, the whole command."""
    d, dask, cli = (_samples(row, p) for p in ("dagrun", "dask-cluster", "dagrun-cli"))
    model = d or dask or cli
    return {
        "tasks": _med(model, "tasks"), "edges": _med(model, "edges"),
        "work_s": _med(model, "work_s"), "critical_s": _med(model, "critical_s"),
        "bound_s": _med(model, "bound_s"), "list_s": _med(model, "list_s"),
        "first_s": _med(d, "first_s"), "second_s": _med(d, "second_s"),
        "list_measured_s": _med(d, "list_measured_s"),
        "work_measured_s": _med(d, "work_measured_s"),
        "dask_s": _med(dask, "wall_s"), "cli_s": _med(cli, "wall_s"),
    }


def _r(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def goals(scores: dict) -> list[dict[str, Any]]:
    """The workflow and start-up ratio goals."""
    out: list[dict[str, Any]] = []
    for case, row in _row(scores, "workflow").items():
        n = workflow_numbers(row)
        second, lst, real = n["second_s"], n["list_s"], n["list_measured_s"]
        if second is None:
            out.append({"goal": f"workflow {case}: 2nd run ≤ 1.03× list schedule", "met": None,
                        "detail": "dagrun not measured"})
        else:
            x, y = _r(second, lst), _r(second, real)
            out.append({
                "goal": f"workflow {case}: 2nd run ≤ 1.03× list schedule", "met": x <= 1.03,
                "detail": f"{second:.2f} s vs {lst:.2f} s = {x:.2f}× (scaled durations); "
                f"vs {real:.2f} s = {y:.2f}× on the durations this run measured",
            })
        dask = n["dask_s"]
        for which in ("first", "second"):
            v = n[f"{which}_s"]
            goal = f"workflow {case}: {which} run ≤ Dask LocalCluster"
            if v is None or dask is None:
                out.append({"goal": goal, "met": None, "detail": "not measured"})
            else:
                out.append({"goal": goal, "met": v <= dask,
                            "detail": f"{v:.2f} s vs {dask:.2f} s"})
    for case, row in _row(scores, "startup").items():
        if not case.startswith("three-"):
            continue
        d, p = _med(_samples(row, "dagrun"), "wall_s"), _med(_samples(row, "pool"), "wall_s")
        goal = f"startup {case}: `dagrun run` ≤ 3× the Pool script"
        if d is None or p is None:
            out.append({"goal": goal, "met": None, "detail": "not measured"})
        else:
            out.append({"goal": goal, "met": d / p <= 3.0,
                        "detail": f"{d:.2f} s / {p:.2f} s = {d / p:.2f}×"})
    return out


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def workflow_table(scores: dict) -> str:
    """One line per instance."""
    rows = _row(scores, "workflow")
    if not rows:
        return ""
    lines = [
        "| instance | tasks / edges | work | critical path | bound | list | dagrun 1st | "
        "dagrun 2nd | 2nd ÷ list | list (measured) | Dask | dagrun command |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case, row in rows.items():
        n = workflow_numbers(row)
        lines.append(
            f"| {case} | {_f(n['tasks'], '{:.0f}')} / {_f(n['edges'], '{:.0f}')} | "
            f"{_f(n['work_s'])} s | {_f(n['critical_s'])} s | {_f(n['bound_s'])} s | "
            f"{_f(n['list_s'])} s | {_f(n['first_s'])} s | {_f(n['second_s'])} s | "
            f"{_f(_r(n['second_s'], n['list_s']), '{:.2f}×')} | "
            f"{_f(n['list_measured_s'])} s (work {_f(n['work_measured_s'], '{:.1f}')} s) | "
            f"{_f(n['dask_s'])} s | {_f(n['cli_s'])} s |"
        )
    return "\n".join(lines)


def scaling_table(scores: dict) -> str:
    """Shapes x sizes: µs per task, the driver's peak memory growth."""
    rows = _row(scores, "scaling")
    if not rows:
        return ""
    lines = ["| case | µs per task | driver ru_maxrss growth | driver peak | build | notes |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for case, row in rows.items():
        s = _samples(row, "dagrun")
        cell = row["dagrun"].cell
        note = next((x["timed_out"] for x in s if x.get("timed_out")), "")
        if cell.status != "ok":
            note = f"{cell.status}: {cell.note}"
        growth, peak = _med(s, "maxrss_growth"), _med(s, "maxrss_after")
        lines.append(
            f"| {case} | {_f(_med(s, 'us_per_task'), '{:.0f}')} | "
            f"{_f(growth and growth / 2**20, '{:.0f} MiB')} | "
            f"{_f(peak and peak / 2**20, '{:.0f} MiB')} | {_f(_med(s, 'build_s'), '{:.2f} s')} | "
            f"{note} |"
        )
    return "\n".join(lines)


def liveview_table(scores: dict) -> str:
    """Console modes: µs per task, and the end-of-run summary's cost per task."""
    rows = _row(scores, "liveview")
    if not rows:
        return ""
    lines = ["| case | output | µs per task | summary µs per task | console bytes |",
             "| --- | --- | ---: | ---: | ---: |"]
    for case, row in rows.items():
        for peer in row:
            s = _samples(row, peer)
            lines.append(
                f"| {case} | {peer} | {_f(_med(s, 'us_per_task'), '{:.0f}')} | "
                f"{_f(_med(s, 'summary_us_per_task'), '{:.1f}')} | "
                f"{_f(_med(s, 'console_bytes'), '{:.0f}')} |"
            )
    return "\n".join(lines)


CAPTIONS = {
    "workflow": "WfCommons instances (fixed seeds), each task a stage burning its runtime "
    "scaled to 20 s of work in all and returning its scaled output bytes (64 MiB in all), "
    "2 workers. Wall s of each run itself; *bound* max(critical path, work / 2); *list* a "
    "greedy highest-bottom-level-first list schedule on 2 machines; *list (measured)* the "
    "same on the durations dagrun's second run measured; dagrun's second run reuses the "
    "first's history for priorities; *dagrun command* is `dagrun run` as a whole process.",
    "scaling": "Per-task cost above a one-task run at 1,000 / 10,000 / 100,000 tasks "
    "(independent no-op stages; a no-op map, batch_size=1, over a list, an array and an "
    "Arrow table), and the driver's ru_maxrss (100,000-task runs stop at dagrun's "
    "max_runtime: then the cost is per finished task).",
    "liveview": "1,000 no-op stages: µs per task with JSON lines to a pipe, no console "
    "output, and the console (live view) on a pseudo-terminal; the end-of-run summary "
    "(summarize + format over the run's events) timed alone.",
}


def sections(scores: dict) -> list[str]:
    """The README sections of these workloads (markdown lines)."""
    out: list[str] = []
    for name, table in (("workflow", workflow_table(scores)),
                        ("scaling", scaling_table(scores)),
                        ("liveview", liveview_table(scores))):
        if table:
            out += ["", f"### {name}", "", CAPTIONS[name], "", table]
    return out
