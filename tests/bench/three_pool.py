"""The three functions of ``three.py`` with a plain ``multiprocessing.Pool``, as a script.

``python tests/bench/three_pool.py METHOD WORKERS``: start a Pool of WORKERS
with start method METHOD, run load -> square -> total in it, print the total.
"""

from __future__ import annotations

import multiprocessing
import sys

from tests.bench.three_funcs import load, square, total


def main(method: str, workers: int) -> float:
    """Run the chain in a Pool; return the total."""
    with multiprocessing.get_context(method).Pool(processes=workers) as pool:
        values = pool.apply(load)
        squared = pool.apply(square, (values,))
        return pool.apply(total, (squared,))


if __name__ == "__main__":
    print(main(sys.argv[1], int(sys.argv[2])))
