"""The ``dagrun`` command: parse, call the library, map errors to exit codes.

Exit codes are mapped in one place, ``options.exit_code_for``:
0 success · 1 a stage failed · 2 invalid usage or pipeline (nothing ran) ·
3 another run holds the pipeline's lock · 124 the run passed --max-runtime ·
130 / 143 interrupted (SIGINT / SIGTERM). The options ``run``, ``schedule``
and ``backfill`` share are declared once in ``options``. Each module of
command groups adds its commands with ``register(app)``: this one ``run``,
``validate``, ``list``, ``graph``, ``clean`` and ``runs``; ``jobs`` schedule
and backfill; ``cache`` explain; ``report`` report. Heavy imports happen
inside the commands, so ``dagrun --help`` stays fast.
"""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import DagrunError, UsageError
from . import cache as cache_commands
from . import jobs as job_commands
from . import report as report_commands
from .cache import clean_cache
from .options import (
    CacheDirOpt,
    PipelineArg,
    StateDirOpt,
    exit_code_for,
    fail,
    parse_date_arg,
    parse_params,
    run_args,
    takes_run_options,
)

__all__ = ["app", "exit_code_for", "main"]


def register(app: typer.Typer) -> None:
    """Add ``run``, ``validate``, ``list``, ``graph``, ``clean`` and ``runs`` to ``app``."""
    app.command("run")(run_command)
    app.command("validate")(validate_command)
    app.command("list")(list_command)
    app.command("graph")(graph_command)
    app.command("clean")(clean_command)
    runs_app = typer.Typer(help="History of runs and their per-stage metrics.",
                           no_args_is_help=False)
    runs_app.callback(invoke_without_command=True)(runs_command)
    runs_app.command("show")(runs_show_command)
    app.add_typer(runs_app, name="runs")


class GraphFormat(StrEnum):
    text = "text"
    mermaid = "mermaid"
    dot = "dot"


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"dagrun {__version__}")
        raise typer.Exit(0)


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Run Python data pipelines as a DAG on every core."""


@takes_run_options()
def run_command(
    pipeline: PipelineArg,
    run_date: Annotated[
        str | None, typer.Option(help="The logical date: YYYY-MM-DD or ISO date and time.")
    ] = None,
    **options: Any,
) -> None:
    """Run a pipeline: every stage starts the moment its inputs are ready."""
    try:
        args = run_args(pipeline, **options)
        day = parse_date_arg(run_date, "--run-date") if run_date is not None else None
        from ..control.runner import run

        result = run(pipeline, **args.kwargs(day))
    except DagrunError as exc:
        raise fail(exc) from None
    with result:
        status = getattr(result, "status", "succeeded" if result.ok else "failed")
        if status == "succeeded":
            return
        if status == "timed_out":
            limit = args.options["max_runtime"]
            typer.echo(
                f"dagrun: run {result.run_id} passed --max-runtime {limit} and was "
                f"stopped; events are in {result.events_path}",
                err=True,
            )
        else:
            failed = ", ".join(repr(s) for s in result.errors)
            typer.echo(
                f"dagrun: run {result.run_id} failed: stage {failed} failed (the traceback is "
                f"above); events are in {result.events_path}",
                err=True,
            )
        raise typer.Exit(exit_code_for(status))


def validate_command(
    pipeline: PipelineArg,
    param: Annotated[list[str] | None, typer.Option("--param", "-p")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", "-t")] = None,
) -> None:
    """Check a pipeline without running anything."""
    graph = _graph(pipeline, param, target)
    typer.echo(f"{graph.pipeline.name}: valid, {len(graph.nodes)} stages")


def list_command(pipeline: PipelineArg) -> None:
    """Show each stage with its inputs, parameters and options."""
    graph = _graph(pipeline, None, None)
    for name in graph.order:
        node = graph.nodes[name]
        opts = node.stage.options
        typer.echo(name)
        typer.echo(f"  function:   {node.stage.func.__module__}.{node.stage.func.__qualname__}")
        inputs = ", ".join(f"{p} <- {u}" if p != u else p for p, u in node.inputs.items())
        typer.echo(f"  inputs:     {inputs or '-'}")
        secret = _secret_parameters(node.stage.func)
        params = ", ".join(f"{p}={'***' if p in secret else repr(v)}"
                           for p, v in node.params.items())
        typer.echo(f"  parameters: {params or '-'}")
        shown = {
            "map": opts.map,
            "concat": opts.concat or None,
            "retry_delay": opts.retry_delay or None,
            "batch_size": opts.batch_size,
            "retries": opts.retries or None,
            "timeout": opts.timeout,
            "cache": None if opts.cache else False,
            "tags": ",".join(opts.tags) or None,
            "cpus": opts.cpus if opts.cpus != 1 else None,
            "memory": opts.memory,
            "gpus": opts.gpus or None,
            "resources": dict(opts.resources) or None,
            "version": opts.version,
            "watch": ",".join(opts.watch) or None,
        }
        text = ", ".join(f"{k}={v}" for k, v in shown.items() if v is not None)
        typer.echo(f"  options:    {text or '-'}")


def _secret_parameters(func: object) -> set[str]:
    from ..pipeline.params import annotations_of, is_secret

    try:
        return {name for name, hint in annotations_of(func).items() if is_secret(hint)}
    except (TypeError, ValueError):
        return set()


def graph_command(
    pipeline: PipelineArg,
    format: Annotated[GraphFormat, typer.Option("--format", "-f")] = GraphFormat.text,
) -> None:
    """Print the pipeline's DAG as text, Mermaid or Graphviz dot."""
    from ..graph.render import render_graph

    typer.echo(render_graph(_graph(pipeline, None, None), format.value), nl=False)


