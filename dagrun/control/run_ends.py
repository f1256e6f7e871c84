"""The two ends of a run: what it says when it starts, and what it hands back when it stops.

    start: bind the logical date ─▶ RunEnds.start: run_started (DAG edges, parameters with
           secrets masked)
    end:   RunEnds.finish: read the targets back ─▶ free everything else ─▶ run_summary
           ─▶ run_finished ─▶ RunResult (its closer frees the targets' memory), or re-raise
           the interrupt

``RunEnds`` is the run's end with an explicit interface: the loop hands it
the ledger, executor, cache, errors and tally it closes with, and it returns
the result; it reads and writes no field of the loop's.
"""

from __future__ import annotations

import inspect
import os
import pickle
import time
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..errors import Interrupted, StageFailed, StageTimeout, WorkerCrashed
from ..events.log import EventLog
from ..events.reporter import Reporter
from ..executors.base import ErrorInfo, Executor, TaskKey, output_handles
from ..executors.failure import error_info
from ..graph.build import Graph
from ..settings import RunOptions
from .incremental import RunCache
from .ledger import Ledger
from .result import RunResult
from .signals import deferred

RUN_DATE = "run_date"


def bind_run_date(graph: Graph, when: date | datetime | None) -> date | datetime | None:
    """Give every stage with a ``run_date`` parameter the run's logical date, and return it.

    None when no date was given and no stage takes one.

    The value follows the parameter's annotation: ``datetime.date`` (the
    default), ``datetime.datetime`` or ``str`` (ISO text). Without a date
    given, it is now (today).
    """
    selected = set(graph.selected)
    takers = [
        node for name, node in graph.nodes.items()
        if name in selected and RUN_DATE in node.params and RUN_DATE not in node.stage.bound
    ]
    if not takers:
        return when
    moment = when if when is not None else datetime.now().astimezone()
    for node in takers:
        annotation = _annotation(node.stage.func, RUN_DATE)
        node.params[RUN_DATE] = _as(annotation, moment)
    return moment


def _annotation(func: Any, name: str) -> Any:
    try:
        return inspect.signature(func, eval_str=True).parameters[name].annotation
    except (NameError, TypeError, ValueError, KeyError):
        return inspect.Parameter.empty


def _as(annotation: Any, moment: date | datetime) -> Any:
    if annotation is datetime or annotation == "datetime":
        if isinstance(moment, datetime):
            return moment
        return datetime(moment.year, moment.month, moment.day).astimezone()
    if annotation is str or annotation == "str":
        return moment.isoformat()
    return moment.date() if isinstance(moment, datetime) else moment


