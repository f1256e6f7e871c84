"""A pipeline that is slow to import, or to validate, or to run: for signals at each phase.

``$SLOW_PHASE`` picks the phase (``import``, ``validation`` or ``run``) and
``$SLOW_MARKER`` names a file written once the slow part has begun (and, for
each task of ``stubborn``, ``<marker>.<element>`` once it ignores SIGTERM).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from dagrun import stage

PHASE = os.environ.get("SLOW_PHASE", "")
MARKER = os.environ.get("SLOW_MARKER", "")


def _begin(suffix: str = "") -> None:
    if MARKER:
        Path(MARKER + suffix).write_text(str(os.getpid()))


if PHASE == "import":
    _begin()
    time.sleep(60)


def slow_int() -> type:
    """Resolving this annotation (during validation) takes a minute."""
    if PHASE == "validation":
        _begin()
        time.sleep(60)
    return int


@stage
def first(size: slow_int() = 3) -> list:  # type: ignore[valid-type]
    return list(range(size))


@stage(map="first", batch_size=1)
def stubborn(first: int) -> int:
    """Ignores SIGTERM and sleeps, so stopping each task takes the whole grace period."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _begin()
    _begin(f".{first}")
    time.sleep(60)
    return first
