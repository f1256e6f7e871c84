"""One event as a line for people: the one place an event becomes readable text.

Control characters (a stage's ``"\\r"`` progress, colour codes) are dropped, so
what the console shows is plain text wherever it is written.
"""

from __future__ import annotations

import re
from typing import Any

from ..units import format_bytes

_GLYPH = {
    "task_started": "▶",
    "task_finished": "✓",
    "task_failed": "✗",
    "task_retrying": "↻",
    "task_skipped": "·",
}
# Control characters other than newline and tab (a stage's "\r" progress, colour codes) are
# dropped from what the console shows, so a log file stays plain text.
_ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
_CONTROL = dict.fromkeys(c for c in range(32) if c not in (9, 10)) | {127: None}


def clean(text: Any) -> str:
    """``text`` as a terminal would leave it, without control characters but newline and tab.

    Colour codes go; of a line rewritten with carriage returns (a progress
    counter) the last version stays.
    """
    text = str(text)
    if text.isprintable():
        return text
    text = _ANSI.sub("", text)
    if "\r" in text:
        text = "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))
    return text.translate(_CONTROL)


def render_console(event: dict[str, Any]) -> str:
    """One short human-readable line (more for a failure) for the console."""
    name = event.get("event", "")
    clock = str(event.get("timestamp", ""))[11:19]
    stage = clean(event.get("stage", ""))
    if event.get("batch") is not None:
        stage = f"{stage}[{event['batch']}]"
    glyph = _GLYPH.get(name)
    if name == "task_log":
        level = str(event.get("level") or "info")
        tag = f"{level.upper()} " if level not in ("info", "debug") else ""
        lines = clean(event.get("message", "")).rstrip("\n").splitlines() or [""]
        return "".join(f"  [{stage}] {tag}{line}\n" for line in lines)
    if name == "task_started":
        where = event.get("worker_pid")
        where = f"pid {where}" if where is not None else clean(event.get("worker", "?"))
        return f"{clock} {glyph} {stage} started (attempt {event.get('attempt')}, {where})\n"
    if name == "task_finished":
        size = format_bytes(event.get("output_bytes") or 0)
        cached = " (cached)" if event.get("cached") else ""
        return (
            f"{clock} {glyph} {stage} finished in {event.get('wall_s', 0):.3f} s{cached} "
            f"(cpu {event.get('cpu_s', 0):.3f} s, peak "
            f"{format_bytes(event.get('max_rss_bytes') or 0)}, "
            f"out {size} via {event.get('transport') or '-'})\n"
        )
    if name == "task_failed":
        head = f"{clock} {glyph} {stage} failed (attempt {event.get('attempt')}): "
        head += f"{clean(event.get('error_type'))}: {clean(event.get('error'))}\n"
        if event.get("level") == "warning":  # retried: the traceback is shown if it fails for good
            return head
        tb = clean(event.get("traceback") or "")
        return head + "".join(f"    {line}\n" for line in tb.rstrip().splitlines())
    if name == "task_retrying":
        return (f"{clock} {glyph} {stage} retrying (attempt {event.get('attempt')}) in "
                f"{event.get('delay_s', 0):.2f} s\n")
    if name == "task_skipped":
        return f"{clock} {glyph} {stage} skipped ({event.get('reason')})\n"
    if name == "run_started":
        return (
            f"{clock} run {event['run_id']}: {event.get('pipeline')}, {event.get('stages')} "
            f"stages, {event.get('workers')} workers ({event.get('executor')})\n"
        )
    if name == "run_finished":
        return (
            f"{clock} run {event.get('status')} in {event.get('wall_s', 0):.2f} s: "
            f"{event.get('succeeded')} succeeded, {event.get('failed')} failed, "
            f"{event.get('skipped')} skipped, {event.get('cached', 0)} cached\n"
        )
    skip = {"event", "timestamp", "level", "run_id"}
    extra = " ".join(f"{k}={clean(v)}" for k, v in event.items() if k not in skip)
    return f"{clock} {name} {extra}\n"
