"""A ``@worker_init`` resource: made once per worker process, again in a replacement."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import dagrun
from dagrun import stage


@dagrun.worker_init
def model() -> dict:
    """Stands in for loading a model: who made it, and a token unique to this making."""
    return {"pid": os.getpid(), "token": uuid.uuid4().hex}


@dagrun.worker_init
def connection():
    """A generator resource: the code after ``yield`` is its teardown."""
    log = os.environ.get("DAGRUN_TEST_TEARDOWN_LOG")
    yield f"connection-{os.getpid()}"
    if log:
        with open(log, "a") as f:
            f.write(f"closed {os.getpid()}\n")


@stage
def items(count: int = 8) -> list[int]:
    return list(range(count))


@stage(map="items", batch_size=1, retries=1)
def predict(items: int, model: dict, crash_marker: str = "") -> tuple[int, int, str]:
    """One element per task; element 3 crashes its worker once when ``crash_marker`` is set."""
    if crash_marker and items == 3 and not Path(crash_marker).exists():
        Path(crash_marker).write_text("crashed once")
        os._exit(1)
    return (os.getpid(), model["pid"], model["token"])


@stage
def query(items: list[int], connection: str) -> str:
    return connection
