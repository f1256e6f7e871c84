"""Time one array handoff through the store, producer and consumer in two processes.

    driver ──"produce"──▶ producer: arr = np.empty|dagrun.empty; arr[:] = k; encode
    driver ◀──handle───── producer
    driver ──handle─────▶ consumer: decode; arr.sum(); close
    driver ◀──sum──────── consumer; Store.release(handle)

``handoff`` returns the median end-to-end time and the median in-process
floor (the same fill and sum in one process); their difference is the
store's overhead. ``python -m tests.bench.store_handoff`` prints a small table.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from dagrun.store import Store, StoreConfig, active, decode, empty, encode


def _producer(conn: Connection, config: StoreConfig, count: int, in_place: bool) -> None:
    while (k := conn.recv()) is not None:
        with active(config, "produce"):
            arr = empty(count) if in_place else np.empty(count)
            arr[:] = k
        handle = encode(arr, config, "produce")
        del arr
        conn.send(handle)


def _consumer(conn: Connection, config: StoreConfig) -> None:
    while (handle := conn.recv()) is not None:
        decoded = decode(handle, config, "consume")
        total = float(decoded.value.sum())
        decoded.close()
        del decoded
        conn.send(total)


def _floor(count: int, k: int) -> float:
    t0 = time.perf_counter()
    arr = np.empty(count)
    arr[:] = k
    float(arr.sum())
    del arr
    return time.perf_counter() - t0


def handoff(
    nbytes: int,
    *,
    in_place: bool = False,
    repeat: int = 5,
    start_method: str = "spawn",
    state_dir: str | None = None,
    pool_bytes: int = -1,
) -> dict[str, Any]:
    """Median seconds of a float64 handoff of ``nbytes`` vs the in-process floor.

    ``pool_bytes=0`` turns segment recycling off (every value gets a fresh segment).
    """
    count = nbytes // 8
    ctx = mp.get_context(start_method)
    with tempfile.TemporaryDirectory() as tmp:
        run_id = f"bench-{uuid.uuid4().hex[:8]}"
        config = StoreConfig.for_run(run_id, state_dir or tmp, pool_bytes=pool_bytes)
        store = Store(config)
        p_conn, p_child = ctx.Pipe()
        c_conn, c_child = ctx.Pipe()
        producer = ctx.Process(target=_producer, args=(p_child, config, count, in_place))
        consumer = ctx.Process(target=_consumer, args=(c_child, config))
        producer.start()
        consumer.start()
        times, floors, transports = [], [], set()
        try:
            for k in range(repeat + 1):  # the first round warms up processes and the pool
                t0 = time.perf_counter()
                p_conn.send(k)
                handle = p_conn.recv()
                c_conn.send(handle)
                total = c_conn.recv()
                store.release(handle)
                elapsed = time.perf_counter() - t0
                assert total == k * count, (total, k * count)
                transports.add(handle.transport)
                floor = _floor(count, k)
                if k:
                    times.append(elapsed)
                    floors.append(floor)
        finally:
            p_conn.send(None)
            c_conn.send(None)
            producer.join(10)
            consumer.join(10)
            store.close()
    e2e, floor = statistics.median(times), statistics.median(floors)
    return {
        "nbytes": nbytes,
        "in_place": in_place,
        "e2e_s": e2e,
        "floor_s": floor,
        "overhead_s": e2e - floor,
        "transport": "/".join(sorted(transports)),
    }


def main(argv: list[str] | None = None) -> None:
    """Print the handoff table for 8 MiB, 128 MiB and 1 GiB."""
    args = sys.argv[1:] if argv is None else argv
    sizes = [int(a) << 20 for a in args] or [8 << 20, 128 << 20, 1 << 30]
    print(f"{'size':>10} {'alloc':>9} {'e2e ms':>9} {'floor ms':>9} {'overhead ms':>12}")
    for nbytes in sizes:
        for in_place in (False, True):
            r = handoff(nbytes, in_place=in_place)
            print(
                f"{nbytes >> 20:>7} MiB {'empty' if in_place else 'ordinary':>9} "
                f"{1e3 * r['e2e_s']:9.1f} {1e3 * r['floor_s']:9.1f} {1e3 * r['overhead_s']:12.1f}"
            )


if __name__ == "__main__":
    main()
