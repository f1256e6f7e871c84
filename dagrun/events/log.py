"""Structured events: one structlog-compatible log per run, a file and a console.

Every event is a dict with ``event``, ``timestamp`` (ISO 8601, UTC),
``level`` and ``run_id`` plus the fields of SPEC section 5. The runner's own
events are built in one pass by ``EventLog.emit`` (the dict, ``_Stamp``'s
level and time, then the sinks): going through structlog's bound-logger
machinery cost several µs an event, and importing structlog costs more than
starting the pool, so a run does neither. ``EventLog.logger`` is the same
log as a structlog logger (``structlog.wrap_logger`` over this object with
``_Stamp`` as its one processor, so an application's own structlog
configuration is left alone), built on first use for code that logs into the
run's events through structlog. Either way each event reaches ``_write``,
which

- writes it as a JSON line (orjson) to ``events.jsonl``, block-buffered and
  flushed when the runner is about to wait, at most every
  ``events_flush_s`` (20 ms) while tasks end in quick succession and at
  once when the run goes quiet: the file is current whenever nothing is
  happening, and a burst of events costs one write;
- hands it to the console: the same JSON line (``log_format="json"``, stdout
  then carries JSON lines only), or a ``console.PlainConsole`` (off a
  terminal) or ``console.LiveView`` (on one) for people. ``quiet`` keeps
  errors and the final line only.

``lines.render_console`` is the one place an event becomes a human-readable line.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

_JSON_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
# Keys other than strings (in a parameter dict, say): a third slower, so only when needed.
_ANY_KEYS = _JSON_OPTIONS | orjson.OPT_NON_STR_KEYS


class Console(Protocol):
    """Where events go for people: ``console.PlainConsole`` or ``console.LiveView``."""

    def write(self, event: dict[str, Any]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class _JsonConsole:
    """JSON lines on the console, written together at each ``flush``: one write per
    wake of the runner, not one per event (an unbuffered stdout, ``PYTHONUNBUFFERED``,
    would otherwise wake whatever reads it once per event).

    The lines are copied into one buffer allocated once. Keeping each encoded line
    until the flush instead has the allocator hand out fresh memory for each new
    line while the burst lasts: up to two page faults (about 5 µs here) per event.
    """

    SIZE = 1 << 16

    def __init__(self, stream: IO[str], quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet
        self.buffer = bytearray(self.SIZE)
        self.used = 0

    def write_line(self, event: dict[str, Any], line: bytes) -> None:
        if self.quiet:
            from .console import shown_in_quiet

            if not shown_in_quiet(event):
                return
        end = self.used + len(line)
        if end > self.SIZE:
            self._drain()
            if len(line) > self.SIZE:
                self.stream.write(line.decode())
                return
            end = len(line)
        self.buffer[self.used:end] = line  # same size: copied in place
        self.used = end

    def flush(self) -> None:
        self._drain()
        self.stream.flush()

    def _drain(self) -> None:
        if self.used:
            with memoryview(self.buffer) as view:
                self.stream.write(str(view[:self.used], "utf-8"))
            self.used = 0

    def close(self) -> None:
        self.flush()


class _Stamp:
    """The one processor: stamps the level and a UTC timestamp, in place.

    The bound context already holds ``event``, ``timestamp``, ``level`` and
    ``run_id`` in that order, so the common fields lead every line at no cost.
    """

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""
        self.last = 0  # the latest stamp, in microseconds since the epoch

    def __call__(self, _: Any, level: str, event: dict[str, Any]) -> Any:
        event["timestamp"] = self.now()
        event["level"] = level
        return (event,), {}

    def now(self) -> str:
        """The current UTC time, ISO 8601 with microseconds."""
        micros = self.last = time.time_ns() // 1000
        second = micros // 1_000_000
        if second != self.second:  # strftime once a second: the rest is string work
            self.second = second
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        return "%s%06dZ" % (self.prefix, micros - second * 1_000_000)  # noqa: UP031 - twice as fast


class EventLog:
    """Writes a run's events; ``emit`` is the only entry point.

    ``log_format`` is ``console`` (live view on a terminal, plain lines
    elsewhere), ``json`` or ``none`` (the file only). ``live`` forces the
    live view on or off (default: on when ``console`` is a terminal).
    """

    def __init__(
        self,
        run_id: str,
        path: Path,
        *,
        log_format: str = "console",
        console: IO[str] | None = None,
        quiet: bool = False,
        live: bool | None = None,
    ) -> None:
        self.run_id = run_id
        self.path = path
        # 64 KiB: the events of a flush interval's burst (about 200) go in one or two writes.
        self._file = open(path, "ab", buffering=1 << 16)  # noqa: SIM115 - closed in close()
        stream = console if console is not None else sys.stdout
        self._json: _JsonConsole | None = None
        self._console: Console | None = None
        if log_format == "json":
            self._json = _JsonConsole(stream, quiet)
        elif log_format != "none":
            from .console import LiveView, PlainConsole

            if live if live is not None else _is_terminal(stream):
                self._console = LiveView(stream, quiet, force_terminal=bool(live))
            else:
                self._console = PlainConsole(stream, quiet)
        self._stamp = _Stamp()
        self._closed = False

    @property
    def last_time(self) -> float:
        """When the latest event was stamped, in seconds since the epoch (its timestamp)."""
        return self._stamp.last / 1e6

    def emit(self, event: str, level: str = "info", **fields: Any) -> None:
        """Write one event now."""
        self._write({"event": event, "timestamp": self._stamp.now(), "level": level,
                     "run_id": self.run_id, **fields})

    def stamp(self) -> str:
        """The timestamp of an event made now (``last_time`` is then its time)."""
        return self._stamp.now()

    def put(self, record: dict[str, Any]) -> None:
        """Write an event that carries the common fields itself (``stamp`` gives its time)."""
        self._write(record)

    def write(self, event: str, fields: dict[str, Any], level: str = "info") -> None:
        """``emit`` for fields already in a dict of their own, which becomes the event's."""
        record = {"event": event, "timestamp": self._stamp.now(), "level": level,
                  "run_id": self.run_id}
        record.update(fields)
        self._write(record)

    @functools.cached_property
    def logger(self) -> Any:
        """This log as a structlog ``BoundLogger``: ``log.logger.info("name", **fields)``."""
        import structlog

        return structlog.wrap_logger(
            self, processors=[self._stamp], wrapper_class=structlog.BoundLogger,
            context_class=dict,
        ).bind(event=None, timestamp=None, level=None, run_id=self.run_id)  # bound once

    def _write(self, event: dict[str, Any]) -> None:
        line = encode(event)
        self._file.write(line)
        if self._json is not None:
            self._json.write_line(event, line)
        elif self._console is not None:
            self._console.write(event)

    info = warning = error = debug = critical = msg = _write

    def flush(self) -> None:
        """Push every event written so far to the file and the console."""
        self._file.flush()
        sink = self._json or self._console
        if sink is not None:
            sink.flush()

    def close(self) -> None:
        """Flush, stop the live view and close the file (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            sink = self._json or self._console
            if sink is not None:
                sink.close()
        finally:
            self._file.close()


def encode(event: dict[str, Any]) -> bytes:
    """One JSON line (orjson; the standard library for what orjson refuses, e.g. huge ints)."""
    try:
        return orjson.dumps(event, default=str, option=_JSON_OPTIONS)
    except TypeError:
        pass
    try:
        return orjson.dumps(event, default=str, option=_ANY_KEYS)
    except TypeError:
        return (json.dumps(event, default=str, separators=(",", ":")) + "\n").encode()


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False
