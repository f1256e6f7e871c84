"""How a worker process ended, in words; stopping and reaping workers.

``describe_exit`` is a pure function of the evidence (exit code or signal,
peak memory, the cgroup's OOM kills, the memory limit, the worker's last
lines of output), so every wording is tested without killing anything;
``oom_likely`` is the one place that evidence is judged to be the
out-of-memory killer's; the pool carries that verdict as ``ErrorInfo.cause``
(the planner retries on it, never on the words).
Reaping goes through ``multiprocessing``'s public ``Process`` API only: the
peak memory of a dead worker is the driver's last sample of it (a lower
bound), never a ``wait4`` behind multiprocessing's back.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from collections.abc import Sequence

from ...settings import tuning
from ...units import format_bytes
from ..base import ErrorInfo

# A worker asked to stop gets this long to exit before it is killed: enough to
# run its resources' teardown, short enough that Ctrl-C still feels immediate.


def describe_exit(
    pid: int,
    exitcode: int | None,
    *,
    peak_rss: int | None = None,
    peak_exact: bool = True,
    oom_kills: int = 0,
    memory_limit: int | None = None,
    started: bool = True,
    output: Sequence[str] = (),
) -> str:
    """How a worker process ended, in words, with the evidence about memory.

    "likely killed by the out-of-memory killer" is said only for a SIGKILL
    that dagrun did not send (dagrun's own kills are timeouts and reported as
    such) and only when the memory cgroup counted new OOM kills, or the
    worker's peak memory was at least half the memory limit. ``output`` (the
    last lines the worker wrote) ends the text, one indented line each.
    """
    when = "while running it" if started else "while starting up, before it could run it"
    if exitcode is None:
        text = f"its worker process (pid {pid}) stopped responding {when}"
    elif exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        text = f"its worker process (pid {pid}) was killed by {name} {when}"
        if -exitcode == signal.SIGSEGV:
            text += " (a crash in native code)"
    else:
        text = f"its worker process (pid {pid}) exited with code {exitcode} {when}"
    if peak_rss:
        text += f"; peak memory {'' if peak_exact else 'at least '}{format_bytes(peak_rss)}"
    if exitcode == -signal.SIGKILL:
        if not oom_likely(exitcode, peak_rss=peak_rss, oom_kills=oom_kills,
                          memory_limit=memory_limit):
            text += "; the signal did not come from dagrun"
        elif oom_kills:
            text += (
                "; likely killed by the out-of-memory killer (the memory cgroup counted "
                f"{oom_kills} new OOM kill{'s' if oom_kills > 1 else ''})"
            )
        else:
            text += (
                "; likely killed by the out-of-memory killer (it used at least half of the "
                f"{format_bytes(memory_limit or 0)} memory limit)"
            )
    return text + with_output(output)


def oom_likely(
    exitcode: int | None, *, peak_rss: int | None, oom_kills: int, memory_limit: int | None
) -> bool:
    """Whether a worker's end was likely the out-of-memory killer's.

    Only a SIGKILL (dagrun's own kills are timeouts, reported as such), and only
    when the memory cgroup counted new OOM kills or the worker's peak memory
    was at least half the memory limit.
    """
    if exitcode != -signal.SIGKILL:
        return False
    return bool(oom_kills) or bool(peak_rss and memory_limit and peak_rss >= memory_limit // 2)


def describe_startup_hang(pid: int, grace_s: float, output: Sequence[str] = ()) -> str:
    """A worker that never said it was ready (a pipeline module whose import hangs)."""
    return (
        f"its worker process (pid {pid}) did not finish starting up within {grace_s:g} s "
        f"(importing the pipeline's modules) and was stopped; check for work done at "
        f"import time{with_output(output)}"
    )


def timeout_info(pid: int, timeout: float, output: Sequence[str] = ()) -> ErrorInfo:
    """A task stopped at its timeout."""
    message = f"timed out after {timeout:g} s; its worker (pid {pid}) was stopped"
    return ErrorInfo("timeout", "StageTimeout", message + with_output(output))


def lost_input_info(pid: int) -> ErrorInfo:
    """A task whose input was kept in a worker that has exited."""
    message = (
        f"its input was kept in worker process {pid}, which has exited; run again, or set "
        f"DAGRUN_HOLD_MIN=off so large results always go to shared memory"
    )
    return ErrorInfo("crashed", "WorkerCrashed", message)


def with_output(output: Sequence[str]) -> str:
    """The worker's last lines, as the end of an error message."""
    if not output:
        return ""
    return "; its last output:\n" + "\n".join(f"  {line}" for line in output)


def reap(process: mp.process.BaseProcess) -> int | None:
    """Exit code of a worker whose sentinel fired (None: it closed its pipes but lived on)."""
    process.join(tuning().term_grace_s)
    if process.is_alive():
        terminate(process)
        return None
    return process.exitcode


def terminate(process: mp.process.BaseProcess) -> None:
    """SIGTERM, then SIGKILL after ``term_grace_s``; returns once the process is reaped."""
    if not process.is_alive():
        return
    process.terminate()
    process.join(tuning().term_grace_s)
    if process.is_alive():
        process.kill()
        process.join()
