"""``dagrun schedule`` and ``dagrun backfill``: parse, check, hand over to ``dagrun.jobs``.

Both take the options of ``dagrun run`` (``options.takes_run_options``;
``backfill``'s ``--force`` is its own flag) and check them, the
cron expression, the zone, the dates and the pipeline itself before anything
runs: a mistake is exit 2 with one paragraph saying what to write instead.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import DagrunError, UsageError
from .options import (
    PipelineArg,
    RunArgs,
    exit_code_for,
    fail,
    parse_date_arg,
    run_args,
    takes_run_options,
)

CATCH_UP = ("none", "last", "all")


def register(app: typer.Typer) -> None:
    """Add ``schedule`` and ``backfill`` to the ``dagrun`` command."""
    app.command("schedule")(schedule_command)
    app.command("backfill")(backfill_command)


@takes_run_options()
def schedule_command(
    pipeline: PipelineArg,
    cron: Annotated[
        str, typer.Option("--cron", help="Cron expression, e.g. '30 2 * * *' (02:30 daily).")
    ],
    tz: Annotated[str | None, typer.Option(help="Zone the cron fields are read in [local].")]
    = None,
    catch_up: Annotated[
        str, typer.Option(help="Missed ticks: none (skip), last (run the newest) or all.")
    ] = "last",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the next fire times and exit.")
    ] = False,
    count: Annotated[int, typer.Option(help="How many fire times --dry-run prints.")] = 5,
    graceful: Annotated[
        bool, typer.Option("--graceful", help="On SIGTERM/Ctrl-C let a run finish, then exit.")
    ] = False,
    on_failure: Annotated[
        str | None, typer.Option(help="Shell command run after a failed or missed run.")
    ] = None,
    keep_runs: Annotated[
        int | None, typer.Option(help="After each run keep only this many runs' history.")
    ] = None,
    **options: Any,
) -> None:
    """Run a pipeline on a cron schedule in the foreground; each run gets its tick as run_date."""
    from ..jobs.cron import next_fires, parse_cron
    from ..jobs.loop import Schedule, ScheduleLoop

    try:
        if catch_up not in CATCH_UP:
            msg = f"--catch-up {catch_up!r} is not a policy; choose none, last or all"
            raise UsageError(msg)
        for name, value, low in (("--keep-runs", keep_runs, 1), ("--count", count, 1)):
            if value is not None and value < low:
                msg = f"{name} must be at least {low}, got {value}"
                raise UsageError(msg)
        schedule = parse_cron(cron, tz)
        args = run_args(pipeline, **options)
        name, key, state = _check_pipeline(args)
        if dry_run:
            for instant in next_fires(schedule, datetime.now(UTC), count):
                typer.echo(schedule.local(instant).isoformat())
            return
        # The child runs in the scheduler's state directory, wherever its cwd.
        args = replace(args, options={**args.options, "state_dir": state.resolve()})
        code = ScheduleLoop(Schedule(
            args=args, cron=schedule, policy=catch_up, state_dir=state, name=name, key=key,
            json_mode=args.options["log_format"] == "json", graceful=graceful,
            on_failure=on_failure, keep_runs=keep_runs,
        )).run()
    except DagrunError as exc:
        raise fail(exc) from None
    raise typer.Exit(code)


@takes_run_options(replaces=("force",))
def backfill_command(
    pipeline: PipelineArg,
    start: Annotated[str, typer.Option("--from", help="First logical date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last logical date (included).")],
    force: Annotated[
        bool, typer.Option("--force", help="Also re-run dates that already succeeded.")
    ] = False,
    **options: Any,
) -> None:
    """Run the pipeline once per date from --from to --to, skipping dates that succeeded."""
    from ..control.runner import run
    from ..jobs.backfill import DayOutcome, backfill, dates

    try:
        first, last = _day(start, "--from"), _day(end, "--to")
        days = dates(first, last)
        args = run_args(pipeline, **options)
        name, _, state = _check_pipeline(args)
        args = replace(args, options={**args.options, "state_dir": state})

        to_stderr = args.options["log_format"] == "json"  # stdout carries the JSON events

        def report(outcome: DayOutcome) -> None:
            note = f" ({outcome.note})" if outcome.note else ""
            typer.echo(f"backfill {outcome.day.isoformat()}: {outcome.status} "
                       f"run {outcome.run_id or '-'}{note}", err=to_stderr)

        outcomes = backfill(
            lambda day: run(pipeline, **args.kwargs(day)), days, state_dir=state, pipeline=name,
            force=force, report=report,
        )
    except DagrunError as exc:
        raise fail(exc) from None
    bad = [o for o in outcomes if o.status not in ("succeeded", "skipped")]
    ran = sum(o.status != "skipped" for o in outcomes)
    typer.echo(f"backfill: {len(days)} dates, {ran} run, {len(outcomes) - ran} skipped, "
               f"{len(bad)} not succeeded" + (
                   f": {', '.join(o.day.isoformat() for o in bad)}" if bad else ""), err=True)
    raise typer.Exit(exit_code_for("failed") if bad else 0)


def _day(text: str, option: str) -> date:
    value = parse_date_arg(text, option)
    return value.date() if isinstance(value, datetime) else value


def _check_pipeline(args: RunArgs) -> tuple[str, str, Path]:
    """Load and validate the pipeline and its options once: (readable name, key, state dir)."""
    from ..graph.build import build_graph
    from ..pipeline.loader import load
    from ..settings import RunOptions

    settings = RunOptions.build(**args.options)
    pipe = load(args.pipeline)
    build_graph(pipe, args.params, list(args.targets) or None)
    source = pipe.source
    key = (source.path or source.module) if source is not None else pipe.name
    return pipe.name, str(key), settings.state_dir

