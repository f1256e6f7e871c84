"""The image example written the way the seed tutorial writes it, and a timing comparison.

Run the plain script (what the seed's "image_pipeline.py (sketch)" becomes when
filled in — shared memory attached once per worker by a ``Pool`` initializer,
``functools.partial`` to bind the transform's arguments, ``itertools.islice``
to batch indices, ``imap`` over batches)::

    .venv/bin/python tests/bench/seed_images.py --processes 2

Compare it with ``dagrun run pipelines.images`` (median of 5 wall times of a
fresh process each, 1 and 2 workers / processes)::

    .venv/bin/python tests/bench/seed_images.py --compare [--repeat 5]

Both do the same work with the same numpy kernels (imported from
``pipelines.images``): decode the 8 photos, stack them with their noisy
copies in shared memory, bilateral-filter and edge-detect every image in
parallel batches, compute per-image statistics, write Parquet and the
contact sheet. The script has to do by hand what dagrun does for it: create,
copy into, and unlink the shared block, pickle every result back through the
pool's pipe, keep the order, and clean up on errors.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from functools import partial
from itertools import islice
from multiprocessing import Pool, shared_memory
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipelines import images as kernels  # noqa: E402 - the same numpy code as the pipeline

GLOBAL: dict = {}


def init_worker(shm_name, shape, dtype):
    shm = shared_memory.SharedMemory(name=shm_name)
    GLOBAL["shm"] = shm  # keep the mapping alive
    GLOBAL["arr"] = np.ndarray(shape, dtype=dtype, buffer=shm.buf)


def process_batch(batch, transform):
    arr = GLOBAL["arr"]
    return [transform(arr[idx]) for idx in batch]


def batched_indices(n, batch_size):
    it = iter(range(n))
    while True:
        batch = list(islice(it, batch_size))
        if not batch:
            break
        yield batch


def main(processes, out_dir="out/seed_images", noise_levels=8, noise_step=0.02, size=256):
    # Load: the same catalog and noisy stack as pipelines.images, built in the parent.
    catalog = kernels.catalog("data/images", noise_levels, noise_step)  # stages are functions
    stack = kernels.images(catalog, size, 0)
    shm = shared_memory.SharedMemory(create=True, size=stack.nbytes)
    try:
        shared = np.ndarray(stack.shape, dtype=stack.dtype, buffer=shm.buf)
        shared[:] = stack[:]  # copy once
        n = len(stack)
        batch_size = max(1, -(-n // (processes * 4)))  # as dagrun's automatic choice
        transform = partial(kernels.enhance, radius=3, sigma_space=2.0, sigma_color=0.12)
        with Pool(processes, initializer=init_worker,
                  initargs=(shm.name, stack.shape, stack.dtype)) as pool:
            filtered = []
            for results in pool.imap(partial(process_batch, transform=transform),
                                     batched_indices(n, batch_size)):
                filtered.extend(results)
        table = kernels.stats(catalog, shared, filtered, 0.25)
        del shared
        path = kernels.report(table, filtered, out_dir)
    finally:
        shm.close()
        shm.unlink()
    return path


# -- the comparison ----------------------------------------------------------------------
def _wall(command: list[str], env: dict) -> tuple[float, float]:
    """Wall time and CPU time (user + system, all its processes) of one fresh run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def capacity(work: int = 3_000_000) -> float:
    """How many CPUs this machine gives two busy processes right now (2.0 when idle):
    other load on a shared machine caps any speedup measured here."""
    with Pool(2) as pool:
        pool.map(_burn, [1000, 1000])  # start both workers first
        started = time.perf_counter()
        pool.apply(_burn, (work,))
        single = time.perf_counter() - started
        started = time.perf_counter()
        pool.map(_burn, [work, work], chunksize=1)
        pair = time.perf_counter() - started
    return 2 * single / pair


def compare(repeat: int) -> None:
    """Median wall time of ``repeat`` fresh runs each, interleaved, 1 and 2 workers."""
    python = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    state = ROOT / ".dagrun" / "bench-seed-images"
    commands = {}
    for n in (1, 2):
        commands[f"dagrun run pipelines.images --workers {n}"] = [
            python, "-m", "dagrun", "run", "pipelines.images", "--workers", str(n),
            "--state-dir", str(state), "-p", "out_dir=out/bench/dagrun",
        ]
        commands[f"seed_images.py --processes {n} (multiprocessing.Pool)"] = [
            python, str(Path(__file__).resolve()), "--processes", str(n),
            "--out-dir", "out/bench/seed",
        ]
    load = os.getloadavg()[0]
    spare = [capacity()]
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # warm the page cache and imports once
        _wall(command, env)
    for _ in range(repeat):
        for name, command in commands.items():
            wall, used = _wall(command, env)
            times[name].append(wall)
            cpu[name].append(used)
    spare.append(capacity())
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"median of {repeat} fresh runs each (interleaved); {os.cpu_count()} CPUs, "
          f"1-min load average before {load:.2f}, after {os.getloadavg()[0]:.2f}")
    print(f"CPUs free for two processes (2.00 = idle machine): before {spare[0]:.2f}, "
          f"after {spare[1]:.2f}")
    print("  wall s (median, min)   cpu s  command   [wall times]")
    for name, t in times.items():
        print(f"  {med[name]:6.2f} {min(t):6.2f}  {statistics.median(cpu[name]):11.2f}  {name}   "
              f"[{', '.join(f'{x:.2f}' for x in t)}]")
    keys = list(commands)
    d1, s1, d2, s2 = (med[k] for k in keys)
    print(f"speedup 1 -> 2: dagrun {d1 / d2:.2f}x, Pool {s1 / s2:.2f}x; "
          f"dagrun / Pool wall time: {d1 / s1:.2f} (1), {d2 / s2:.2f} (2)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=os.cpu_count())
    parser.add_argument("--out-dir", default="out/seed_images")
    parser.add_argument("--compare", action="store_true", help="time dagrun against this script")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.compare:
        compare(args.repeat)
    else:
        started = time.perf_counter()
        where = main(args.processes, args.out_dir)
        print(f"seed_images: {args.processes} processes, {time.perf_counter() - started:.2f} s, "
              f"statistics in {where}")
