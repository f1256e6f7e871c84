"""A run's per-stage summary rows, kept one task event at a time.

``StageRows`` is fed by the runner's ``Reporter`` as it writes each event,
and by ``summary.summarize`` from a run's event dicts read back, so the
logic exists once. ``seconds`` reads the timestamps events carry.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any


def seconds(timestamp: Any) -> float | None:
    """An event's ISO 8601 timestamp as seconds since the epoch (None if unreadable)."""
    text = str(timestamp)
    if len(text) == 27 and text[19] == "." and text[26] == "Z":  # as ``events`` writes them
        whole = _whole_seconds(text[:19])
        if whole is not None and text[20:26].isdigit():
            return whole + int(text[20:26]) / 1e6
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@functools.lru_cache(maxsize=64)
def _whole_seconds(text: str) -> float | None:
    """``YYYY-MM-DDTHH:MM:SS`` (UTC) as seconds since the epoch: parsed once per second."""
    try:
        return datetime.fromisoformat(text + "+00:00").timestamp()
    except ValueError:
        return None


class StageRows:
    """A run's per-stage rows, fed one task event at a time.

    ``summarize`` feeds it a run's event dicts; the runner's ``Reporter``
    feeds it as it writes each event, so a large run's summary is ready when
    the run ends instead of costing a pass over every event then. A stage's
    ``task_wall_s`` sums its attempts' spans (as ``task_spans`` measures them)
    and ``wall_s`` runs from the first span's start to the last one's end.
    """

    def __init__(self) -> None:
        self.rows: dict[Any, _Row] = {}
        self._begun: dict[tuple[Any, Any, Any], Any] = {}  # open attempt -> its start

    def started(self, stage: Any, batch: Any, attempt: Any, at: Any) -> None:
        """An attempt began at ``at`` (seconds since the epoch, or an event's timestamp)."""
        row = self._row(stage, attempt)
        self._begun[(stage, batch, attempt)] = at
        if row.status == "pending":
            row.status = "running"

    def finished(
        self, stage: Any, batch: Any, attempt: Any, end: float | None, wall_s: Any, cpu_s: Any,
        max_rss_bytes: Any, input_bytes: Any, output_bytes: Any, transport: Any, cached: Any,
    ) -> None:
        """An attempt ended at ``end`` with these metrics (as ``task_finished`` has them)."""
        row = self._row(stage, attempt)
        row.cpu_s += float(cpu_s or 0.0)
        peak = int(max_rss_bytes or 0)
        if peak > row.max_rss_bytes:
            row.max_rss_bytes = peak
        row.input_bytes += int(input_bytes or 0)
        row.output_bytes += int(output_bytes or 0)
        if transport:
            row.carried(str(transport))
        if cached:
            row.cached = True
        if batch is not None:
            row.batches += 1
        if row.status in ("pending", "running"):
            row.status = "succeeded"
        self._begun.pop((stage, batch, attempt), None)
        if end is not None:
            row.span(end - float(wall_s or 0.0), end)

    def failed(self, stage: Any, batch: Any, attempt: Any, end: float | None, *,
               final: bool) -> None:
        """An attempt failed at ``end`` (``final``: for good; else it is tried again)."""
        row = self._row(stage, attempt)
        if final:
            row.status = "failed"
        begun = self._begun.pop((stage, batch, attempt), None)
        if end is not None:
            at = seconds(begun) if isinstance(begun, str) else begun
            row.span(min(at, end) if at is not None else end, end)

    def skipped(self, stage: Any, attempt: Any, reason: Any) -> None:
        row = self._row(stage, attempt)
        row.status = "cached" if reason == "cached" else "skipped"
        row.cached = reason == "cached"
        row.reason = reason

    def seen(self, stage: Any, attempt: Any) -> None:
        """Any other task event (a retry announced): it counts its attempt."""
        self._row(stage, attempt)

    def result(self) -> dict[str, dict[str, Any]]:
        """The finished rows, by stage (stages not selected for the run left out)."""
        return {name: row.as_dict(str(name)) for name, row in self.rows.items()
                if row.reason != "not_selected"}

    def _row(self, stage: Any, attempt: Any) -> _Row:
        row = self.rows.get(stage)
        if row is None:
            row = self.rows[stage] = _Row()
        if attempt is not None and int(attempt) > row.attempts:
            row.attempts = int(attempt)
        return row


class _Row:
    """One stage's totals so far (slots, not a dict: a large run keeps one per stage)."""

    __slots__ = ("status", "cpu_s", "max_rss_bytes", "input_bytes", "output_bytes",
                 "transports", "cached", "attempts", "batches", "reason", "spent", "first",
                 "last")

    def __init__(self) -> None:
        self.status = "pending"
        self.cpu_s = 0.0
        self.max_rss_bytes = self.input_bytes = self.output_bytes = 0
        self.transports: str | set[str] | None = None  # a set once two batches differ
        self.cached = False
        self.attempts = self.batches = 0
        self.reason: Any = None
        self.spent = 0.0  # the attempts' spans, summed
        self.first: float | None = None  # the first span's start
        self.last = 0.0  # the last span's end

    def carried(self, transport: str) -> None:
        known = self.transports
        if known is None:
            self.transports = transport
        elif isinstance(known, set):
            known.add(transport)
        elif known != transport:
            self.transports = {known, transport}

    def span(self, start: float, end: float) -> None:
        if self.first is None:
            self.first, self.last = start, end
        else:
            self.first, self.last = min(self.first, start), max(self.last, end)
        self.spent += end - start

    def as_dict(self, stage: str) -> dict[str, Any]:
        known = self.transports
        transport = "+".join(sorted(known)) or None if isinstance(known, set) else known
        status = "cached" if self.cached and self.status == "succeeded" else self.status
        wall = self.last - self.first if self.first is not None else 0.0
        row = {
            "stage": stage, "status": status, "wall_s": round(wall, 6),
            "task_wall_s": round(self.spent, 6), "cpu_s": round(self.cpu_s, 6),
            "max_rss_bytes": self.max_rss_bytes, "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes, "transport": transport, "cached": self.cached,
            "attempts": self.attempts, "batches": self.batches or None,
        }
        if self.reason is not None:
            row["reason"] = self.reason
        return row
