"""``dagrun schedule``: the foreground loop that runs a pipeline on a cron schedule.

    load state.json (last tick, UTC) ─▶ ticks in (last, now] ─▶ decide (cron.py)
          ▲                                                        │ per tick:
          │                                                        ▼
    sleep until the next fire time  ◀── none left ◀── schedule_tick event; run ▶ child
    (select on the signal wake-up pipe)                            `dagrun run --run-date TICK`

Each run is a child ``dagrun run`` process in its own process group: the
scheduler stays small and fresh code is imported at every tick, a terminal's
Ctrl-C reaches the scheduler alone, and the scheduler decides what the child
sees. SIGINT/SIGTERM while waiting: exit 0 at once. During a run: the signal
is passed on (the run stops cleanly and the scheduler exits 130/143), or with
``--graceful`` the run finishes first and the scheduler exits 0; a second
signal is always passed on. On Linux the child gets SIGTERM if the scheduler
itself is killed. Runs never overlap: the loop waits for each child, and a
scheduler lock (``scheduler.lock``) keeps a second scheduler of the same
pipeline and state directory from starting (exit 3).

State (``<state-dir>/schedule/<name>-<digest>/``): ``state.json`` holds the
last tick handled, written before its run starts (a tick is never run twice),
with the cron expression and zone (a different schedule starts afresh: nothing
missed); ``events.jsonl`` holds every ``schedule_started``, ``schedule_tick``
(``due``, ``due_local``, ``decision``, ``reason``), ``schedule_run``
(``due``, ``run_id``, ``status``, ``exit_code``) and ``schedule_stopped`` event.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..errors import LockHeldError
from ..events.history import scan_runs
from .cron import Cron, decide, next_fire, ticks_between
from .hooks import run_hook
from .retention import prune_runs
from .run_args import RunArgs

_MAX_SLEEP_S = 60.0  # re-read the wall clock at least this often (suspend, clock changes)
_CHILD_STATUS = {0: "succeeded", 1: "failed", 2: "invalid", 3: "locked", 124: "timed_out",
                 130: "interrupted", 143: "interrupted"}


@dataclass(frozen=True)
class Schedule:
    """Everything the loop needs, checked by the command line."""

    args: RunArgs
    cron: Cron
    policy: str
    state_dir: Path
    name: str  # the pipeline's readable name
    key: str  # what identifies the pipeline (resolved path or module name)
    json_mode: bool = False
    graceful: bool = False
    on_failure: str | None = None
    keep_runs: int | None = None


def schedule_dir(state_dir: Path, name: str, key: str) -> Path:
    """Where one pipeline's schedule keeps its state and events."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return state_dir / "schedule" / f"{safe}-{digest}"


