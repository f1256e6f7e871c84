"""What a person sees while a run goes on: plain lines off a terminal, a live view on one.

    EventLog ─▶ PlainConsole.write(event)   cron, CI, pipes: one line per event, no
                                            control characters; a mapped stage's batches
                                            are summarised (a line per 10 %, one at the end)
             ─▶ LiveView.write(event)       a terminal: events scroll above a rich.Live
                                            block redrawn four times a second by rich's
                                            own thread (so the clock ticks during a long
                                            stage): done/running/failed/total, elapsed,
                                            the running stages, one bar per mapped stage

Both keep a ``RunState``: the stages done, failed, skipped and running (with
when they started) and one ``MapProgress`` per mapped stage. A mapped
stage's batch count is known when its events carry ``batches``; without it,
the stage is complete when one of its consumers (from ``run_started``'s
``edges``) starts, or when the run ends. ``update`` returns the mapped
stages that an event completed, so each console announces them once.
"""

from __future__ import annotations

import threading
import time
from typing import IO, Any

from ..units import format_bytes
from .lines import clean, render_console
from .summary import format_summary

SHOWN_RUNNING = 8  # running stages listed in the live view before "… N more"
SHOWN_MAPS = 6  # mapped stages with a bar in the live view
REFRESH_PER_SECOND = 4  # the live view's redraws: a ticking clock at little cost
# Lines scroll above the live block in batches at most this often: each print redraws the
# block (about 0.3 ms), which at one print per event cost more than running a small task.
LINES_EVERY_S = 0.1


class MapProgress:
    """One mapped stage's batches so far."""

    __slots__ = ("stage", "total", "done", "failed", "running", "started", "ended", "cpu_s",
                 "peak", "out_bytes", "transports", "announced", "closed")

    def __init__(self, stage: str, now: float) -> None:
        self.stage = stage
        self.total: int | None = None
        self.done = self.failed = self.running = self.announced = 0
        self.started, self.ended = now, now
        self.cpu_s = 0.0
        self.peak = self.out_bytes = 0
        self.transports: set[str] = set()
        self.closed = False

    def line(self, clock: str) -> str:
        """The closing line: how many batches, how long, what they used."""
        glyph = "✗" if self.failed else "✓"
        failed = f", {self.failed} failed" if self.failed else ""
        via = "+".join(sorted(self.transports)) or "-"
        return (
            f"{clock} {glyph} {self.stage}: {self.done} batches finished{failed} in "
            f"{self.ended - self.started:.2f} s (cpu {self.cpu_s:.3f} s, peak "
            f"{format_bytes(self.peak)}, out {format_bytes(self.out_bytes)} via {via})\n"
        )


class RunState:
    """Counts and running stages, updated one event at a time (see the module docstring)."""

    def __init__(self) -> None:
        self.total = 0
        self.done: set[str] = set()
        self.failed: set[str] = set()
        self.skipped: set[str] = set()
        self.running: dict[str, float] = {}  # stage -> monotonic start
        self.maps: dict[str, MapProgress] = {}
        self.upstream: dict[str, list[str]] = {}
        self.started = time.monotonic()

    def update(self, e: dict[str, Any]) -> list[MapProgress]:
        kind, stage = e.get("event"), e.get("stage")
        now = time.monotonic()
        batch = e.get("batch")
        if kind == "run_started":
            self.total = int(e.get("stages") or 0)
            self.started = now
            for up, down in e.get("edges") or ():
                self.upstream.setdefault(down, []).append(up)
        elif kind in ("run_summary", "run_finished"):
            return [self._close(m, now) for m in self.maps.values() if not m.closed]
        elif stage is None:
            return []
        elif batch is not None:
            return self._batch(kind, e, now)
        elif kind == "task_started":
            self.running[stage] = now
            return [self._close(self.maps[u], now) for u in self.upstream.get(stage, ())
                    if u in self.maps and not self.maps[u].closed]
        elif kind == "task_finished":
            self.running.pop(stage, None)
            self.done.add(stage)
        elif kind == "task_failed":
            self.running.pop(stage, None)
            if e.get("level") != "warning":
                self.failed.add(stage)
        elif kind == "task_skipped" and e.get("reason") != "not_selected":
            self.skipped.add(stage)
        return []

    def _batch(self, kind: Any, e: dict[str, Any], now: float) -> list[MapProgress]:
        m = self.maps.get(e["stage"])
        if m is None:
            m = self.maps[e["stage"]] = MapProgress(e["stage"], now)
        if e.get("batches"):
            m.total = int(e["batches"])
        if kind == "task_started":
            m.running += 1
            return []
        if kind == "task_finished":
            m.running = max(0, m.running - 1)
            m.done += 1
            m.cpu_s += float(e.get("cpu_s") or 0.0)
            m.peak = max(m.peak, int(e.get("max_rss_bytes") or 0))
            m.out_bytes += int(e.get("output_bytes") or 0)
            if e.get("transport"):
                m.transports.add(str(e["transport"]))
        elif kind == "task_failed":
            m.running = max(0, m.running - 1)
            if e.get("level") != "warning":
                m.failed += 1
                self.failed.add(m.stage)
        m.ended = now
        if m.total is not None and m.done + m.failed >= m.total and not m.closed:
            return [self._close(m, now)]
        return []

    def _close(self, m: MapProgress, now: float) -> MapProgress:
        m.closed = True  # ``ended`` stays at its last batch's event
        if not m.failed:
            self.done.add(m.stage)
        return m

    def open_maps(self) -> list[MapProgress]:
        return [m for m in self.maps.values() if not m.closed]

    def header(self) -> str:
        running = len(self.running) + sum(1 for m in self.open_maps() if m.running)
        return (
            f"{len(self.done)}/{self.total} done · {running} running · "
            f"{len(self.failed)} failed · {len(self.skipped)} skipped · "
            f"{time.monotonic() - self.started:.1f} s"
        )


def shown_in_quiet(e: dict[str, Any]) -> bool:
    """Quiet mode keeps errors and the final line."""
    return e.get("level") in ("error", "critical") or e.get("event") == "run_finished"


class PlainConsole:
    """Off a terminal: plain lines, a mapped stage's batches summarised."""

    def __init__(self, stream: IO[str], quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.state = RunState()

    def write(self, e: dict[str, Any]) -> None:
        if self.quiet:
            if shown_in_quiet(e):
                self.stream.write(render_console(e))
            return
        closed = self.state.update(e)
        clock = str(e.get("timestamp", ""))[11:19]
        out = [m.line(clock) for m in closed]
        kind = e.get("event")
        if e.get("batch") is not None and kind in ("task_started", "task_finished"):
            m = self.state.maps[e["stage"]]
            if kind == "task_finished" and not m.closed and _milestone(m):
                total = f"/{m.total} ({m.done * 100 // m.total}%)" if m.total else ""
                out.append(f"{clock} … {m.stage}: {m.done}{total} batches done\n")
        elif kind == "run_summary":
            out.append(format_summary(e))
        else:
            out.append(render_console(e))
        self.stream.write("".join(out))

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.flush()


def _milestone(m: MapProgress) -> bool:
    """A line at each tenth of the batches (at each power of ten when the count is unknown)."""
    if m.total:
        step = m.done * 10 // m.total
    else:
        step = len(str(m.done)) - 1 if str(m.done).strip("0") == "1" else 0
    if step > m.announced:
        m.announced = step
        return True
    return False


class LiveView:
    """On a terminal: events scroll above a live status block (see the module docstring)."""

    def __init__(self, stream: IO[str], quiet: bool = False, force_terminal: bool = False) -> None:
        from rich.console import Console
        from rich.live import Live

        self.quiet = quiet
        self.state = RunState()
        self.lock = threading.Lock()  # rich's refresh thread reads the state we update
        self.console = Console(file=stream, force_terminal=force_terminal or None,
                               highlight=False, markup=False, emoji=False)
        self.live = Live(self, console=self.console, refresh_per_second=REFRESH_PER_SECOND,
                         transient=True, redirect_stdout=False, redirect_stderr=False)
        self.live_on = False
        self.pending: list[str] = []  # lines not printed yet (see LINES_EVERY_S)
        self.printed_at = 0.0

    def write(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        if self.quiet:
            if kind == "run_finished":
                self.close()
            if shown_in_quiet(e):
                self._print(render_console(e))
            return
        with self.lock:
            closed = self.state.update(e)
        clock = str(e.get("timestamp", ""))[11:19]
        text = "".join(m.line(clock) for m in closed)
        if kind in ("run_summary", "run_finished"):
            self.close()  # the block goes; what follows stays on screen
        elif not self.live_on:
            self.live.start()
            self.live_on = True
        if kind == "run_summary":
            text += format_summary(e)
        elif kind == "task_started" or e.get("batch") is not None and kind == "task_finished":
            pass  # the block shows these
        else:
            text += render_console(e)
        if text:
            self.pending.append(text)
        if not self.live_on or time.monotonic() - self.printed_at >= LINES_EVERY_S:
            self._print_pending()

    def _print_pending(self) -> None:
        if self.pending:
            text, self.pending = "".join(self.pending), []
            self._print(text)
        self.printed_at = time.monotonic()

    def _print(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(text.rstrip("\n")), soft_wrap=True)

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self.lock:
            now = time.monotonic()
            rows: list[Any] = [Text(self.state.header(), style="bold")]
            running = sorted(self.state.running.items(), key=lambda item: item[1])
            for stage, since in running[:SHOWN_RUNNING]:
                rows.append(Text(f"  ▶ {clean(stage)}  {now - since:.1f} s"))
            if len(running) > SHOWN_RUNNING:
                rows.append(Text(f"  … and {len(running) - SHOWN_RUNNING} more running"))
            maps = self.state.open_maps()[:SHOWN_MAPS]
            if maps:
                grid = Table.grid(padding=(0, 1))
                for m in maps:
                    count = f"{m.done}/{m.total}" if m.total else f"{m.done}"
                    grid.add_row(f"  ▦ {clean(m.stage)}", ProgressBar(total=m.total,
                                 completed=m.done, width=30),
                                 f"{count} batches", f"{now - m.started:.1f} s")
                rows.append(grid)
        return Group(*rows)

    def flush(self) -> None:
        """Print the waiting lines if the last print is old enough.

        The runner flushes before it waits (at most every ``events_flush_s``) and wakes at
        least twice a second while a stage runs, so a line waits half a second at most.
        """
        if self.pending and time.monotonic() - self.printed_at >= LINES_EVERY_S:
            self._print_pending()
        self.console.file.flush()

    def close(self) -> None:
        self._print_pending()
        if self.live_on:
            self.live_on = False
            thread = getattr(self.live, "_refresh_thread", None)
            self.live.stop()
            if thread is not None:  # stop() only asks it to end; no thread outlives the run
                thread.join(timeout=2)
