"""One measurement in a fresh process: ``python -m tests.bench.child SPEC_JSON OUT_PATH``.

The harness starts one of these per (peer, case, repetition), so no peer
inherits another's warm caches, leftover workers or fragmented heap. The
child::

    start the peer's engine            (not timed; see the startup workload)
    run the tiny DAG once              (warm-up: imports, first-task costs)
    run the tiny DAG 3x, timed         -> tiny_s (median is subtracted)
    run the real DAG once, timed       -> wall_s, net_s = wall_s - median(tiny_s)
    stop the engine

With ``"memory": true`` the last tiny run and the real run are each watched
by a :class:`~tests.bench.monitor.MemoryMonitor`. The result (or the error)
is written as JSON to OUT_PATH; stdout/stderr go to the harness's log file.
On a timeout the harness sends SIGINT to this process alone: the
KeyboardInterrupt unwinds through the peer's ``__exit__`` so pools, clusters
and Ray are shut down (no signal handler is installed, so forked workers
inherit nothing unusual). Should stopping the engine hang, a watchdog kills
the session after the record is written.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import workloads
from .monitor import MemoryMonitor, wait_quiet
from .peers import PEERS, Unavailable


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return a == b


TEARDOWN_S = 20.0


def _teardown_watchdog() -> None:
    """Kill this session (this process and its workers) if stopping the engine hangs.

    ``multiprocessing.Pool.terminate`` has been seen to wait forever on a worker;
    the measurement is already written by then, so nothing is lost.
    """
    print(f"engine teardown took over {TEARDOWN_S:.0f}s; killing the session", file=sys.stderr)
    sys.stderr.flush()
    if os.getpgid(0) == os.getpid():  # the harness made us a session leader
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def measure(spec: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run the measurement ``spec`` describes; ``emit`` the record before stopping the engine."""
    workload, params, peer_name = spec["workload"], spec["params"], spec["peer"]
    if workload in workloads.OWN_MEASURE:
        record = own_measure(spec)
        emit(record)
        return record
    dag = workloads.build(workload, params)
    tiny = workloads.build(workload, params, tiny=True)
    watch = bool(spec.get("memory"))
    peer = PEERS[peer_name](spec["workers"])
    why = peer.unsupported(dag, workload)
    if why:
        emit({"status": "n/a", "note": why})
        return {"status": "n/a", "note": why}
    record: dict[str, Any] = {"status": "ok", "loadavg_1m": os.getloadavg()[0]}
    t_start = time.perf_counter()
    with peer:
        record["engine_start_s"] = time.perf_counter() - t_start
        peer.run(tiny)
        tiny_s = []
        for _ in range(3):
            t0 = time.perf_counter()
            peer.run(tiny)
            tiny_s.append(time.perf_counter() - t0)
        if watch:
            wait_quiet()
            with MemoryMonitor() as mon:
                peer.run(tiny)
            record["tiny_peak_bytes"] = mon.delta
            wait_quiet()
        with MemoryMonitor() if watch else _nothing() as mon:
            t0 = time.perf_counter()
            out = peer.run(dag)
            wall = time.perf_counter() - t0
        if watch:
            record["peak_bytes"] = mon.delta
            record["peak_net_bytes"] = mon.delta - record["tiny_peak_bytes"]
            record["monitor_samples"] = mon.samples
        want = workloads.expected(workload, params)
        if want is not None and not all(_close(out[k], v) for k, v in want.items()):
            record = {"status": "error", "note": f"wrong result: {out!r}, expected {want!r}"}
        else:
            record.update(wall_s=wall, tiny_s=tiny_s, net_s=wall - statistics.median(tiny_s))
        emit(record)
        watchdog = threading.Timer(TEARDOWN_S, _teardown_watchdog)
        watchdog.daemon = True
        watchdog.start()
    watchdog.cancel()
    return record


def own_measure(spec: dict[str, Any]) -> dict[str, Any]:
    """A sample of a workload that measures in its own module (no peer object, no tiny DAG)."""
    if spec["workload"] == "workflow":
        from .workflow import measure as measure_workflow

        return measure_workflow(spec)
    from . import scaling

    if spec["workload"] == "scaling":
        return scaling.measure_scaling(spec)
    return scaling.measure_liveview(spec)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main(argv: list[str]) -> int:
    """Entry point: measure, write the record, exit 0 unless the harness must look at the log."""
    spec, out_path = json.loads(argv[0]), argv[1]

    def emit(record: dict[str, Any]) -> None:
        with open(out_path, "w") as f:
            json.dump(record, f)

    try:
        record = measure(spec, emit)
    except Unavailable as exc:
        record = {"status": "unavailable", "note": str(exc)}
    except BaseException as exc:  # noqa: BLE001 - every ending is reported to the harness
        traceback.print_exc()
        record = {"status": "error", "note": f"{type(exc).__name__}: {exc}"[:500]}
        if os.path.exists(out_path):  # measured, then failed while stopping the engine
            with open(out_path) as f:
                measured = json.load(f)
            if measured.get("status") == "ok":
                record = {**measured, "teardown_error": record["note"]}
    emit(record)
    return 0 if record["status"] in ("ok", "n/a", "unavailable") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
