"""One run's options: ``dagrun.run``'s arguments validated, the environment applied."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..units import parse_duration, parse_size
from .environment import Environment, cache_max_from, hold_min_from
from .numbers import TUNING, Tuning

START_METHODS = ("fork", "forkserver", "spawn")
LOG_FORMATS = ("console", "json", "none")


@dataclass(frozen=True)
class RunOptions:
    """One run's options, validated; see ``dagrun.run`` for their meaning."""

    executor: str = "local"
    address: Any = None
    workers: int = 1
    start_method: str = "fork"
    keep_going: bool = False
    state_dir: Path = Path(".dagrun")
    cache_dir: Path = Path(".dagrun/cache")
    log_format: str = "console"
    quiet: bool = False
    timeout: float | None = None
    max_tasks_per_worker: int | None = None
    force: tuple[str, ...] = ()
    no_cache: bool = False
    memory: int | None = None
    run_date: date | datetime | None = None
    max_runtime: float | None = None
    lock: bool = True
    wait: bool = False
    shm_dir: str = "/dev/shm"
    tuning: Tuning = field(default_factory=Tuning)

    @classmethod
    def build(cls, *, environ: Environment | None = None, **arguments: Any) -> RunOptions:
        """Validate ``dagrun.run``'s keyword arguments; a bad one is a ``UsageError``."""
        env = environ or Environment.read()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(arguments) - known)
        if unknown:
            msg = f"unknown run option(s): {', '.join(unknown)}"
            raise UsageError(msg)
        args = {k: v for k, v in arguments.items() if v is not None}
        executor = args.get("executor", "local")
        method = args.get("start_method") or _default_start_method()
        if method not in START_METHODS:
            msg = f"unknown start method {method!r}; choose one of: {', '.join(START_METHODS)}"
            raise UsageError(msg)
        workers = args["workers"] if "workers" in args else usable_cpus()
        _at_least("workers", workers, 1)
        log_format = args.get("log_format", "console")
        if log_format not in LOG_FORMATS:
            msg = f"unknown log format {log_format!r}; choose console or json"
            raise UsageError(msg)
        timeout = args.get("timeout")
        if timeout is not None:
            timeout = parse_duration(timeout, "timeout")
            _positive("timeout", timeout)
        max_runtime = args.get("max_runtime")
        if max_runtime is not None:
            max_runtime = parse_duration(max_runtime, "max runtime")
            _positive("max runtime", max_runtime)
        max_tasks = args.get("max_tasks_per_worker")
        if max_tasks is not None:
            _at_least("max tasks per worker", max_tasks, 1)
        memory = args.get("memory")
        if memory is not None:
            memory = parse_size(memory, "memory")
            _positive("memory", memory)
        state_dir = Path(args.get("state_dir") or env.state_dir or ".dagrun")
        if state_dir.exists() and not state_dir.is_dir():
            msg = f"state directory {str(state_dir)!r} is a file; name a directory"
            raise UsageError(msg)
        cache_dir = Path(args.get("cache_dir") or env.cache_dir or state_dir / "cache")
        tuning = args.get("tuning", TUNING)
        if not isinstance(tuning, Tuning):
            msg = f"tuning must be a dagrun.settings.Tuning, got {type(tuning).__name__}"
            raise UsageError(msg)
        if env.hold_min is not None:
            tuning = replace(tuning, hold_min=hold_min_from(env.hold_min))
        if env.cache_max_size is not None:
            tuning = replace(tuning, cache_max_bytes=cache_max_from(env.cache_max_size))
        return cls(
            executor=executor,
            address=args.get("address"),
            workers=1 if executor == "inline" else workers,
            start_method=method,
            keep_going=bool(args.get("keep_going", False)),
            state_dir=state_dir,
            cache_dir=cache_dir,
            log_format=log_format,
            quiet=bool(args.get("quiet", False)),
            timeout=timeout,
            max_tasks_per_worker=max_tasks,
            force=_names(args.get("force", ())),
            no_cache=bool(args.get("no_cache", False)),
            memory=memory,
            run_date=parse_run_date(args["run_date"]) if "run_date" in args else None,
            max_runtime=max_runtime,
            lock=bool(args.get("lock", True)),
            wait=bool(args.get("wait", False)),
            shm_dir=env.shm_dir,
            tuning=tuning,
        )


def _default_start_method() -> str:
    """``multiprocessing``'s configured method if the program set one, else dagrun's choice."""
    chosen = mp.get_start_method(allow_none=True)
    if chosen is not None:
        return chosen
    return default_start_method()


def default_start_method() -> str:
    """``fork`` while the driver runs no other thread; else ``forkserver``.

    Forking a process with threads can copy a lock some thread holds, and the
    child deadlocks on it. Workers are started lazily and replaced mid-run, so
    the choice is made for the pool's lifetime when it is built; a driver
    that starts threads later should ask for ``forkserver`` itself. ``fork``
    is kept when it is safe because a fork server costs a fresh interpreter
    and its imports at the start of every run (measured: about 0.3 s).
    """
    return "fork" if threading.active_count() == 1 else "forkserver"


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_run_date(value: date | datetime | str) -> date | datetime:
    """A logical run date: a ``date``/``datetime``, or ISO text (``2026-11-30``, ``...T02:30``)."""
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError:
        msg = (
            f"run date {text!r} is not a date; write it as YYYY-MM-DD (2026-11-30) or an ISO "
            f"date and time (2026-11-30T02:30)"
        )
        raise UsageError(msg) from None


def _names(items: Iterable[str] | str) -> tuple[str, ...]:
    return (items,) if isinstance(items, str) else tuple(items)


def _at_least(what: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        msg = f"{what} must be a whole number of at least {low}, got {value!r}"
        raise UsageError(msg)


def _positive(what: str, value: float) -> None:
    if not value > 0:
        msg = f"{what} must be greater than zero, got {value!r}"
        raise UsageError(msg)
