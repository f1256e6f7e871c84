"""The scaling and liveview workloads: dagrun's cost per task as runs grow, and per output.

``scaling`` (peer ``dagrun``), cases ``SHAPE-N`` for N in 1,000 / 10,000 / 100,000::

    independent   N bound copies of a no-op stage (a pipeline of N stages)
    map-list      a source of N list items and a no-op map over it, batch_size=1
    map-array     the same over the rows of an int64 array
    map-table     the same over the rows of an Arrow table (one-row tables)

Each sample: the same shape with N=1 run first (imports, pool start), then N;
``us_per_task = (wall(N) - wall(1)) / (N - 1)``. A case may cap its run with
``max_runtime_s`` (dagrun's own ``max_runtime``): a run stopped there reports
the tasks it finished and the cost per finished task, a lower bound. The driver's peak memory is
``ru_maxrss`` of this process (the driver: ``dagrun.run`` runs here, workers
are other processes), read before the pipeline is built and after the run.
``build_s`` is building the N-stage Pipeline (the independent shape only).

``liveview`` (case ``1000``): 1,000 no-op stages with ``log_format="json"``
to a pipe (drained by a thread), ``"none"``, and ``"console"`` to a
pseudo-terminal (``pty.openpty``, 50x120, drained), each against its own
one-task run; plus the end-of-run summary (``summary.summarize`` and
``format_summary`` over the run's events) timed on its own.

``python -m tests.bench.scaling profile SHAPE N`` prints a cProfile of one run.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from typing import Any

SHAPES = ("independent", "map-list", "map-array", "map-table")
MODES = {"json-pipe": "json", "none": "none", "console-pty": "console"}


def _maxrss() -> int:
    """Peak resident size of this process so far, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _pipeline(shape: str, n: int) -> tuple[Any, dict[str, Any]]:
    """The pipeline of ``shape`` with ``n`` tasks and its params."""
    from . import stages, tasks

    if shape == "independent":
        return stages.to_pipeline(tasks.independent(n)), {}
    return stages.map_pipeline(shape.removeprefix("map-")), {"n": n}


def _run(pipe: Any, params: dict[str, Any], workers: int, state: str,
         **kw: Any) -> tuple[float, str, int]:
    """One ``dagrun.run``: wall time, status and how many tasks finished."""
    import dagrun

    t0 = time.perf_counter()
    with dagrun.run(pipe, params=params, workers=workers, state_dir=state, no_cache=True,
                    **{"log_format": "none", **kw}) as res:
        wall = time.perf_counter() - t0
        if res.status not in ("succeeded", "timed_out"):
            msg = f"dagrun run {res.status}: {list(getattr(res, 'errors', {}))[:3]}"
            raise RuntimeError(msg)
        return wall, res.status, len(res.metrics)


def measure_scaling(spec: dict[str, Any]) -> dict[str, Any]:
    """One sample of a scaling case."""
    import tempfile

    shape, n, workers = spec["params"]["shape"], spec["params"]["n"], spec["workers"]
    with tempfile.TemporaryDirectory(prefix="dagrun-bench-state-") as state:
        tiny, tparams = _pipeline(shape, 1)
        _run(tiny, tparams, workers, state)  # warm-up: imports, first-task costs
        tiny_s = _run(tiny, tparams, workers, state)[0]
        rss0 = _maxrss()
        t0 = time.perf_counter()
        pipe, params = _pipeline(shape, n)
        build = time.perf_counter() - t0
        cap = spec["params"].get("max_runtime_s")
        wall, status, done = _run(pipe, params, workers, state,
                                  **({"max_runtime": cap} if cap else {}))
        rss1 = _maxrss()
    record = {"status": "ok", "loadavg_1m": os.getloadavg()[0], "wall_s": wall,
              "tiny_s": tiny_s, "build_s": build, "net_s": wall - tiny_s, "done": done,
              "us_per_task": (wall - tiny_s) / max(1, min(done, n) - 1) * 1e6,
              "maxrss_before": rss0, "maxrss_after": rss1, "maxrss_growth": rss1 - rss0}
    if status == "timed_out":  # the cost per task of the part that ran: a lower bound
        record["timed_out"] = f"stopped at max_runtime {cap:.0f}s, {done} of {n} tasks done"
    return record


