"""What ``run``, ``schedule`` and ``backfill`` share: the run options and the exit codes.

The run options are declared once, in the signature of ``run_args``: each
parameter is typer's declaration of the option (name, type, help, default)
and ``run_args`` checks them together. ``takes_run_options`` gives a command
those parameters after its own, so ``run``, ``schedule`` and ``backfill``
each list them in ``--help`` without listing them again in code.

``RunArgs`` is the command line's view of one run: built (and checked) once
from the options, it gives ``dagrun.run``'s keyword arguments (``kwargs``)
or the argument list of a child ``dagrun run`` (``argv``, used by the
scheduler). ``exit_code_for`` is the one place that maps an outcome to the
process exit code:

    0 succeeded · 1 a stage failed · 2 invalid usage or pipeline (nothing ran) ·
    3 another run holds the lock · 124 the run passed --max-runtime ·
    130 / 143 interrupted by SIGINT / SIGTERM
"""

from __future__ import annotations

import inspect
import tomllib
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..errors import Interrupted, LockHeldError, UsageError
from ..jobs.run_args import RunArgs

STATUS_EXIT = {"succeeded": 0, "failed": 1, "timed_out": 124}
TIMED_OUT = 124


def exit_code_for(outcome: BaseException | str) -> int:
    """The process exit code for an error that ended a command, or for a run's status."""
    if isinstance(outcome, str):
        return STATUS_EXIT.get(outcome, 1)
    if isinstance(outcome, Interrupted):
        return 128 + outcome.signum
    if isinstance(outcome, UsageError):
        return 2
    if isinstance(outcome, LockHeldError):
        return 3
    return 1


def fail(error: BaseException) -> typer.Exit:
    """Print ``error`` as one ``dagrun: error:`` paragraph; the ``Exit`` to raise."""
    typer.echo(f"dagrun: error: {error}", err=True)
    return typer.Exit(exit_code_for(error))


# -- options shared by run, schedule and backfill ------------------------------
PipelineArg = Annotated[str, typer.Argument(help="A pipeline .py file or an importable module.")]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(help="Where runs, cache and locks live [default: $DAGRUN_STATE_DIR or .dagrun]."),
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", "-w", help="Worker processes [default: CPUs].")
]
ExecutorOpt = Annotated[
    str, typer.Option(help="Where tasks run: local, inline, dask, ray (or a registered name).")
]
AddressOpt = Annotated[str | None, typer.Option(help="Cluster scheduler address (dask, ray).")]
ParamOpt = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE; repeatable.")
]
ParamsFileOpt = Annotated[
    Path | None, typer.Option(help="TOML file of NAME = VALUE parameters; --param overrides.")
]
TargetOpt = Annotated[
    list[str] | None, typer.Option("--target", "-t", help="Stage to produce; repeatable.")
]
KeepGoingOpt = Annotated[
    bool, typer.Option(help="After a failure, still run every stage not downstream of it.")
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Compute everything; store nothing.")]
ForceOpt = Annotated[
    list[str] | None, typer.Option(help="Re-run this stage and what is downstream; repeatable.")
]
CacheDirOpt = Annotated[
    Path | None, typer.Option(help="Cache directory [default: $DAGRUN_CACHE_DIR or STATE/cache].")
]
LogFormatOpt = Annotated[str, typer.Option(help="Console output: console or json.")]
StartMethodOpt = Annotated[
    str | None, typer.Option(help="fork, forkserver or spawn [default: the platform's].")
]
TimeoutOpt = Annotated[float | None, typer.Option(help="Default per-task timeout in seconds.")]
MaxTasksOpt = Annotated[int | None, typer.Option(help="Replace a worker after this many tasks.")]
MemoryOpt = Annotated[str | None, typer.Option(help="Memory budget for admission: 512M, 10G.")]
MaxRuntimeOpt = Annotated[
    str | None, typer.Option(help="Stop the run after this long (90s, 15m, 2h): exit 124.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="If another run holds the lock, wait.")]


def run_args(
    pipeline: str,
    *,
    workers: WorkersOpt = None,
    executor: ExecutorOpt = "local",
    address: AddressOpt = None,
    param: ParamOpt = None,
    params_file: ParamsFileOpt = None,
    target: TargetOpt = None,
    keep_going: KeepGoingOpt = False,
    no_cache: NoCacheOpt = False,
    force: ForceOpt = None,
    state_dir: StateDirOpt = None,
    cache_dir: CacheDirOpt = None,
    log_format: LogFormatOpt = "console",
    start_method: StartMethodOpt = None,
    timeout: TimeoutOpt = None,
    max_tasks_per_worker: MaxTasksOpt = None,
    memory: MemoryOpt = None,
    max_runtime: MaxRuntimeOpt = None,
    quiet: QuietOpt = False,
    wait: WaitOpt = False,
) -> RunArgs:
    """Check the options a user can get wrong before anything loads; a bad one is a UsageError.

    The keyword parameters are the run options of the command line, in the
    order ``--help`` lists them (``RUN_OPTIONS``).
    """
    from .. import executors
    from ..units import parse_duration, parse_size

    if not executors.known(executor):
        msg = f"--executor {executor!r} is unknown; choose one of: {', '.join(executors.names())}"
        raise UsageError(msg)
    if address is not None and executor in ("local", "inline"):
        msg = f"--address is only meaningful with --executor dask or ray, not {executor}"
        raise UsageError(msg)
    if log_format not in ("console", "json"):
        msg = f"--log-format {log_format!r} is unknown; choose console or json"
        raise UsageError(msg)
    if start_method is not None and start_method not in ("fork", "forkserver", "spawn"):
        msg = f"--start-method {start_method!r} is unknown; choose fork, forkserver or spawn"
        raise UsageError(msg)
    for name, value in (("--workers", workers), ("--max-tasks-per-worker", max_tasks_per_worker)):
        if value is not None and value < 1:
            msg = f"{name} must be at least 1, got {value}"
            raise UsageError(msg)
    if timeout is not None and timeout <= 0:
        msg = f"--timeout must be a positive number of seconds, got {timeout}"
        raise UsageError(msg)
    if memory is not None and parse_size(memory, "--memory") <= 0:
        msg = f"--memory must be positive, got {memory!r}"
        raise UsageError(msg)
    if max_runtime is not None and parse_duration(max_runtime, "--max-runtime") <= 0:
        msg = f"--max-runtime must be positive, got {max_runtime!r}"
        raise UsageError(msg)
    if state_dir is not None and state_dir.exists() and not state_dir.is_dir():
        msg = f"--state-dir {str(state_dir)!r} is a file, not a directory; name a directory"
        raise UsageError(msg)
    params = {**read_params_file(params_file), **parse_params(param or [])}
    options = {
        "workers": workers, "executor": executor, "address": address, "keep_going": keep_going,
        "no_cache": no_cache, "force": list(force or []), "state_dir": state_dir,
        "cache_dir": cache_dir, "log_format": log_format, "start_method": start_method,
        "timeout": timeout, "max_tasks_per_worker": max_tasks_per_worker, "memory": memory,
        "max_runtime": max_runtime, "quiet": quiet, "wait": wait,
    }
    return RunArgs(pipeline, params, tuple(target or ()), options)


def parse_params(items: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` items as a dict; a malformed one is a UsageError."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            msg = f"--param {item!r} is not NAME=VALUE; write e.g. --param scale=2.5"
            raise UsageError(msg)
        params[name.strip()] = value
    return params


def read_params_file(path: Path | None) -> dict[str, str]:
    """A TOML file's top-level keys as parameter text, as if each were given with --param."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        msg = f"--params-file {str(path)!r} cannot be read ({exc.strerror}); check the path"
        raise UsageError(msg) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"--params-file {str(path)!r} is not valid TOML: {exc}"
        raise UsageError(msg) from None
    return {name: _as_text(name, value, path) for name, value in data.items()}


def _as_text(name: str, value: Any, path: Path) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_as_text(name, item, path) for item in value)
    if isinstance(value, dict):
        msg = (
            f"--params-file {str(path)!r}: parameter {name!r} is a table; give each parameter "
            f"as NAME = VALUE at the top level"
        )
        raise UsageError(msg)
    return value.isoformat() if isinstance(value, date) else str(value)


def parse_date_arg(text: str, option: str) -> date | datetime:
    """``YYYY-MM-DD`` or an ISO date and time, for ``option``; anything else is a UsageError."""
    try:
        return date.fromisoformat(text) if len(text.strip()) == 10 else datetime.fromisoformat(
            text.strip())
    except ValueError:
        msg = (
            f"{option} {text!r} is not a date; write it as YYYY-MM-DD (2026-11-30) or as an "
            f"ISO date and time (2026-11-30T02:30 or 2026-11-30T02:30+01:00)"
        )
        raise UsageError(msg) from None


# Evaluated once here: typer reads a command's ``__signature__`` as it is, and
# this module's annotations are strings (``from __future__ import annotations``).
RUN_OPTIONS: tuple[inspect.Parameter, ...] = tuple(
    inspect.signature(run_args, eval_str=True).parameters.values()
)[1:]
"""The run options as typer reads them, without ``pipeline``: ``run_args``'s keyword parameters."""

Command = TypeVar("Command", bound=Callable[..., None])


def takes_run_options(*, replaces: tuple[str, ...] = ()) -> Callable[[Command], Command]:
    """Give a command the run options after its own; typer then lists and parses them.

    The command is written ``def command(pipeline, <its own options>, **options)``
    and receives the run options in ``options``, ready for
    ``run_args(pipeline, **options)``. Typer reads options from a command's
    signature, so this sets ``__signature__`` to the command's own parameters
    followed by ``RUN_OPTIONS``. A name in ``replaces`` is an option the
    command declares itself with a meaning of its own (``backfill``'s
    ``--force`` flag): the shared one is left out, and ``run_args`` gets its
    default. Any other clash of names is a mistake, raised at import.
    """
    names = {option.name for option in RUN_OPTIONS}

    def decorate(command: Command) -> Command:
        own = inspect.signature(command, eval_str=True)
        kept = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
        if len(kept) == len(own.parameters):
            msg = f"{command.__name__} needs **options to receive the run options"
            raise TypeError(msg)
        declared = {p.name for p in kept}
        clash = (declared & names) ^ set(replaces)
        if clash:
            msg = (
                f"{command.__name__}: {', '.join(sorted(clash))} must be declared by the "
                f"command exactly when listed in replaces"
            )
            raise TypeError(msg)
        shared = [option for option in RUN_OPTIONS if option.name not in replaces]
        command.__signature__ = own.replace(parameters=[*kept, *shared])  # type: ignore[attr-defined]
        return command

    return decorate
