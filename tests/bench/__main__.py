"""``python -m tests.bench``: run the benchmark suite and print the ratio table."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from . import report, workloads
from .harness import REPO, Runner, Settings, probe_peers, run_plan

DEFAULT_JSON = REPO / "tests" / "bench" / "results.json"
DEFAULT_MD = REPO / "tests" / "bench" / "README_TABLE.md"
SCRATCH = REPO / "bench-results"


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="dagrun against its peers: medians, ratios and goals from one run. "
        "A full run writes tests/bench/results.json and tests/bench/README_TABLE.md; "
        "--quick or --only write to bench-results/ unless --json / --markdown say otherwise.",
    )
    p.add_argument("--quick", action="store_true", help="the reduced set (< 3 minutes)")
    p.add_argument(
        "--only", action="append", default=[], metavar="WORKLOAD[:CASE]",
        help=f"run only these (repeatable or comma-separated): {', '.join(workloads.WORKLOADS)}",
    )
    p.add_argument("--json", type=Path, help="where the results JSON goes")
    p.add_argument("--markdown", type=Path, help="where the README section goes")
    p.add_argument("--reps", type=int, help="repetitions per cell (default 3, handoff 5)")
    p.add_argument("--timeout", type=float, help="seconds per measurement (default 180; quick 40)")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: re-score a results JSON and rewrite its tables")
    p.add_argument("--baseline", metavar="REF",
                   help="also run dagrun as of this git commit (peer dagrun-base) in the "
                        "overhead and parallel workloads: before and after in one run")
    p.add_argument("--workers", type=int, default=workloads.cores(),
                   help="worker processes per engine (default: usable CPUs)")
    return p.parse_args(argv)


def select(cases: list[workloads.Case], only: list[str], quick: bool) -> list[workloads.Case]:
    """The cases that ``--only`` and ``--quick`` leave."""
    wanted = [w.strip() for item in only for w in item.split(",") if w.strip()]
    unknown = [w for w in wanted if w.split(":")[0] not in workloads.WORKLOADS]
    if unknown:
        msg = f"unknown workload(s) {', '.join(unknown)}; choose from {workloads.WORKLOADS}"
        raise SystemExit(msg)

    def keep(c: workloads.Case) -> bool:
        if (quick and not c.quick_peers) or (not quick and not c.full):
            return False
        if not wanted:
            return True
        return any(w == c.workload or w == f"{c.workload}:{c.name}" for w in wanted)

    return [c for c in cases if keep(c)]


def prepare_baseline(ref: str) -> Path:
    """Check ``ref`` out beside the tree; return a directory holding only its ``dagrun``."""
    import subprocess

    sha = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = SCRATCH / f"base-{sha}"
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], cwd=REPO,
                       check=True, capture_output=True)
    site = SCRATCH / f"base-{sha}-site"
    site.mkdir(parents=True, exist_ok=True)
    link = site / "dagrun"
    if not link.exists():
        link.symlink_to(tree / "dagrun")
    print(f"  baseline: dagrun at {sha} (peer dagrun-base)", flush=True)
    return site


def with_baseline(cases: list[workloads.Case]) -> list[workloads.Case]:
    """The overhead and parallel cases with the ``dagrun-base`` peer beside ``dagrun``."""
    import dataclasses

    out = []
    for case in cases:
        if case.workload in ("overhead", "parallel"):
            case = dataclasses.replace(
                case, peers=(*case.peers, "dagrun-base"),
                quick_peers=(*case.quick_peers, "dagrun-base") if case.quick_peers else (),
            )
        out.append(case)
    return out


def warm_up_memory(nbytes: int = 3 << 30) -> None:
    """Touch a few GiB once, in a throwaway process, before anything is measured.

    On this kind of virtual machine the first touch of guest memory that was
    never used since boot is several times slower than later ones, which made
    the first repetition of every large-array measurement an outlier.
    """
    import subprocess

    code = f"import numpy as np; a = np.ones({nbytes // 8}); print(a[::512].sum())"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, timeout=120)
    print(f"  touched {nbytes >> 30} GiB once in {time.perf_counter() - t0:.1f} s", flush=True)


def render(path: Path, md_path: Path) -> int:
    """Re-score ``path`` (a results JSON), print its tables, rewrite it and the README section."""
    cells, meta = report.load(path)
    scores = report.score(cells)
    publish(scores, report.goals(scores), meta, path, md_path)
    print(f"\nrewrote {path} and {md_path}")
    return 0


def publish(scores: dict, gs: list[dict], meta: dict, json_path: Path, md_path: Path) -> None:
    """Print the tables and goals; write the results JSON and the README section."""
    print(report.long_table(scores))
    print("\n## goals\n")
    print(report.goals_table(gs))
    report.dump_json(json_path, report.to_json(scores, gs, meta))
    report.write(md_path, report.markdown(scores, gs, meta))


def main(argv: list[str]) -> int:
    """Run the suite; exit 0 whatever the numbers say (a benchmark measures, never asserts)."""
    args = parse(argv)
    if args.render:
        return render(args.render, args.markdown or DEFAULT_MD)
    partial = args.quick or bool(args.only)
    reps = args.reps or 3
    timeout = args.timeout or (40.0 if args.quick else 180.0)
    stem = "results-quick" if args.quick else "results"
    json_path = args.json or (SCRATCH / f"{stem}.json" if partial else DEFAULT_JSON)
    md_path = args.markdown or (SCRATCH / f"{stem}.md" if partial else DEFAULT_MD)
    log_dir = SCRATCH / "logs" / time.strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m tests.bench " + shlex.join(argv) if argv else "python -m tests.bench"
    started = report.now()
    t0 = time.perf_counter()

    print(f"dagrun bench: {command}; logs in {log_dir.relative_to(REPO)}", flush=True)
    unavailable = probe_peers()
    for peer, why in unavailable.items():
        if why:
            print(f"  {peer}: unavailable ({why})", flush=True)
    iterations = 0
    only = [w.strip() for item in args.only for w in item.split(",")]
    if not only or any(w.startswith(("parallel", "workflow")) for w in only):
        iterations = workloads.calibrate()
        print(f"  calibrated burn: {iterations} iterations ≈ 0.5 s", flush=True)
    cases = select(workloads.cases(iterations), args.only, args.quick)
    if args.baseline:
        os.environ["DAGRUN_BENCH_BASE"] = str(prepare_baseline(args.baseline))
        cases = with_baseline(cases)
    if any(c.workload in ("handoff", "memory") for c in cases):
        warm_up_memory()

    settings = Settings(reps=reps, timeout_s=timeout, workers=args.workers,
                        log_dir=log_dir, quick=args.quick,
                        cell_budget_s=15.0 if args.quick else 45.0,
                        reps_forced=args.reps is not None,
                        echo=lambda s: print(s, flush=True))
    cells = run_plan(cases, settings, Runner(settings, unavailable))

    scores = report.score(cells)
    gs = report.goals(scores)
    meta = {
        "command": command,
        "started": started,
        "finished": report.now(),
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "quick": args.quick,
        "reps": reps,
        "reps_forced": args.reps is not None,
        "workers": args.workers,
        "timeout_s": timeout,
        "burn_iterations": iterations,
        "machine": report.machine(),
    }
    publish(scores, gs, meta, json_path, md_path)
    print(f"\n{meta['elapsed_s']:.0f} s; wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
