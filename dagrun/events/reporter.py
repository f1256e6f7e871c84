"""What a run tells: every task event is built here, once, from the records that travel.

The loop says what happened (a task started, finished, failed, will be
retried, was skipped, wrote a line); ``Reporter`` turns it into the event of
SPEC section 5 and keeps the per-task metrics records the ``RunResult``
carries. ``task_failed`` in particular is written from this one place,
whichever way a task failed.
"""

from __future__ import annotations

from typing import Any

from ..executors.base import ErrorInfo, TaskKey, TaskLog, TaskOutcome, TaskSpec
from .log import EventLog
from .rows import StageRows


class Reporter:
    """Writes a run's task events and collects its metrics."""

    def __init__(self, events: EventLog) -> None:
        self.events = events
        self.metrics: list[dict[str, Any]] = []
        self.skipped: dict[str, str] = {}
        self.batches: dict[str, int] = {}  # mapped stage -> how many batches it runs as
        self.rows = StageRows()  # the summary's stage rows, kept as the events are written

    def started(
        self, spec: TaskSpec, worker: int | str, host: str | None, priority: float,
        estimate: float | None = None,
    ) -> None:
        stage, batch = spec.key
        events = self.events
        record: dict[str, Any] = {  # one dict: a task starts once per task
            "event": "task_started",
            "timestamp": events.stamp(),
            "level": "info",
            "run_id": events.run_id,
            "stage": stage,
            "attempt": spec.attempt,
        }
        if type(worker) is int:
            record["worker_pid"] = worker
        else:
            record["worker"], record["host"] = worker, host
        record["priority"] = round(priority, 6)
        record["estimate_s"] = None if estimate is None else round(estimate, 6)
        if batch is not None:
            record.update(self._batch(spec.key, spec.items))
        events.put(record)
        self.rows.started(stage, batch, spec.attempt, events.last_time)

    def finished(self, outcome: TaskOutcome) -> None:
        m = outcome.metrics  # its times come rounded to the microsecond
        stage, batch = outcome.key
        # The event is the metrics record the RunResult keeps: one dict per task.
        events = self.events
        record: dict[str, Any] = {
            "event": "task_finished",
            "timestamp": events.stamp(),
            "level": "info",
            "run_id": events.run_id,
            "stage": stage,
            "attempt": outcome.attempt,
            "worker_pid": m.worker_pid,
            "wall_s": m.wall_s,
            "cpu_s": m.cpu_s,
            "max_rss_bytes": m.max_rss_bytes,
            "rss_growth_bytes": m.rss_growth_bytes,
            "queue_wait_s": m.queue_wait_s,
            "input_bytes": m.input_bytes,
            "output_bytes": m.output_bytes,
            "transport": m.transport,
            "cached": False,
        }
        if batch is not None:
            record.update(self._batch(outcome.key))
        if m.worker is not None:
            record["worker"], record["host"] = m.worker, m.host
        if m.stored is not None:
            record["stored"] = m.stored
        if batch is not None:
            record["items"] = m.items
        self.metrics.append(record)
        events.put(record)
        self.rows.finished(stage, batch, outcome.attempt, events.last_time, m.wall_s, m.cpu_s,
                           m.max_rss_bytes, m.input_bytes, m.output_bytes, m.transport, False)

    def failed(self, key: TaskKey, attempt: int, info: ErrorInfo, *, final: bool) -> None:
        self.events.emit(
            "task_failed",
            level="error" if final else "warning",
            stage=key.stage,
            attempt=attempt,
            error_type=info.error_type,
            error=info.message,
            traceback=info.traceback,
            **_batch_fields(key),
        )
        self.rows.failed(key.stage, key.batch, attempt, self.events.last_time, final=final)

    def retrying(self, key: TaskKey, attempt: int, delay: float, *, alone: bool = False) -> None:
        extra = {"alone": True, "reason": "out_of_memory"} if alone else {}
        self.events.emit(
            "task_retrying",
            stage=key.stage,
            attempt=attempt,
            delay_s=round(delay, 6),
            **extra,
            **_batch_fields(key),
        )
        self.rows.seen(key.stage, attempt)

    def skip(self, stage: str, reason: str) -> None:
        if stage not in self.skipped:
            self.skipped[stage] = reason
            self.events.emit("task_skipped", stage=stage, reason=reason)
            self.rows.skipped(stage, None, reason)

    def log(self, line: TaskLog) -> None:
        self.events.emit(
            "task_log",
            level=line.level,
            stage=line.key.stage,
            attempt=line.attempt,
            worker=line.worker,
            stream=line.stream,
            message=line.message,
            **_batch_fields(line.key),
        )

    def _batch(self, key: TaskKey, items: tuple[int, int] | None = None) -> dict[str, Any]:
        """A batch's number, the batch count of its stage and (when known) its element count."""
        if key.batch is None:
            return {}
        fields: dict[str, Any] = {"batch": key.batch, "batches": self.batches.get(key.stage)}
        if items is not None:
            fields["items"] = items[1] - items[0]
        return fields

    def notice(self, event: str, stage: str, **fields: Any) -> None:
        """A warning about one stage (a store fallback, a damaged cache entry)."""
        self.events.emit(event, level="warning", stage=stage, **fields)


def _batch_fields(key: TaskKey) -> dict[str, Any]:
    return {} if key.batch is None else {"batch": key.batch}
