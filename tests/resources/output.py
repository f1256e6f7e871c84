"""Stages that print, write to stderr and to fd 1/2, log, warn, use structlog, and crash.

Every line they write must come back as a ``task_log`` event of the stage
(``tests/test_output.py``), before the stage's outcome, under every start
method; the crashing ones also show their last lines in their error.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import warnings

import structlog

from dagrun import stage


@stage
def prints() -> int:
    print("out one")
    print("out two", flush=True)
    print("no newline at the end", end="")
    return 1


@stage
def writes() -> int:
    sys.stderr.write("err line\n")
    os.write(2, b"fd two line\n")
    os.write(1, b"fd one line\n")
    os.write(1, b"fd one without newline")
    return 2


@stage
def logs() -> int:
    log = logging.getLogger("tests.output")
    log.info("logged info")
    log.warning("logged warning\nsecond line")
    warnings.warn("careful now", UserWarning, stacklevel=1)
    return 3


@stage
def structlogs() -> int:
    structlog.get_logger().info("struct event", rows=5)
    structlog.get_logger().error("struct failure")
    return 4


@stage
def ordered() -> int:
    log = logging.getLogger("tests.output")
    for i in range(5):
        print(f"print {i}")
        log.warning("log %d", i)
    return 5


@stage
def exits_after_printing() -> int:
    print("last words before exit")
    os.write(2, b"raw words before exit\n")
    os._exit(3)


@stage
def killed_after_printing() -> int:
    print("last words before kill")
    os.write(2, b"raw words before kill\n")
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)
    return 0


@stage
def hangs_after_printing() -> int:
    print("last words before the timeout")
    time.sleep(30)
    return 0


@stage
def quiet() -> int:
    return 0