class RunEnds:
    """A run's two ends; it keeps what the end needs from the start (its DAG, its time).

    Everything else it is given: the loop's ledger, executor, cache, errors and
    tally are arguments of ``finish``, and it writes no other object's fields.
    """

    def __init__(
        self, graph: Graph, options: RunOptions, run_id: str, run_dir: Path, events: EventLog,
        report: Reporter,
    ) -> None:
        self.graph, self.options, self.run_id, self.run_dir = graph, options, run_id, run_dir
        self.events, self.report = events, report
        self.edges: list[tuple[str, str]] = []  # the selected DAG's, as ``run_started`` says
        self.started_time = time.time()  # when ``run_started`` was stamped

    def start(self, run_date: date | datetime | None, start_method: str | None) -> None:
        """``run_started``, then a ``not_selected`` skip for each stage left out.

        ``start_method`` is the executor's, where it starts worker processes itself.
        """
        graph, options = self.graph, self.options
        selected = set(graph.selected)
        try:
            from ..pipeline.params import mask_params

            params = mask_params(graph)
        except ImportError:
            params = {}
        self.edges = [(u, v) for u, v in graph.edges() if u in selected]
        self.events.emit(
            "run_started",
            pipeline=graph.pipeline.name,
            stages=len(graph.selected),
            workers=options.workers,
            executor=options.executor,
            start_method=start_method,
            targets=list(graph.targets),
            edges=[list(edge) for edge in self.edges],
            params=params,
            run_date=run_date.isoformat() if run_date is not None else None,
            driver_pid=os.getpid(),
        )
        self.started_time = self.events.last_time
        for name in graph.order:
            if name not in selected:
                self.report.skip(name, "not_selected")

    def finish(
        self, status: str, stop: BaseException | None, wall: float, *, ledger: Ledger,
        executor: Executor, cache: RunCache | None, errors: Mapping[str, ErrorInfo],
        tally: tuple[int, int],
    ) -> RunResult:
        """Read the targets back, free the rest, write the closing events and build the result.

        ``errors`` are the stages' failures so far; ``tally`` the stages done and failed.
        """
        report, events = self.report, self.events
        values: dict[str, Any] = {}
        opened: list[Any] = []
        if stop is None:
            values, opened, unread = self._read_targets(ledger, executor)
            errors = {**errors, **unread}
            if errors:
                status = "failed"  # a stage failed, or a target's result could not be read back
        with deferred():  # a late signal must not cut the freeing of shared memory in two
            ledger.release_all(keep=values)
        from . import estimates

        estimates.record(self.run_dir, self.graph.pipeline.name, report.metrics)
        if cache is not None:
            cache.close()
        self._summary()
        done, failed = tally
        # Each stage counted once: one taken from the cache is done, but not computed.
        cached = sum(1 for reason in report.skipped.values() if reason == "cached")
        events.emit(
            "run_finished",
            level="info" if status == "succeeded" else "error",
            status=status,
            wall_s=round(wall, 6),
            succeeded=done - cached,
            failed=failed,
            skipped=len(report.skipped) - cached,
            cached=cached,
        )
        events.close()
        if isinstance(stop, Interrupted):
            executor.close()
            raise stop
        return RunResult(
            run_id=self.run_id,
            status=status,
            run_dir=self.run_dir,
            wall_s=wall,
            targets=list(self.graph.targets),
            values=values,
            errors={s: stage_error(s, info) for s, info in errors.items()},
            metrics=report.metrics,
            skipped=dict(report.skipped),
            closer=_closer(opened, executor),
        )

    def _read_targets(
        self, ledger: Ledger, executor: Executor
    ) -> tuple[dict[str, Any], list[Any], dict[str, ErrorInfo]]:
        """The targets' values, what to close after use, and the targets that could not be read."""
        values: dict[str, Any] = {}
        opened: list[Any] = []
        unread: dict[str, ErrorInfo] = {}
        targets = self.graph.targets
        # One round trip for every requested output, where the values are elsewhere.
        executor.prefetch([r for name in targets if name in ledger
                           for r in output_handles(ledger[name])])
        for name in targets:
            if name not in ledger:
                continue
            try:
                values[name], parts = ledger.read(name)
            except Exception as exc:  # noqa: BLE001 - e.g. a result whose unpickling raises
                exc.add_note(f"while reading back the result of stage {name!r}")
                info = error_info(exc, name)
                self.report.failed(TaskKey(name), 1, info, final=True)
                unread[name] = info
                continue
            opened += parts
        return values, opened, unread

    def _summary(self) -> None:
        """``run_summary`` from the rows the reporter kept, from ``run_started`` to now."""
        from ..events.summary import summary_of

        wall = max(0.0, self.events.last_time - self.started_time)
        self.events.emit("run_summary", **summary_of(self.report.rows.result(), self.edges,
                                                     self.options.workers, wall))


def stage_error(stage: str, info: ErrorInfo) -> StageFailed:
    """The exception a ``RunResult`` holds for a failed stage, the user's own as its cause."""
    cls = {"crashed": WorkerCrashed, "timeout": StageTimeout}.get(info.kind, StageFailed)
    detail = info.message if info.kind != "raised" else f"{info.error_type}: {info.message}"
    error = cls(stage, detail)
    error.traceback = info.traceback  # type: ignore[attr-defined]
    if info.exception is not None:
        try:
            error.__cause__ = pickle.loads(info.exception)
        except Exception:  # noqa: BLE001 - the message and traceback text remain
            pass
    return error


def _closer(decoded: list[Any], executor: Executor) -> Any:
    def close() -> None:
        for item in decoded:
            item.close()
        executor.close()

    return close
