"""The inline executor: every task runs in the calling process, one at a time.

For debugging (``pdb`` and print work as usual) and for tiny pipelines. The
task still goes through the store, so stages see exactly what they would see
in a worker process (read-only inputs, the same transports). Timeouts cannot
be enforced in-process and are ignored. ``@worker_init`` resources are made
once per run (this process is the run's only worker) and torn down at
``shutdown``.

What the stage prints, writes to ``sys.stderr``, logs (``logging``,
``warnings``, structlog) becomes ``TaskLog`` events delivered before the
task's outcome (``capture.captured``), so the driver's own stdout never
receives a stage's output; output written straight to fd 1 or 2 (C code, a
subprocess) is not captured inline: use the local executor for that.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..pipeline.resources import Resources
from ..store import StoreConfig
from . import capture
from .base import Capabilities, Event, ExecutorContext, TaskLog, TaskSpec
from .machine import MachineValues
from .worker import execute


def create(context: ExecutorContext) -> InlineExecutor:
    """The ``inline`` executor of a run."""
    return InlineExecutor(context.funcs, context.config, context.resources)


class InlineExecutor(MachineValues, Capabilities):
    """Runs each task synchronously inside ``submit``."""

    name = "inline"
    workers = 1
    in_driver = True

    def __init__(
        self,
        funcs: Mapping[str, Callable[..., Any]],
        config: StoreConfig,
        resources: Mapping[str, Callable[[], Any]] | None = None,
    ) -> None:
        super().__init__(config)
        self._funcs = funcs
        self._config = config
        self._resources = Resources(resources or {})
        self._outcomes: list[Event] = []

    def free_slots(self) -> int:
        return 0 if self._outcomes else 1

    def submit(self, spec: TaskSpec) -> int:
        func = self._funcs[spec.key.stage]
        pid = os.getpid()

        def emit(stream: str, level: str, message: str) -> None:
            self._outcomes.append(TaskLog(spec.key, spec.attempt, pid, stream, level, message))

        with capture.captured(emit):
            outcome = execute(spec, func, self._config, self._resources)
        self._outcomes.append(outcome)
        return pid

    def chain(self, spec: TaskSpec) -> bool:
        return False  # every task starts inside ``submit``: nothing is ever queued

    def wait(self, timeout: float | None, wake: int | None = None) -> list[Event]:
        outcomes, self._outcomes = self._outcomes, []
        if not outcomes and timeout:
            time.sleep(timeout)  # only a retry delay can leave the runner waiting here
        return outcomes

    def shutdown(self, *, cancel: bool = False) -> None:
        self._outcomes.clear()
        self._resources.close()

    def kill_all(self) -> None:
        self._outcomes.clear()
