"""Run the plan: every (case, peer) several times, interleaved, each in a fresh process.

::

    for each workload:
      for rep in 1..R:                       interleaved, so slow drift of a noisy
        for case in workload's cases:        machine hits every peer alike
          for peer in peers (rotated by rep):
            child process -> sample record   (tests.bench.child, or a startup command)
            clean up after it                (processes carrying its token; /dev/shm)

A cell (case x peer) that times out, fails or is unavailable keeps that
status and is not run again. Every child gets a fresh token in its
environment (``DAGRUN_BENCH_TOKEN``); whatever process still carries it after
the child has exited is a leftover (a Ray raylet, a dask nanny…), is killed by
pid and is recorded in the sample. ``/dev/shm`` entries created during a child
that outlive it and are mapped or opened by nobody are recorded as leaked;
those made by the hand-written ``shm`` peer are removed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .peers import SHM_PREFIX
from .workloads import Case

REPO = Path(__file__).resolve().parents[2]
SHM = Path("/dev/shm")
TOKEN_VAR = "DAGRUN_BENCH_TOKEN"

PROBE = r"""
import importlib, json
notes = {}
def probe(name, fn):
    try:
        fn()
        notes[name] = None
    except Exception as exc:
        notes[name] = f"{type(exc).__name__}: {exc}"[:300]
def dagrun_api(empty=False):
    dagrun = importlib.import_module("dagrun")
    need = ["run", "bind", "Pipeline"] + (["empty"] if empty else [])
    missing = [a for a in need if not hasattr(dagrun, a)]
    if missing:
        raise AttributeError("dagrun has no " + ", ".join(missing) + " yet")
    importlib.import_module("tests.bench.stages")
probe("dagrun", dagrun_api)
probe("dagrun-empty", lambda: dagrun_api(empty=True))
probe("dagrun-api", dagrun_api)
probe("dask-processes", lambda: importlib.import_module("dask.multiprocessing"))
probe("dask-cluster", lambda: importlib.import_module("distributed"))
probe("ray", lambda: importlib.import_module("ray"))
probe("joblib", lambda: importlib.import_module("joblib"))
print(json.dumps(notes))
"""


@dataclass
class Cell:
    """The samples of one peer on one case."""

    case: Case
    peer: str
    samples: list[dict[str, Any]] = field(default_factory=list)
    status: str = "ok"  # ok | unavailable | n/a | timeout | error
    note: str = ""
    spent_s: float = 0.0  # wall time of this cell's children so far

    @property
    def done(self) -> bool:
        return self.status != "ok"


@dataclass
class Settings:
    """How the run goes."""

    reps: int
    timeout_s: float
    workers: int
    log_dir: Path
    quick: bool
    cell_budget_s: float = 45.0  # a cell stops repeating once its samples took this long
    reps_forced: bool = False  # --reps given: it overrides the cases' own counts
    echo: Callable[[str], None] = print


def child_env(token: str) -> dict[str, str]:
    """The environment of a child: the repo importable, a token to find its processes by."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env[TOKEN_VAR] = token
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    return env


