"""Structured events: one structlog logger per run, two sinks.

Every event is a dict with ``event``, ``timestamp`` (ISO 8601, UTC),
``level`` and ``run_id`` plus the fields of SPEC section 5. The processor
chain is built once per run (``structlog.wrap_logger``, so an application's
own structlog configuration is left alone) and ends in ``_Sinks``, which
writes each event as a JSON line to ``events.jsonl`` (flushed whenever the
runner waits, so the file can be followed while the run goes on) and to the console, either
as the same JSON or as a short human-readable line, with a live status line
under the events when the console is a terminal.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any

import structlog

from .executors.oom import format_bytes

_GLYPH = {
    "task_started": "▶",
    "task_finished": "✓",
    "task_failed": "✗",
    "task_retrying": "↻",
    "task_skipped": "·",
}


class _Progress:
    """The live status line shown under the events on a terminal."""

    def __init__(self) -> None:
        self.total = self.done = self.failed = self.skipped = self.running = 0
        self.started = time.monotonic()

    def update(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        if name == "run_started":
            self.total = event.get("stages", 0)
            self.started = time.monotonic()
        elif name == "task_started":
            self.running += 1
        elif name in ("task_finished", "task_failed"):
            self.running = max(0, self.running - 1)
            if name == "task_failed" and event.get("level") == "error":
                self.failed += 1
        elif name == "task_skipped":
            self.skipped += 1

    def line(self, done_stages: int) -> str:
        elapsed = time.monotonic() - self.started
        return (
            f"[{done_stages}/{self.total} stages done · {self.running} running · "
            f"{self.failed} failed · {self.skipped} skipped · {elapsed:.1f} s]"
        )


class _Sinks:
    """The logger at the end of the chain: receives finished event dicts."""

    def __init__(self, file: IO[str], console: IO[str] | None, json_console: bool) -> None:
        self.file = file
        self.console = console
        self.json_console = json_console
        self.progress = _Progress() if _is_terminal(console) and not json_console else None
        self.finished_stages: set[str] = set()

    def _write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, default=str, separators=(",", ":"))
        self.file.write(line + "\n")
        if self.console is None:
            return
        if self.progress is None:
            self.console.write(line + "\n" if self.json_console else render_console(event))
            return
        # On a terminal: the event above, the status line redrawn below it.
        self.progress.update(event)
        if event.get("event") == "task_finished" and event.get("batch") is None:
            self.finished_stages.add(event["stage"])
        status = "" if event.get("event") == "run_finished" else self.progress.line(
            len(self.finished_stages)
        )
        self.console.write(f"\r\x1b[K{render_console(event)}{status}")

    info = warning = error = debug = critical = msg = _write

    def flush(self) -> None:
        self.file.flush()
        if self.console is not None:
            self.console.flush()


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def _as_args(_: Any, __: str, event: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (event,), {}


class EventLog:
    """Writes a run's events; ``emit`` is the only entry point."""

    def __init__(
        self,
        run_id: str,
        path: Path,
        *,
        log_format: str = "console",
        console: IO[str] | None = None,
    ) -> None:
        self.path = path
        # Block-buffered, flushed by ``flush`` whenever the runner is about to
        # wait: the file is current whenever nothing is happening, and a burst of
        # events costs one write instead of one per line.
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        stream = console if console is not None else sys.stdout
        sinks = _Sinks(self._file, None if log_format == "none" else stream, log_format == "json")
        self._sinks = sinks
        self._log = structlog.wrap_logger(
            sinks,
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
                _as_args,
            ],
            wrapper_class=structlog.BoundLogger,
            context_class=dict,
        ).bind(run_id=run_id)

    def emit(self, event: str, level: str = "info", **fields: Any) -> None:
        """Write one event now."""
        getattr(self._log, level)(event, **fields)

    def flush(self) -> None:
        """Push every event written so far to the file and the console."""
        self._sinks.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()


def render_console(event: dict[str, Any]) -> str:
    """One short human-readable line (more for a failure) for the console."""
    name = event.get("event", "")
    clock = str(event.get("timestamp", ""))[11:19]
    stage = event.get("stage", "")
    if "batch" in event and event["batch"] is not None:
        stage = f"{stage}[{event['batch']}]"
    glyph = _GLYPH.get(name)
    if name == "task_started":
        attempt, pid = event["attempt"], event["worker_pid"]
        return f"{clock} {glyph} {stage} started (attempt {attempt}, pid {pid})\n"
    if name == "task_finished":
        size = format_bytes(event.get("output_bytes", 0))
        return (
            f"{clock} {glyph} {stage} finished in {event['wall_s']:.3f} s "
            f"(cpu {event['cpu_s']:.3f} s, peak {format_bytes(event['max_rss_bytes'])}, "
            f"out {size} via {event.get('transport') or '-'})\n"
        )
    if name == "task_failed":
        head = f"{clock} {glyph} {stage} failed (attempt {event['attempt']}): "
        head += f"{event['error_type']}: {event['error']}\n"
        tb = event.get("traceback") or ""
        return head + "".join(f"    {line}\n" for line in tb.rstrip().splitlines())
    if name == "task_retrying":
        return f"{clock} {glyph} {stage} retrying in {event['delay_s']:.2f} s\n"
    if name == "task_skipped":
        return f"{clock} {glyph} {stage} skipped ({event['reason']})\n"
    if name == "run_started":
        return (
            f"{clock} run {event['run_id']}: {event['pipeline']}, {event['stages']} stages, "
            f"{event['workers']} workers ({event['executor']})\n"
        )
    if name == "run_finished":
        return (
            f"{clock} run {event['status']} in {event['wall_s']:.2f} s: "
            f"{event['succeeded']} succeeded, {event['failed']} failed, "
            f"{event['skipped']} skipped\n"
        )
    extra = " ".join(f"{k}={v}" for k, v in event.items() if k not in {"event", "timestamp"})
    return f"{clock} {name} {extra}\n"

