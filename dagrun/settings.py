"""Every setting of a run in one place: the run's options and the tuning numbers.

    dagrun.run(**arguments) ─┐
                             ├─▶ RunOptions.build ─▶ RunOptions (frozen, validated)
    os.environ (read once) ──┘                         └─ .tuning: Tuning (frozen)

``RunOptions`` holds every argument of ``dagrun.run`` after validation, plus
what the environment says (read here and nowhere else); a bad value is a
``UsageError`` before anything runs. ``Tuning`` names every number that
shapes scheduling, each with the reason for its value; the README's settings
table lists the same fields (a test keeps the two in step).

Environment variables:

    DAGRUN_STATE_DIR   state directory (runs, locks, cache) when --state-dir is not given
    DAGRUN_CACHE_DIR   cache directory when --cache-dir is not given
    DAGRUN_SHM_DIR     where shared-memory segments live (default /dev/shm)
    DAGRUN_HOLD_MIN    bytes from which a result may stay in its worker ("off": never)
    DAGRUN_CACHE_MAX_SIZE  the cache directory's size cap (default 20G; "off": none)
    DAGRUN_DEBUG       show dagrun's own traceback for an internal error
    TZ                 the local time zone of cron schedules (else /etc/localtime)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .errors import UsageError
from .units import parse_duration, parse_size

START_METHODS = ("fork", "forkserver", "spawn")
LOG_FORMATS = ("console", "json", "none")


@dataclass(frozen=True)
class Tuning:
    """The numbers that shape a run; each field's comment is the reason for its value.

    A run's own record is ``RunOptions.tuning``: the ``tuning`` argument of
    ``dagrun.run``, else the defaults, with ``DAGRUN_HOLD_MIN`` applied. While a run goes on it is
    the one in force (``tuning()``) in the driver and in every worker, and
    modules read their numbers from it when they use them, never at import.
    The README's settings table lists every field.
    """

    # -- scheduling (runner, planner) --
    # Automatic batch size of a mapped stage: about this many batches per worker, enough to
    # balance uneven elements, few enough that per-task overhead stays small.
    tasks_per_worker: int = 4
    # A consumer is not chained behind a task whose shared inputs are this large: the driver
    # frees them only when that task ends, so the link would overlap them in memory.
    chain_inputs_max: int = 16 << 20
    # Share of the memory limit kept free when no --memory budget is given: the driver, the
    # page cache and the interpreters' baselines live there.
    memory_margin: float = 0.1
    # Earlier runs whose stage times and memory count: enough to smooth noise, recent enough
    # to follow edits.
    recent_runs: int = 5
    # Seconds between two looks at a cache entry that another run is computing.
    cache_wait_s: float = 0.2
    # The events file and the console are brought up to date at least this often while tasks
    # end in quick succession, and at once when the run goes quiet: a chain of short tasks
    # wakes the driver once per task, and two writes per wake cost more than the task.
    events_flush_s: float = 0.02
    # Signals closer together than this are one signal (one keypress, or timeout(1) and a
    # process group, reach the driver twice).
    signal_merge_s: float = 1.0

    # -- the local process pool --
    # Tasks a worker may hold: the running one and those queued behind it, sent to it in one
    # write (no driver round trip between them).
    prefetch: int = 32
    # A worker gets more tasks queued only while the typical times of what it holds add up
    # to less than this: behind a long task the queued ones would wait while others idle.
    short_task_s: float = 0.005
    # Results from this size on pull their consumers to the worker that wrote them (it still
    # has the pages mapped).
    near_min: int = 1 << 20
    # Messages read from one worker per wake-up: a chatty worker cannot starve the others.
    messages_per_wake: int = 64
    # Peak-memory samples of busy workers: cheap, and fine enough to describe a crash.
    sample_every_s: float = 0.5
    # A worker must finish its imports within this, task timeout or not.
    startup_grace_s: float = 30.0
    # A worker asked to stop gets this long to exit before it is killed: enough for its
    # resources' teardown, short enough that Ctrl-C still feels immediate.
    term_grace_s: float = 1.0
    # Last lines of a dead worker's output quoted in its task's error.
    tail_lines: int = 5
    # A printed line longer than this is cut: one runaway print must not make a huge event.
    max_line_chars: int = 10_000
    # Tasks in flight per Dask or Ray worker: enough that the engine is never idle while the
    # driver handles reports (at 2, 1,000 no-ops cost 10 ms each on Dask; at 64, 3 ms).
    engine_prefetch: int = 64

    # -- intermediates (store) --
    # Values (or array members) smaller than this travel pickled inside the handle: no file.
    inline_max: int = 64 << 10
    # A pickled list or tuple a stage maps over, up to this size, is read once by the driver
    # and each batch is sent only its own elements; a larger one is read by each task, so
    # the driver never holds a second copy of a large value.
    slice_max: int = 64 << 20
    # From this size a result with one consumer that can start at once stays in its worker;
    # below it, the shared-memory path is cheap enough and keeps the documented transports.
    hold_min: int = 256 << 20
    # At most this much of released values waits for reuse: peak memory stays within the
    # live set plus this.
    pool_max: int = 256 << 20
    # Parked segments kept at most, whatever their size.
    max_free: int = 16
    # Larger segments are freed, not parked: a large value gets fresh pages instead of
    # holding memory for a next value that may never come.
    recycle_max: int = 32 << 20
    # Below this a single memcpy is as fast as copying with threads.
    parallel_copy_min: int = 16 << 20
    # The smallest piece one copying thread takes.
    copy_chunk_min: int = 8 << 20
    # From this size an array nobody else holds is freed page by page as it is copied.
    release_min: int = 32 << 20
    # How much is copied before those pages are given back.
    release_chunk: int = 16 << 20
    # Free space left in a directory after a new segment, so the system does not run dry.
    reserve: int = 1 << 20
    # Mappings a process keeps open for reuse.
    max_cached_maps: int = 64

    # -- cache --
    # Bytes at each end of a cached file whose digests a lookup checks (constant time).
    cache_edge: int = 4096
    # Bytes hashed per call when a value is not contiguous: one reused buffer.
    hash_chunk: int = 8 << 20
    # The cache directory is trimmed to this size at the end of each run, least recently used
    # entries first: enough for many runs of large intermediates, bounded on a shared disk
    # (-1: no cap).
    cache_max_bytes: int = 20 << 30
    # A result is stored unless writing it would take longer than this and longer than
    # cache_write_share of its stage's time: writes this short are worth it whatever the stage.
    cache_write_free_s: float = 0.2
    # ... and unless writing it would take more than this share of the time its stage took:
    # recomputing is then the cheaper way to have it again.
    cache_write_share: float = 0.5
    # Bytes written once per cache directory to measure its write rate (data and checksum),
    # the first time a result this large is to be stored; a smaller one is always stored
    # (at 80 MB/s, the slowest disk worth caching on, it writes within cache_write_free_s).
    cache_probe_bytes: int = 16 << 20


TUNING = Tuning()
"""The defaults: in force whenever no run has put its own."""

_in_force = [TUNING]


def tuning() -> Tuning:
    """The tuning in force: the current run's in its driver and workers, else the defaults."""
    return _in_force[0]