def probe_peers() -> dict[str, str | None]:
    """Which optional peers import here: ``{peer: None or why not}``."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=child_env("probe"),
        capture_output=True, text=True, timeout=120,
    )
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"dagrun": f"probe failed: {out.stderr[-300:]}"}


def _pids_with_token(token: str) -> list[int]:
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle in f.read():
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


def reap(token: str, grace_s: float = 5.0) -> list[str]:
    """Kill the processes still carrying ``token`` (after a grace period); say which."""
    deadline = time.monotonic() + grace_s
    pids = _pids_with_token(token)
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = _pids_with_token(token)
    killed = []
    for pid in pids:
        killed.append(f"{pid} {_cmdline(pid)}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed


def shm_entries() -> set[str]:
    """Names in /dev/shm now."""
    try:
        return set(os.listdir(SHM))
    except OSError:
        return set()


def shm_in_use() -> set[str]:
    """/dev/shm names some live process has mapped or open."""
    used: set[str] = set()
    prefix = str(SHM) + "/"
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/maps") as f:
                for line in f:
                    i = line.find(prefix)
                    if i >= 0:
                        used.add(line[i + len(prefix):].split()[0].split("/")[0])
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                target = os.readlink(fd.path)
                if target.startswith(prefix):
                    used.add(target[len(prefix):].split()[0].split("/")[0])
        except OSError:
            continue
    return used


def _ours(name: str, pid: int) -> bool:
    """Whether a /dev/shm name was made by the child ``pid`` (or the bench's own peer).

    /dev/shm is shared with everyone on the machine (other runs of dagrun's
    tests among them), so only names that carry the child's pid — dagrun's
    ``dagrun-<driver pid>-…``, joblib's ``joblib_memmapping_folder_<pid>_…`` —
    or the bench's prefix are attributed to it.
    """
    return name.startswith(SHM_PREFIX) or str(pid) in re.split(r"[-_.]", name)


def leaked_shm(before: set[str], pid: int) -> list[str]:
    """Entries the child ``pid`` created that outlived it; the bench's own ones are removed."""
    new = {n for n in shm_entries() - before if _ours(n, pid)}
    if not new:
        return []
    new -= shm_in_use()
    for name in sorted(new):
        if name.startswith(SHM_PREFIX):
            (SHM / name).unlink(missing_ok=True)
    return sorted(new)


class Runner:
    """Runs cells' repetitions in child processes and records their samples."""

    def __init__(self, settings: Settings, unavailable: dict[str, str | None]) -> None:
        self.s = settings
        self.unavailable = {k: v for k, v in unavailable.items() if v}
        self.counter = 0

    def _spawn(self, argv: list[str], timeout_s: float, log: Path) -> tuple[int | None, str, list]:
        """Run ``argv`` in a new session; return (rc or None on timeout, stdout, leftovers)."""
        token = uuid.uuid4().hex
        before = shm_entries()
        with open(log, "ab") as logf:
            logf.write(f"\n$ {' '.join(argv)}\n".encode())
            logf.flush()
            proc = subprocess.Popen(
                argv, cwd=REPO, env=child_env(token), stdout=subprocess.PIPE,
                stderr=logf, start_new_session=True,
            )
            try:
                stdout, _ = proc.communicate(timeout=timeout_s)
                rc: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                # SIGINT to the child alone: it unwinds (KeyboardInterrupt) and stops its engine
                os.kill(proc.pid, signal.SIGINT)
                try:
                    stdout, _ = proc.communicate(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    stdout, _ = proc.communicate()
                rc = None
            logf.write(stdout[-4000:])
        leftovers = reap(token)
        leaks = leaked_shm(before, proc.pid)
        return rc, stdout.decode(errors="replace"), [*leftovers, *(f"/dev/shm/{n}" for n in leaks)]

    def measure(self, cell: Cell, rep: int) -> None:
        """One more sample of ``cell``."""
        case = cell.case
        if cell.peer in self.unavailable:
            cell.status, cell.note = "unavailable", self.unavailable[cell.peer] or ""
            return
        timeout = case.timeout_s or self.s.timeout_s
        log = self.s.log_dir / f"{case.workload}-{case.name}-{cell.peer}.log"
        self.counter += 1
        t0 = time.perf_counter()
        if case.workload == "startup":
            record = self._startup(cell, timeout, log)
        else:
            record = self._dag_child(cell, timeout, log)
        record["rep"] = rep
        elapsed = time.perf_counter() - t0
        cell.spent_s += elapsed
        status = record.get("status", "error")
        if status == "ok":
            cell.samples.append(record)
        else:
            cell.status, cell.note = status, record.get("note", "")
            if status == "unavailable":
                self.unavailable[cell.peer] = cell.note
        extra = f" leftovers: {record['leftovers']}" if record.get("leftovers") else ""
        self.s.echo(
            f"  [{self.counter:4d}] {case.workload:8s} {case.name:18s} {cell.peer:15s} "
            f"rep {rep + 1}: {_brief(record)}  ({elapsed:.1f}s){extra}"
        )

    def _dag_child(self, cell: Cell, timeout: float, log: Path) -> dict[str, Any]:
        spec = {
            "workload": cell.case.workload,
            "params": cell.case.params,
            "peer": cell.peer,
            "workers": self.s.workers,
            "memory": cell.case.workload == "memory",
        }
        with tempfile.TemporaryDirectory(prefix="dagrun-bench-") as tmp:
            out = Path(tmp) / "record.json"
            argv = [sys.executable, "-m", "tests.bench.child", json.dumps(spec), str(out)]
            rc, _, leftovers = self._spawn(argv, timeout, log)
            record = json.loads(out.read_text()) if out.exists() else {}
            if record.get("status") == "ok" and rc != 0:
                # measured, then its engine would not stop: keep the sample, say so
                record["teardown_error"] = "timed out" if rc is None else f"killed ({rc})"
            elif rc is None:
                record = {"status": "timeout", "note": f"over {timeout:.0f}s"}
            elif not record:
                record = {"status": "error", "note": f"child exited {rc}; see {log}"}
        if leftovers:
            record["leftovers"] = leftovers
        return record

    def _startup(self, cell: Cell, timeout: float, log: Path) -> dict[str, Any]:
        from .startup import command, compile_sources

        compile_sources()
        with tempfile.TemporaryDirectory(prefix="dagrun-bench-state-") as state:
            argv = command(cell.case.params["what"], cell.peer, state, self.s.workers,
                           method=cell.case.params.get("method"))
            t0 = time.perf_counter()
            rc, stdout, leftovers = self._spawn(argv, timeout, log)
            wall = time.perf_counter() - t0
        if rc is None:
            return {"status": "timeout", "note": f"over {timeout:.0f}s"}
        if rc != 0:
            return {"status": "error", "note": f"exit {rc}; see {log}"}
        record: dict[str, Any] = {"status": "ok", "wall_s": wall,
                                  "loadavg_1m": os.getloadavg()[0]}
        for line in reversed(stdout.splitlines()):
            if line.startswith('{"engine_start_s"'):
                record.update(json.loads(line))
                break
        if leftovers:
            record["leftovers"] = leftovers
        return record


def _brief(record: dict[str, Any]) -> str:
    if record.get("status") != "ok":
        return f"{record.get('status')}: {record.get('note', '')}"[:160]
    parts = [f"wall {record['wall_s']:.3f}s"]
    if "net_s" in record:
        parts.append(f"net {record['net_s']:.3f}s")
    if "peak_net_bytes" in record:
        parts.append(f"peak {record['peak_net_bytes'] / 2**30:.2f}GiB")
    if "engine_start_s" in record:
        parts.append(f"engine {record['engine_start_s']:.3f}s")
    return ", ".join(parts)


def run_plan(cases: list[Case], settings: Settings, runner: Runner) -> list[Cell]:
    """Measure every cell of ``cases``, repetitions interleaved per workload."""
    cells: list[Cell] = []
    by_workload: dict[str, list[tuple[Case, list[Cell]]]] = {}
    for case in cases:
        peers = case.quick_peers if settings.quick else case.peers
        row = [Cell(case, p) for p in peers]
        cells += row
        by_workload.setdefault(case.workload, []).append((case, row))
    def reps_of(case: Case) -> int:
        if settings.reps_forced:
            return settings.reps
        return (settings.quick and case.quick_reps) or case.reps or settings.reps

    for workload, group in by_workload.items():
        reps = max(reps_of(c) for c, _ in group)
        settings.echo(f"{workload}: {sum(len(r) for _, r in group)} cells x up to {reps} reps")
        for rep in range(reps):
            for case, row in group:
                if rep >= reps_of(case):
                    continue
                k = rep % len(row)
                for cell in row[k:] + row[:k]:
                    if cell.done:
                        continue
                    if cell.samples and cell.spent_s >= settings.cell_budget_s:
                        cell.note = f"{len(cell.samples)} samples (time budget)"
                        continue
                    runner.measure(cell, rep)
    return cells