def runs_command(
    ctx: typer.Context,
    state_dir: StateDirOpt = None,
    status: Annotated[
        str | None,
        typer.Option(help="Only runs with this status: succeeded, failed, interrupted, "
                          "timed_out, running, lost."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Only runs started on or after YYYY-MM-DD.")]
    = None,
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline.")] = None,
) -> None:
    """List past runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from ..events.history import STATUSES, list_runs

    try:
        if status is not None and status not in STATUSES:
            msg = f"--status {status!r} is unknown; choose one of: {', '.join(STATUSES)}"
            raise UsageError(msg)
        day = parse_date_arg(since, "--since") if since is not None else None
        if isinstance(day, datetime):
            day = day.date()
        typer.echo(list_runs(_state_dir(state_dir), status=status, since=day, pipeline=pipeline),
                   nl=False)
    except DagrunError as exc:
        raise fail(exc) from None


def runs_show_command(
    run_id: Annotated[str, typer.Argument(help="A run id, or a unique prefix of one.")],
    state_dir: StateDirOpt = None,
) -> None:
    """Show one run: parameters, run date, stages from the cache, per-stage metrics."""
    from ..events.history import show_run

    try:
        typer.echo(show_run(_state_dir(state_dir), run_id), nl=False)
    except DagrunError as exc:
        raise fail(exc) from None


def clean_command(
    state_dir: StateDirOpt = None,
    runs: Annotated[
        bool, typer.Option("--runs", help="Also delete run history (see --older-than).")
    ] = False,
    older_than: Annotated[
        str | None, typer.Option(help="With --runs / --cache: only older ones (30d, 12h).")
    ] = None,
    cache: Annotated[bool, typer.Option("--cache", help="Also clean the cache.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="With --cache: remove damaged entries.")
    ] = False,
    max_size: Annotated[
        str | None, typer.Option(help="With --cache: drop least recently used beyond (10G).")
    ] = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Remove orphaned shared memory (of runs whose driver is gone), spill files and, with
    --cache / --runs, cache entries / run history."""
    from ..settings import Environment
    from ..store import clean_orphans

    try:
        age = _age(older_than, runs or cache)
        state = _state_dir(state_dir)
        removed = clean_orphans(state, Environment.read().shm_dir)
        if cache:
            removed += clean_cache(state, cache_dir, verify=verify, older_than=age,
                                   max_size=max_size)
        if runs:
            from ..jobs.retention import prune_runs

            # --runs alone deletes the whole history (runs still going on are kept).
            doomed = prune_runs(state, keep=0) if age is None else prune_runs(state, older_than=age)
            removed += [str(p) for p in doomed]
    except DagrunError as exc:
        raise fail(exc) from None
    typer.echo(f"removed {len(removed)} item(s)")
    for item in removed:
        typer.echo(f"  {item}")


def _age(older_than: str | None, runs: bool) -> float | None:
    if older_than is None:
        return None
    from ..units import parse_duration

    if not runs:
        msg = (
            "--older-than applies to --runs and --cache; write e.g. "
            "`dagrun clean --cache --older-than 7d`"
        )
        raise UsageError(msg)
    return parse_duration(older_than, "--older-than")


def _state_dir(state_dir: Path | None) -> Path:
    from ..settings import Environment

    if state_dir is not None and state_dir.exists() and not state_dir.is_dir():
        msg = f"--state-dir {str(state_dir)!r} is a file, not a directory; name a directory"
        raise fail(UsageError(msg))
    return state_dir if state_dir is not None else Path(Environment.read().state_dir or ".dagrun")


def _graph(pipeline: str, params: list[str] | None, targets: list[str] | None) -> Any:
    from ..graph.build import build_graph
    from ..pipeline.loader import load

    try:
        return build_graph(load(pipeline), parse_params(params or []), targets)
    except DagrunError as exc:
        raise fail(exc) from None


app = typer.Typer(
    name="dagrun",
    help="Run Python data pipelines as a DAG on every core.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.callback()(_root)
register(app)
job_commands.register(app)
cache_commands.register(app)
report_commands.register(app)


def main() -> None:
    """Console-script entry point."""
    from ..control import signals

    signals.install_process_handlers()  # SIGTERM too stops import, validation, a lock wait
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(signals.exit_code())
    except SystemExit as exc:  # typer turns KeyboardInterrupt into exit 130: say which signal
        sys.exit(signals.exit_code() if exc.code == 130 else exc.code)
    except Exception as exc:  # noqa: BLE001 - never a bare traceback from dagrun's internals
        from ..settings import Environment

        if Environment.read().debug:
            raise
        typer.echo(
            f"dagrun: internal error: {type(exc).__name__}: {exc}. This is a bug in dagrun; "
            f"run again with DAGRUN_DEBUG=1 for the traceback and report it.",
            err=True,
        )
        sys.exit(1)
    finally:
        signals.exiting()

