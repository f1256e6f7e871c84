"""The ``dagrun`` command: parse, call the library, map errors to exit codes.

Exit codes (``exit_code_for`` is the one place that maps them):
0 success · 1 a stage failed · 2 invalid usage or pipeline (nothing ran) ·
3 another run holds the pipeline's lock · 130 / 143 interrupted (SIGINT / SIGTERM).
Heavy imports happen inside the commands, so ``dagrun --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import DagrunError, Interrupted, LockHeldError, UsageError

app = typer.Typer(
    name="dagrun",
    help="Run Python data pipelines as a DAG on every core.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
runs_app = typer.Typer(help="History of runs and their per-stage metrics.", no_args_is_help=False)
app.add_typer(runs_app, name="runs")


class Executor(StrEnum):
    local = "local"
    inline = "inline"
    dask = "dask"
    ray = "ray"


class StartMethod(StrEnum):
    fork = "fork"
    forkserver = "forkserver"
    spawn = "spawn"


class LogFormat(StrEnum):
    console = "console"
    json = "json"


class GraphFormat(StrEnum):
    text = "text"
    mermaid = "mermaid"
    dot = "dot"


PipelineArg = Annotated[str, typer.Argument(help="A pipeline .py file or an importable module.")]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(help="Where runs, cache and locks live [default: $DAGRUN_STATE_DIR or .dagrun]."),
]


def exit_code_for(error: BaseException) -> int:
    """The process exit code for an error that ended a command."""
    if isinstance(error, Interrupted):
        return 128 + error.signum
    if isinstance(error, UsageError):
        return 2
    if isinstance(error, LockHeldError):
        return 3
    return 1


def _fail(error: BaseException) -> typer.Exit:
    typer.echo(f"dagrun: error: {error}", err=True)
    return typer.Exit(exit_code_for(error))


def _parse_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            msg = f"--param {item!r} is not NAME=VALUE; write e.g. --param scale=2.5"
            raise UsageError(msg)
        params[name.strip()] = value
    return params


@app.command("run")
def run_command(
    pipeline: PipelineArg,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", help="Worker processes [default: CPUs].")
    ] = None,
    executor: Annotated[Executor, typer.Option(help="Where tasks run.")] = Executor.local,
    address: Annotated[str | None, typer.Option(help="Cluster scheduler address.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE; repeatable.")
    ] = None,
    target: Annotated[
        list[str] | None, typer.Option("--target", "-t", help="Stage to produce; repeatable.")
    ] = None,
    keep_going: Annotated[
        bool, typer.Option(help="After a failure, still run every stage not downstream of it.")
    ] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Compute everything.")] = False,
    force: Annotated[
        list[str] | None, typer.Option(help="Re-run this stage and what is downstream.")
    ] = None,
    state_dir: StateDirOpt = None,
    log_format: Annotated[LogFormat, typer.Option(help="Console output.")] = LogFormat.console,
    start_method: Annotated[
        StartMethod | None, typer.Option(help="How worker processes start [default: platform's].")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Default per-task timeout in seconds.")
    ] = None,
    max_tasks_per_worker: Annotated[
        int | None, typer.Option(help="Replace a worker after this many tasks.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="If another run holds the lock, wait for it.")
    ] = False,
) -> None:
    """Run a pipeline: every stage starts the moment its inputs are ready."""
    try:
        if executor in (Executor.dask, Executor.ray):
            msg = (
                f"the {executor.value} executor is not available in this version; "
                f"use --executor local or inline"
            )
            raise UsageError(msg)
        if address is not None:
            msg = "--address is only meaningful with --executor dask or ray"
            raise UsageError(msg)
        from .runner import run

        result = run(
            pipeline,
            params=_parse_params(param or []),
            targets=target or None,
            workers=workers,
            executor=executor.value,
            start_method=start_method.value if start_method else None,
            keep_going=keep_going,
            state_dir=state_dir,
            log_format=log_format.value,
            timeout=timeout,
            max_tasks_per_worker=max_tasks_per_worker,
            force=force or (),
            no_cache=no_cache,
            wait=wait,
        )
    except DagrunError as exc:
        raise _fail(exc) from None
    with result:
        if result.ok:
            return
        failed = ", ".join(repr(s) for s in result.errors)
        typer.echo(
            f"dagrun: run {result.run_id} failed: stage {failed} failed (the traceback is "
            f"above); events are in {result.events_path}",
            err=True,
        )
        raise typer.Exit(1)


@app.command("validate")
def validate_command(
    pipeline: PipelineArg,
    param: Annotated[list[str] | None, typer.Option("--param", "-p")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", "-t")] = None,
) -> None:
    """Check a pipeline without running anything."""
    graph = _graph(pipeline, param, target)
    typer.echo(f"{graph.pipeline.name}: valid, {len(graph.nodes)} stages")


@app.command("list")
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
        params = ", ".join(f"{p}={v!r}" for p, v in node.params.items())
        typer.echo(f"  parameters: {params or '-'}")
        shown = {
            "map": opts.map,
            "batch_size": opts.batch_size,
            "retries": opts.retries or None,
            "timeout": opts.timeout,
            "cache": None if opts.cache else False,
            "tags": ",".join(opts.tags) or None,
        }
        text = ", ".join(f"{k}={v}" for k, v in shown.items() if v is not None)
        typer.echo(f"  options:    {text or '-'}")


@app.command("graph")
def graph_command(
    pipeline: PipelineArg,
    format: Annotated[GraphFormat, typer.Option("--format", "-f")] = GraphFormat.text,
) -> None:
    """Print the pipeline's DAG as text, Mermaid or Graphviz dot."""
    from .render import render_graph

    typer.echo(render_graph(_graph(pipeline, None, None), format.value), nl=False)