def put_in_force(record: Tuning) -> Tuning:
    """Make ``record`` the tuning every module reads; returns the one it replaces."""
    previous, _in_force[0] = _in_force[0], record
    return previous


@dataclass(frozen=True)
class Environment:
    """What the environment says about a run, read once."""

    state_dir: str | None = None
    cache_dir: str | None = None
    shm_dir: str = "/dev/shm"
    hold_min: str | None = None
    cache_max_size: str | None = None
    debug: bool = False
    tz: str = ""  # $TZ: the machine's local zone (empty: /etc/localtime says)

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Environment:
        env = os.environ if environ is None else environ
        return cls(
            state_dir=env.get("DAGRUN_STATE_DIR") or None,
            cache_dir=env.get("DAGRUN_CACHE_DIR") or None,
            shm_dir=env.get("DAGRUN_SHM_DIR") or "/dev/shm",
            hold_min=env.get("DAGRUN_HOLD_MIN") or None,
            cache_max_size=env.get("DAGRUN_CACHE_MAX_SIZE") or None,
            debug=bool(env.get("DAGRUN_DEBUG")),
            tz=env.get("TZ", "").lstrip(":"),
        )


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


def hold_min_from(text: str | None) -> int:
    """``$DAGRUN_HOLD_MIN``: bytes from which a result may stay in its worker (``off``: never)."""
    if not text or not text.strip():
        return Tuning.hold_min
    text = text.strip().lower()
    if text in ("off", "never", "-1"):
        return -1
    try:
        return max(0, parse_size(text))
    except UsageError:
        msg = f"DAGRUN_HOLD_MIN must be a number of bytes or 'off', got {text!r}"
        raise UsageError(msg) from None


def cache_max_from(text: str) -> int:
    """``$DAGRUN_CACHE_MAX_SIZE``: the cache directory's cap in bytes (``off``: none)."""
    text = text.strip().lower()
    if text in ("off", "none", "-1"):
        return -1
    try:
        return parse_size(text)
    except UsageError:
        msg = f"DAGRUN_CACHE_MAX_SIZE must be a size such as 20G, or 'off', got {text!r}"
        raise UsageError(msg) from None


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


ENVIRONMENT = (
    ("DAGRUN_STATE_DIR", "state directory (runs, locks, cache) when --state-dir is not given"),
    ("DAGRUN_CACHE_DIR", "cache directory when --cache-dir is not given"),
    ("DAGRUN_SHM_DIR", "where shared-memory segments live (default /dev/shm)"),
    ("DAGRUN_HOLD_MIN", "bytes from which a result may stay in its worker (`off`: never)"),
    ("DAGRUN_CACHE_MAX_SIZE", "the cache directory's size cap, trimmed least recently used "
                              "at each run's end (default 20G; `off`: none)"),
    ("DAGRUN_DEBUG", "show dagrun's own traceback for an internal error"),
)


def settings_table() -> str:
    """The README's settings section body: every environment variable and tuning number."""
    import inspect

    lines = ["| variable | what it sets |", "|---|---|"]
    lines += [f"| `{name}` | {what} |" for name, what in ENVIRONMENT]
    lines += ["", "| tuning number | default | why this value |", "|---|---|---|"]
    source = inspect.getsource(Tuning).splitlines()
    reason: list[str] = []
    for line in source:
        text = line.strip()
        if text.startswith("# --"):
            reason = []
        elif text.startswith("#"):
            reason.append(text.lstrip("# "))
        elif ":" in text and "=" in text and not text.startswith(('"', "'")):
            name = text.split(":", 1)[0]
            default = text.split("=", 1)[1].strip()
            lines.append(f"| `{name}` | `{default}` | {' '.join(reason)} |")
            reason = []
    return "\n".join(lines)
