"""The startup workload's commands: each one a whole process, timed from outside.

``help``:  ``python -c pass`` (the floor), ``python -c "import typer"`` (what
           any Typer CLI pays), ``dagrun --help``.
``hello``: the two-stage hello pipeline from the CLI (``dagrun run``), against
           ``python -c`` with the same imports calling the two functions in a
           row (the floor), and each peer starting its engine, running the
           same two tasks and stopping (``python -m tests.bench.startup PEER``;
           it prints the engine's start/run/stop times, which the harness keeps).
``three``: the three-stage pipeline ``three.py`` from the CLI (``dagrun run
           --start-method M``) against ``three_pool.py``, a plain script
           running the same three functions in a ``multiprocessing.Pool`` of
           the same start method M (``fork`` or ``forkserver``).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

from .peers import PEERS, SeedPool
from .tasks import Dag, Task

BIN = Path(sys.executable).parent
FLOOR_HELLO = "from tests.bench.hello import hello, greet; greet(hello())"


def hello_world() -> str:
    """The greeting (plain function)."""
    return "hello"


def greet_world(hello: str) -> str:
    """The greeting, addressed (plain function)."""
    return f"{hello}, world"


HELLO = Dag((Task("hello", hello_world), Task("greet", greet_world, ("hello",))), ("greet",))


class ForkserverPool(SeedPool):
    """The seed's Pool, started with the ``forkserver`` method."""

    name = "pool-forkserver"

    def __enter__(self) -> ForkserverPool:
        import multiprocessing

        self.pool = multiprocessing.get_context("forkserver").Pool(processes=self.workers)
        return self


@functools.cache
def compile_sources() -> None:
    """Write the bytecode of dagrun and of the benchmark's files once, as an installed package has.

    Where ``PYTHONDONTWRITEBYTECODE`` is set, an editable install would
    otherwise compile dagrun's modules again in every measured command.
    """
    import compileall

    root = Path(__file__).resolve().parents[2]
    for folder in (root / "dagrun", root / "tests" / "bench"):
        compileall.compile_dir(folder, quiet=1)


def command(
    what: str, peer: str, state_dir: str, workers: int, method: str | None = None
) -> list[str]:
    """The argv measured for ``peer`` in case ``what`` (``method``: the start method)."""
    py = sys.executable
    if what == "three":
        if peer == "pool":
            return [py, "tests/bench/three_pool.py", method or "fork", str(workers)]
        return [str(BIN / "dagrun"), "run", "tests/bench/three.py", "--workers", str(workers),
                "--state-dir", state_dir, "--log-format", "json",
                "--start-method", method or "fork"]
    if what == "help":
        return {
            "floor": [py, "-c", "pass"],
            "typer": [py, "-c", "import typer"],
            "dagrun": [str(BIN / "dagrun"), "--help"],
        }[peer]
    if peer == "floor":
        return [py, "-c", FLOOR_HELLO]
    if peer == "dagrun":
        return [str(BIN / "dagrun"), "run", "tests/bench/hello.py", "--workers", str(workers),
                "--state-dir", state_dir, "--log-format", "json"]
    return [py, "-m", "tests.bench.startup", peer.removesuffix("-api"), str(workers)]


def _dagrun_hello(workers: int) -> dict[str, float]:
    """The hello pipeline through the Python API; dagrun's pool starts inside ``run``."""
    import tempfile

    import dagrun

    from . import hello

    pipeline = dagrun.Pipeline([hello.hello, hello.greet])
    with tempfile.TemporaryDirectory(prefix="dagrun-bench-state-") as state:
        t0 = time.perf_counter()
        with dagrun.run(pipeline, workers=workers, state_dir=state, log_format="json") as res:
            value = res["greet"]
        t1 = time.perf_counter()
    assert value == "hello, world", value
    return {"engine_start_s": 0.0, "run_s": t1 - t0, "stop_s": 0.0}


def main(argv: list[str]) -> int:
    """Start ``argv[0]``'s engine, run the hello DAG, stop; print the phases' times as JSON."""
    name, workers = argv[0], int(argv[1])
    if name == "dagrun":
        print(json.dumps(_dagrun_hello(workers)))
        return 0
    cls = ForkserverPool if name == ForkserverPool.name else PEERS[name]
    t0 = time.perf_counter()
    peer = cls(workers).__enter__()
    t1 = time.perf_counter()
    try:
        out = peer.run(HELLO)
    finally:
        t2 = time.perf_counter()
        peer.__exit__(None, None, None)
        t3 = time.perf_counter()
    assert out["greet"] == "hello, world", out
    print(json.dumps({"engine_start_s": t1 - t0, "run_s": t2 - t1, "stop_s": t3 - t2}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
