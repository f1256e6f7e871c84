"""The two ends of a run: what it says when it starts, and what it hands back when it stops.

    start: bind the logical date ─▶ run_started (DAG edges, parameters with secrets masked)
    end:   read the targets back ─▶ free everything else ─▶ run_summary ─▶ run_finished
           ─▶ RunResult (its closer frees the targets' memory), or re-raise the interrupt
"""

from __future__ import annotations

import inspect
import os
import pickle
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ..errors import Interrupted, StageFailed, StageTimeout, WorkerCrashed
from ..executors.base import ErrorInfo, output_handles
from ..graph.build import Graph
from .result import RunResult
from .scheduler import TaskKey
from .signals import deferred

if TYPE_CHECKING:
    from .runner import _Run

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


def emit_start(run: _Run) -> None:
    graph = run.graph
    selected = set(graph.selected)
    try:
        from ..pipeline.params import mask_params

        params = mask_params(graph)
    except ImportError:
        params = {}
    run.edges = [(u, v) for u, v in graph.edges() if u in selected]
    run.events.emit(
        "run_started",
        pipeline=graph.pipeline.name,
        stages=len(graph.selected),
        workers=run.options.workers,
        executor=run.options.executor,
        start_method=run.options.start_method if run.options.executor == "local" else None,
        targets=list(graph.targets),
        edges=[list(edge) for edge in run.edges],
        params=params,
        run_date=run.run_date.isoformat() if run.run_date is not None else None,
        driver_pid=os.getpid(),
    )
    run.started_time = run.events.last_time
    for name in graph.order:
        if name not in selected:
            run.report.skip(name, "not_selected")


def finish_result(run: _Run, status: str, stop: BaseException | None, wall: float) -> RunResult:
    """Read the targets back, free the rest, write the closing events and build the result."""
    plan, ledger, report = run.plan, run.ledger, run.report
    values: dict[str, Any] = {}
    opened: list[Any] = []
    if stop is None:
        prefetch = getattr(run.exe, "prefetch", None)
        if prefetch is not None:  # one round trip for every requested output
            prefetch([r for name in run.graph.targets if name in ledger
                      for r in output_handles(ledger[name])])
        for name in run.graph.targets:
            if name not in ledger:
                continue
            try:
                values[name], parts = ledger.read(name)
            except Exception as exc:  # noqa: BLE001 - e.g. a result whose unpickling raises
                from ..executors.worker import error_info

                exc.add_note(f"while reading back the result of stage {name!r}")
                info = error_info(exc, name)
                report.failed(TaskKey(name), 1, info, final=True)
                plan.errors[name] = info
                continue
            opened += parts
        if plan.errors:
            status = "failed"  # a stage failed, or a target's result could not be read back
    with deferred():  # a late signal must not cut the freeing of shared memory in two
        ledger.release_all(keep=values)
    from . import estimates

    estimates.record(run.run_dir, run.graph.pipeline.name, report.metrics)
    if plan.cache is not None:
        plan.cache.close()
    scheduler = plan.scheduler
    _summary(run)
    run.events.emit(
        "run_finished",
        level="info" if status == "succeeded" else "error",
        status=status,
        wall_s=round(wall, 6),
        succeeded=len(scheduler.done),
        failed=len(scheduler.failed),
        skipped=len(report.skipped),
    )
    run.events.close()
    if isinstance(stop, Interrupted):
        run.exe.close()
        raise stop
    return RunResult(
        run_id=run.run_id,
        status=status,
        run_dir=run.run_dir,
        wall_s=wall,
        targets=list(run.graph.targets),
        values=values,
        errors={s: stage_error(s, info) for s, info in plan.errors.items()},
        metrics=report.metrics,
        skipped=dict(report.skipped),
        closer=_closer(opened, run.exe),
    )


def _summary(run: _Run) -> None:
    """``run_summary`` from the rows the reporter kept, from ``run_started`` to now."""
    from ..events.summary import summary_of

    wall = max(0.0, run.events.last_time - run.started_time)
    run.events.emit("run_summary", **summary_of(run.report.rows.result(), run.edges,
                                                run.options.workers, wall))


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


def _closer(decoded: list[Any], executor: Any) -> Any:
    def close() -> None:
        for item in decoded:
            item.close()
        executor.close()

    return close