@runs_app.callback(invoke_without_command=True)
def runs_command(ctx: typer.Context, state_dir: StateDirOpt = None) -> None:
    """List past runs, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from .history import list_runs

    typer.echo(list_runs(_state_dir(state_dir)), nl=False)


@runs_app.command("show")
def runs_show_command(run_id: str, state_dir: StateDirOpt = None) -> None:
    """Show one run's per-stage metrics."""
    from .history import show_run

    try:
        typer.echo(show_run(_state_dir(state_dir), run_id), nl=False)
    except DagrunError as exc:
        raise _fail(exc) from None


@app.command("clean")
def clean_command(
    state_dir: StateDirOpt = None,
    runs: Annotated[bool, typer.Option("--runs", help="Also delete the run history.")] = False,
) -> None:
    """Remove cache, orphaned shared memory (of runs whose driver is gone) and spill files."""
    import shutil

    from .store import clean_orphans

    state = _state_dir(state_dir)
    removed = clean_orphans(state, os.environ.get("DAGRUN_SHM_DIR", "/dev/shm"))
    for sub in ["cache", *(["runs"] if runs else [])]:
        if (state / sub).exists():
            shutil.rmtree(state / sub)
            removed.append(str(state / sub))
    typer.echo(f"removed {len(removed)} item(s)")
    for item in removed:
        typer.echo(f"  {item}")


def _state_dir(state_dir: Path | None) -> Path:
    from .runner import default_state_dir

    return state_dir if state_dir is not None else default_state_dir()


def _graph(pipeline: str, params: list[str] | None, targets: list[str] | None) -> Any:
    from .graph import build_graph
    from .loader import load

    try:
        return build_graph(load(pipeline), _parse_params(params or []), targets)
    except DagrunError as exc:
        raise _fail(exc) from None


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - never a bare traceback from dagrun's internals
        if os.environ.get("DAGRUN_DEBUG"):
            raise
        typer.echo(
            f"dagrun: internal error: {type(exc).__name__}: {exc}. This is a bug in dagrun; "
            f"run again with DAGRUN_DEBUG=1 for the traceback and report it.",
            err=True,
        )
        sys.exit(1)
