"""Cases for the Dask and Ray executors: a map, logs, a worker killed mid-task, a timeout,
a per-process resource, a stage no worker can run, and a large array handed between stages."""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from pathlib import Path

import numpy as np

import dagrun
from dagrun import stage


@stage
def numbers(n: int = 10) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


@stage(map="numbers", batch_size=3, concat=True)
def squared(numbers: np.ndarray) -> np.ndarray:
    return numbers**2


@stage
def total(squared: np.ndarray) -> float:
    print(f"adding {len(squared)} squares")
    logging.getLogger("remote_cases").warning("this is a warning")
    return float(squared.sum())


@stage(retries=1)
def dies_once(marker: str = "") -> int:
    """SIGKILLs its own worker the first time (a marker file remembers), then succeeds."""
    if marker and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


@stage
def dies() -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@stage(timeout=1.0)
def sleeps(seconds: float = 30.0) -> str:
    time.sleep(seconds)
    return "woke"


@dagrun.worker_init
def token() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex}"


@stage
def first_token(token: str) -> str:
    return token


@stage
def second_token(token: str, first_token: str) -> tuple[str, str]:
    return first_token, token


@stage(gpus=64)
def needs_gpus() -> int:
    return 0


@stage
def big(mib: int = 128) -> np.ndarray:
    return np.ones(mib << 20, dtype=np.uint8)


@stage
def big_sum(big: np.ndarray) -> int:
    return int(big[:: 1 << 20].sum())
