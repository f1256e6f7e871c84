"""The local executor: a supervised pool of worker processes on this machine.

    runner ── submit(spec) ──▶ placement.place ──▶ _Worker.conn ──▶ child.worker_main
                                                                      │ execute(spec)
    runner ◀── wait(): Started · TaskLog · TaskOutcome ◀── conn ◀─────┤ records, outcome
                       ▲      ▲                                        │
                       │      └── fd 1 / fd 2 pipes (raw output) ◀─────┘
                       └── process sentinels: a worker that dies is noticed at once

Modules: ``pool`` (``LocalExecutor``: the pool's lifecycle and the one
``poll`` loop; the one owner of the pool's state, whose parts it builds and
calls), ``state`` (``PoolState``, the record the parts share, and ``Watch``,
the fds the pool polls), ``inbound`` (what workers send, in order),
``deaths`` (a worker gone or past its deadline, and its tasks),
``placement`` (where a task goes: *keep*, *near*, *chain* as pure
functions), ``child`` (the
worker process's main loop), ``wire`` (a task and an outcome as messages),
``framing`` (messages on a pipe), ``handle`` (one worker as the driver sees
it), ``exits`` (how a worker ended, in words; reaping). What a stage prints or logs is
``capture``'s business (one level up, shared with the inline executor).

State, per worker: its pipe ``conn`` (tasks in; records, outcomes out), the
read ends of its fd 1 / fd 2 pipes, its ``queue`` (the running task first,
then a prefetched or chained one), a ``deadline`` (the task's timeout, or
the start-up bound before it said ``READY``), its peak memory sample and
its last lines of output (``tail``). Pool-wide, in ``PoolState``: ``idle``,
``busy``, ``writers`` (large segment -> pid, pruned on release and on
death), ``events`` (in order), ``limits``; the pool's own: ``_typical``
(wall time per stage function) and the tasks posted but not written yet.

Each worker runs one task at a time, so the executor always knows which
task a dead worker was running. Behind tasks whose functions are known to be
short, more tasks may be queued in the worker's pipe, while the typical
times of what it holds add up to a few ms (``short_task_s``, at most
``prefetch`` tasks); those submitted in one round go in one write, just
before the pool waits, and the outcomes waiting in a worker's pipe are all
handled in one wake. A task
``chain``ed behind the one a worker runs gets that result inside the worker
(or, if it failed, is answered ``SKIPPED``); if the worker dies, queued
tasks go elsewhere and chained ones are planned again by the runner.

Ordering: a task's lines (records on ``conn``; raw fd bytes, drained before
the outcome is handled) always come before its ``TaskOutcome``. When a
sentinel fires, everything the worker sent is read first (an outcome
written just before dying is an outcome, as in CPython's
``ProcessPoolExecutor``); only then is the running task failed, with how the
worker died (exit code or signal), its sampled peak memory, the out-of-memory
evidence (``oom``) and its last lines. Timeouts and the start-up bound are
deadlines of the same ``poll``: no timer thread. Messages are pickled
before anything is written, so a value that fails to pickle fails its task
and never leaves half a message in a pipe.

Start methods: workers start lazily and are replaced mid-run, so a fork
happens whenever one is needed. With ``start_method=None`` the pool forks
while the driver runs no other thread (cheapest) and uses ``forkserver``
otherwise, where forking a threaded process could copy a held lock; the
fork server preloads dagrun, numpy, pyarrow, structlog and the pipeline's
module (when importable by name). ``fork``, ``forkserver`` and ``spawn``
may always be asked for. Workers die with the driver (``PR_SET_PDEATHSIG``,
end-of-file on their pipe, and under forkserver a pidfd watch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...settings import default_start_method
from .exits import describe_exit
from .placement import held_by
from .pool import LocalExecutor

if TYPE_CHECKING:
    from ..base import ExecutorContext

__all__ = ["LocalExecutor", "create", "default_start_method", "describe_exit", "held_by"]


def create(context: ExecutorContext) -> LocalExecutor:
    """The ``local`` executor of a run: a pool of ``context.workers`` processes."""
    return LocalExecutor(
        context.funcs,
        context.config,
        workers=context.workers,
        start_method=context.start_method,
        sources=context.sources,
        max_tasks_per_worker=context.max_tasks_per_worker,
        resources=context.resources,
        numbers=context.settings,
    )