class _Drain:
    """A thread reading (and dropping) everything written to ``fd`` until it closes."""

    def __init__(self, fd: int) -> None:
        self.fd, self.nbytes = fd, 0
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:  # EIO: the pty's other side is closed
                break
            if not chunk:
                break
            self.nbytes += len(chunk)

    def close(self) -> None:
        self.thread.join(timeout=5)
        os.close(self.fd)


def _console(mode: str) -> tuple[Any, _Drain | None]:
    """The stream a run in ``mode`` writes to, and the thread draining its other end."""
    if mode == "none":
        return None, None
    if mode == "json-pipe":
        r, w = os.pipe()
        return os.fdopen(w, "w"), _Drain(r)
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    return os.fdopen(slave, "w"), _Drain(master)


def _summary_cost(events_path: Any, workers: int) -> tuple[float, int]:
    """Seconds to summarise a run's events and format the summary; how many events."""
    import json

    from dagrun.events.summary import format_summary, summarize

    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    t0 = time.perf_counter()
    format_summary(summarize(events, workers))
    return time.perf_counter() - t0, len(events)


def measure_liveview(spec: dict[str, Any]) -> dict[str, Any]:
    """One sample of a console mode (the peer) on ``n`` no-op stages."""
    import tempfile

    import dagrun

    from . import stages, tasks

    mode, n, workers = spec["peer"], spec["params"]["n"], spec["workers"]
    if mode not in MODES:
        return {"status": "n/a", "note": f"no console mode {mode}"}
    tiny, big = stages.to_pipeline(tasks.independent(1)), stages.to_pipeline(tasks.independent(n))
    walls = []
    with tempfile.TemporaryDirectory(prefix="dagrun-bench-state-") as state:
        for pipe in (tiny, tiny, big):
            stream, drain = _console(mode)
            try:
                t0 = time.perf_counter()
                with dagrun.run(pipe, workers=workers, state_dir=state, no_cache=True,
                                log_format=MODES[mode], console=stream) as res:
                    walls.append(time.perf_counter() - t0)
                    events_path = res.events_path
            finally:
                if stream is not None:
                    stream.close()
                if drain is not None:
                    drain.close()
        summary_s, events = _summary_cost(events_path, workers)
    return {"status": "ok", "loadavg_1m": os.getloadavg()[0], "wall_s": walls[2],
            "tiny_s": walls[1], "net_s": walls[2] - walls[1],
            "us_per_task": (walls[2] - walls[1]) / (n - 1) * 1e6,
            "console_bytes": drain.nbytes if drain else 0, "events": events,
            "summary_s": summary_s, "summary_us_per_task": summary_s / n * 1e6}


def profile(shape: str, n: int, workers: int = 2, top: int = 25) -> None:
    """Print the driver's cProfile (cumulative, then own time) of one run of ``shape``-``n``."""
    import cProfile
    import pstats
    import tempfile

    pipe, params = _pipeline(shape, n)
    with tempfile.TemporaryDirectory(prefix="dagrun-bench-state-") as state:
        _run(*_pipeline(shape, 1), workers, state)  # warm-up
        prof = cProfile.Profile()
        prof.enable()
        _run(pipe, params, workers, state)
        prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    import sys

    if len(sys.argv) >= 4 and sys.argv[1] == "profile":
        profile(sys.argv[2], int(sys.argv[3]), *(int(a) for a in sys.argv[4:5]))
    else:
        sys.exit("usage: python -m tests.bench.scaling profile SHAPE N [WORKERS]")