class ScheduleLoop:
    """Runs ``schedule`` until a signal; ``run`` returns the exit code."""

    def __init__(
        self, schedule: Schedule, *, out: IO[str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.s = schedule
        self.out = out or sys.stdout
        self.clock = clock
        self.dir = schedule_dir(schedule.state_dir, schedule.name, schedule.key)
        self.signum: int | None = None
        self.child: subprocess.Popen[bytes] | None = None
        self._wake_r = self._wake_w = -1
        self._log: IO[str] | None = None

    # -- the loop --------------------------------------------------------
    def run(self) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._scheduler_lock(), self._signals(), open(
            self.dir / "events.jsonl", "a", encoding="utf-8"
        ) as self._log:
            return self._loop()

    def _loop(self) -> int:
        cron, started = self.s.cron, self.clock()
        last, note = self._load_last(started)
        self._save(last)
        idle_since = started
        self._emit("schedule_started", cron=cron.expr, tz=cron.zone_name, catch_up=self.s.policy,
                   last_tick=_iso(last), next=_iso(next_fire(cron, max(last, started))),
                   note=note)
        while self.signum is None:
            now = self.clock()
            ticks, dropped = ticks_between(cron, last, now)
            if not ticks:
                self._sleep_until(next_fire(cron, max(last, now)))
                continue
            if dropped:
                self._emit("schedule_tick", due=None, decision="skip",
                           reason=f"{dropped} older missed ticks dropped unlisted")
            for choice in decide(ticks, idle_since, started, self.s.policy):
                if self.signum is not None:
                    break
                local = cron.local(choice.due)
                self._emit("schedule_tick", due=_iso(choice.due), due_local=local.isoformat(),
                           decision=choice.decision, reason=choice.reason)
                last = choice.due
                self._save(last)
                if choice.decision == "run":
                    code = self._run_tick(choice.due)
                    if self.signum is not None:
                        return self._stopped(code)
                elif self.s.on_failure:
                    self._hook(None, "missed", local.isoformat())
            idle_since = self.clock()
        return self._stopped(None)

    def _stopped(self, code: int | None) -> int:
        assert self.signum is not None
        if code is None or self.s.graceful:  # stopped between runs, or after one finished
            exit_code = 0
        else:
            exit_code = 128 + self.signum
        self._emit("schedule_stopped", signal=signal.Signals(self.signum).name,
                   exit_code=exit_code)
        return exit_code

    # -- one tick --------------------------------------------------------
    def _run_tick(self, due: datetime) -> int:
        local = self.s.cron.local(due)
        argv = [sys.executable, "-m", "dagrun", *self.s.args.argv(local)]
        launched = self.clock()
        self.child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=_die_with_parent(),
        )
        if self.signum is not None and not self.s.graceful:  # it came while the child started
            self.child.send_signal(self.signum)
        try:
            code = self.child.wait()
        finally:
            pid, self.child = self.child.pid, None
        record = self._find_run(pid, launched)
        status = _CHILD_STATUS.get(code, "failed")
        if -code in (signal.SIGINT, signal.SIGTERM):  # the child died of the signal itself
            status = "interrupted"
        if record is not None and record.status in ("lost", "running"):
            status = "lost"
        run_id = record.run_id if record is not None else None
        self._emit("schedule_run", due=_iso(due), run_id=run_id, status=status, exit_code=code)
        if status != "succeeded" and self.s.on_failure:
            self._hook(run_id, status, local.isoformat())
        if self.s.keep_runs is not None:
            name = record.pipeline if record is not None else self.s.name
            prune_runs(self.s.state_dir, keep=self.s.keep_runs, pipeline=name)
        return code

    def _find_run(self, pid: int, launched: datetime) -> Any:
        floor = launched.strftime("%Y%m%dT%H%M%S")
        fresh = [r for r in scan_runs(self.s.state_dir) if r.run_id[:15] >= floor]
        for rec in fresh:
            if _driver_pid(rec.run_dir) == pid:
                return rec
        return None

    def _hook(self, run_id: str | None, status: str, run_date: str) -> None:
        assert self.s.on_failure is not None
        run_hook(self.s.on_failure, run_id=run_id, status=status, pipeline=self.s.name,
                 run_date=run_date, state_dir=str(self.s.state_dir))

    # -- waiting, signals, state ---------------------------------------------
    def _sleep_until(self, due: datetime) -> None:
        """Block until ``due`` (wall clock) or a signal; never busy-waits."""
        delay = (due - self.clock()).total_seconds()
        if delay > 0:
            ready, _, _ = select.select([self._wake_r], [], [], min(delay, _MAX_SLEEP_S))
            if ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 512)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        previous_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _on_signal(self, signum: int, frame: object) -> None:
        second = self.signum is not None
        self.signum = self.signum or signum
        child = self.child
        if child is not None and (second or not self.s.graceful):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    @contextlib.contextmanager
    def _scheduler_lock(self) -> Iterator[None]:
        path = self.dir / "scheduler.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown"
                msg = (
                    f"another `dagrun schedule` runs pipeline {self.s.name!r} on this state "
                    f"directory ({holder}; lock file {path}); stop it first, or give this one "
                    f"another --state-dir"
                )
                raise LockHeldError(msg) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _load_last(self, now: datetime) -> tuple[datetime, str]:
        try:
            state = json.loads((self.dir / "state.json").read_text())
            last = datetime.fromisoformat(state["last_tick"].replace("Z", "+00:00"))
        except (OSError, ValueError, KeyError, TypeError):
            return now, "first start: no tick is missed"
        if state.get("cron") != self.s.cron.expr or state.get("tz") != self.s.cron.zone_name:
            return now, "the schedule changed: no tick is missed"
        return min(last, now), "resumed after the last tick handled"

    def _save(self, last: datetime) -> None:
        path = self.dir / "state.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"last_tick": _iso(last), "cron": self.s.cron.expr,
                                   "tz": self.s.cron.zone_name}))
        os.replace(tmp, path)

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "timestamp": _iso(datetime.now(UTC)), "level": "info",
                  "run_id": fields.pop("run_id", None), "pipeline": self.s.name, **fields}
        line = json.dumps(record, separators=(",", ":"))
        assert self._log is not None
        self._log.write(line + "\n")
        self._log.flush()
        self.out.write(line + "\n" if self.s.json_mode else _console(record))
        self.out.flush()


def _console(e: dict[str, Any]) -> str:
    clock = e["timestamp"][11:19]
    name = e["event"]
    if name == "schedule_tick":
        return f"{clock} tick {e.get('due_local') or '-'}: {e['decision']} ({e['reason']})\n"
    if name == "schedule_run":
        return f"{clock} tick {e['due']}: run {e['run_id'] or '-'} {e['status']}\n"
    if name == "schedule_started":
        return (f"{clock} schedule {e['pipeline']}: cron '{e['cron']}' in {e['tz']}, catch-up "
                f"{e['catch_up']}; next tick {e['next']} ({e['note']})\n")
    return f"{clock} schedule stopped by {e['signal']} (exit {e['exit_code']})\n"


def _iso(instant: datetime | None) -> str | None:
    if instant is None:
        return None
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _driver_pid(run_dir: Path) -> int | None:
    try:
        with open(run_dir / "events.jsonl", encoding="utf-8") as f:
            return json.loads(f.readline()).get("driver_pid")
    except (OSError, ValueError):
        return None


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook that makes the child get SIGTERM when the scheduler dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def hook() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook
