"""Two stages that fit a small memory limit one at a time, but not together."""

import time

import numpy as np

from dagrun import stage


def _hold(mib: int) -> int:
    block = np.ones(mib << 17)  # 8-byte floats: mib MiB, every page touched
    time.sleep(1.5)
    return int(block[:: 1 << 12].sum() > 0)


@stage
def left() -> int:
    return _hold(400)


@stage
def right() -> int:
    return _hold(400)


@stage
def both(left: int, right: int) -> int:
    return left + right
