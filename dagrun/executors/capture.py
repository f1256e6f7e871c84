"""What a stage prints or logs, turned into one record per line (``TaskLog`` events).

A record is ``(stream, level, message)``: ``stream`` is ``stdout``,
``stderr``, ``logging`` or ``structlog``; ``message`` is one line. Where the
lines come from:

    print / sys.stdout.write ──▶ LineWriter("stdout") ─┐
    sys.stderr.write ──────────▶ LineWriter("stderr") ─┤
    logging (root handler) ────▶ RecordHandler ────────┼──▶ emit(stream, level, line)
    warnings.warn ─────────────▶ show_warning ─────────┤
    structlog (global config) ─▶ _StructlogLogger ─────┘
    C code, subprocesses ──▶ fd 1 / fd 2 (raw bytes) ──▶ Lines (split in the driver)

In a worker process (``install``) ``emit`` writes each record at once to the
worker's result pipe (``encode``), so records and the task's outcome travel
through one ordered channel, and a worker that dies has already delivered
every complete line; fd 1 and fd 2 are pipes the driver reads itself
(``Lines``), drained before a task's outcome or a worker's death is handled.
Inline (``captured``), the same writers are installed only while the task
runs and give their records to a list; the driver's own logging and
structlog configuration are left as they are (a handler is added to the
root logger for the task's duration, structlog is configured only when the
application has not configured it). Raw fd output is not captured inline.

A line without its newline is delivered when the task ends (``flush``), not
when the stage flushes; a carriage return starts a line over, as on a
terminal, so a progress bar gives its last state rather than every redraw.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from ..settings import tuning

Emit = Callable[[str, str, str], None]  # (stream, level, message)

STREAMS = ("stdout", "stderr", "logging", "structlog")
LEVELS = {"stdout": "info", "stderr": "warning"}  # raw streams carry no level of their own
# Stage loggers at INFO are shown unless the application set the root level itself
# (Python's default WARNING would drop the progress messages users log).
WORKER_LOG_LEVEL = logging.INFO
_TAG = b"L"  # first byte of a record on the result pipe (a pickle starts with 0x80)
_SEP = "\x1f"


def clip(line: str) -> str:
    """``line`` cut to the tuning's ``max_line_chars``, saying how much was left out."""
    most = tuning().max_line_chars
    if len(line) <= most:
        return line
    return f"{line[:most]}… ({len(line) - most} more characters)"


def encode(stream: str, level: str, message: str) -> bytes:
    """A record as one message of the worker's result pipe."""
    return _TAG + f"{STREAMS.index(stream)}{level}{_SEP}{message}".encode("utf-8", "replace")


def is_record(data: bytes) -> bool:
    return data[:1] == _TAG


def decode(data: bytes) -> tuple[str, str, str]:
    """``(stream, level, message)`` of a message ``encode`` made."""
    text = data[1:].decode("utf-8", "replace")
    head, _, message = text.partition(_SEP)
    return STREAMS[int(head[0])], head[1:], message


class LineWriter(io.TextIOBase):
    """A text stream that emits one record per complete line (``sys.stdout``'s stand-in)."""

    def __init__(self, emit: Emit, stream: str, fd: int | None = None) -> None:
        super().__init__()
        self._emit = emit
        self._stream = stream
        self._level = LEVELS[stream]
        self._fd = fd
        self._partial = ""
        self._lock = threading.Lock()
        self._buffer: Any = None

    encoding = "utf-8"
    errors = "replace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self._fd is None:
            raise io.UnsupportedOperation("fileno")
        return self._fd

    @property
    def buffer(self) -> Any:
        """Bytes written here go to the raw fd (read by the driver as raw output)."""
        if self._buffer is None:
            if self._fd is None:
                raise AttributeError("buffer")
            self._buffer = open(self._fd, "wb", closefd=False)  # noqa: SIM115 - lives with us
        return self._buffer

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            msg = f"write() argument must be str, not {type(text).__name__}"
            raise TypeError(msg)
        with self._lock:
            if "\n" not in text:
                self._partial = _last_state(self._partial + text)
                if len(self._partial) <= tuning().max_line_chars:
                    return len(text)
                text, self._partial = self._partial + "\n", ""
            *lines, rest = (self._partial + text).split("\n")
            self._partial = _last_state(rest)
        for line in lines:
            self._emit(self._stream, self._level, clip(_shown(line)))
        return len(text)

    def flush(self) -> None:
        """Flush the raw buffer; a line without its newline waits for ``end_line``."""
        if self._buffer is not None:
            try:
                self._buffer.flush()
            except (OSError, ValueError):
                pass

    def end_line(self) -> None:
        """The task ended: deliver the line still without its newline."""
        if self._partial:  # most tasks end on a newline, or print nothing
            with self._lock:
                rest, self._partial = self._partial, ""
            if rest:
                self._emit(self._stream, self._level, clip(_shown(rest)))
        self.flush()


def _shown(line: str) -> str:
    """What a terminal would show of ``line``: a carriage return starts it over."""
    line = line.rstrip("\r")
    return line.rsplit("\r", 1)[-1] if "\r" in line else line


def _last_state(partial: str) -> str:
    """A progress bar redraws its line after ``\\r``: only its last state is kept."""
    cut = partial.rstrip("\r").rfind("\r")
    return partial[cut + 1:] if cut >= 0 else partial


class RecordHandler(logging.Handler):
    """A logging handler that emits each record's lines (traceback included)."""

    def __init__(self, emit: Emit) -> None:
        super().__init__(logging.NOTSET)
        self._emit = emit
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - a bad format string must not fail the stage
            text = f"{record.msg!r} (the log message could not be formatted)"
        for line in text.splitlines() or [""]:
            self._emit("logging", record.levelname.lower(), clip(line))


def show_warning(emit: Emit) -> Callable[..., None]:
    """A ``warnings.showwarning`` that emits one ``logging`` record at level warning."""

    def show(message: Any, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        emit("logging", "warning", clip(f"{category.__name__}: {message} ({filename}:{lineno})"))

    return show


class _StructlogLogger:
    """structlog's final logger: each rendered event becomes ``structlog`` records."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit

    def _log(self, level: str) -> Callable[[str], None]:
        def log(message: str) -> None:
            for line in str(message).splitlines() or [""]:
                self._emit("structlog", level, clip(line))

        return log

    def __getattr__(self, name: str) -> Callable[[str], None]:
        level = {"msg": "info", "warn": "warning", "exception": "error", "fatal": "critical"}.get(
            name, name)
        return self._log(level)


def _render(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
    text = str(event.pop("event", ""))
    event.pop("level", None)
    extra = " ".join(f"{k}={v!r}" for k, v in event.items())
    return f"{text} {extra}" if extra else text


def configure_structlog(emit: Emit) -> None:
    """Point structlog's global configuration at ``emit`` (in a worker, or inline for a task)."""
    import structlog

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            _render,
        ],
        logger_factory=lambda *args: _StructlogLogger(emit),
        cache_logger_on_first_use=False,
    )


def install(emit: Emit) -> None:
    """In a worker process: every stream, the root logger, warnings and structlog go to ``emit``.

    fd 1 and fd 2 must already be the pipes the driver reads. Handlers the
    worker inherited from the driver (under fork) are replaced: they would
    write the stage's records to the driver's files.
    """
    sys.stdout = LineWriter(emit, "stdout", 1)
    sys.stderr = LineWriter(emit, "stderr", 2)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(RecordHandler(emit))
    if root.level == logging.WARNING:
        root.setLevel(WORKER_LOG_LEVEL)
    warnings.showwarning = show_warning(emit)
    global _worker_emit
    _worker_emit = emit
    if "structlog" in sys.modules:  # inherited (fork) with the driver's configuration
        configure_structlog(emit)
        _worker_emit = None


_worker_emit: Emit | None = None  # set until structlog is configured in this worker


def task_starts() -> None:
    """In a worker, before each task: route structlog here once the stages imported it.

    structlog is not imported for stages that do not use it (it costs a spawned
    worker 0.1 s); a configuration the pipeline's module made itself is kept.
    """
    global _worker_emit
    if _worker_emit is None:
        return
    structlog = sys.modules.get("structlog")
    if structlog is None:
        return
    if not structlog.is_configured():
        configure_structlog(_worker_emit)
    _worker_emit = None


def flush() -> None:
    """End of a task: deliver lines still without their newline."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if isinstance(stream, LineWriter):
                stream.end_line()
            else:
                stream.flush()
        except Exception:  # noqa: BLE001, S110 - a stage's own stream that cannot flush
            pass


@contextlib.contextmanager
def captured(emit: Emit) -> Iterator[None]:
    """Inline: while the block runs, Python-level output and logs go to ``emit``."""
    out, err = LineWriter(emit, "stdout"), LineWriter(emit, "stderr")
    root = logging.getLogger()
    handler = RecordHandler(emit)
    level = root.level
    unconfigured = not root.handlers
    structlog = sys.modules.get("structlog")
    own_structlog = structlog is not None and not structlog.is_configured()
    root.addHandler(handler)
    if unconfigured and level == logging.WARNING:
        root.setLevel(WORKER_LOG_LEVEL)
    if own_structlog:
        configure_structlog(emit)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.showwarning = show_warning(emit)
            yield
    finally:
        out.end_line()
        err.end_line()
        root.removeHandler(handler)
        root.setLevel(level)
        if own_structlog and structlog is not None:
            structlog.reset_defaults()


class Lines:
    """Raw bytes of fd 1 or fd 2, split into lines in the driver."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.level = LEVELS[stream]
        self._partial = b""

    def feed(self, data: bytes) -> list[str]:
        """The complete lines ``data`` finishes (a line past the size cap is cut there)."""
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > tuning().max_line_chars * 4:  # no newline in sight: deliver it
            lines.append(self._partial)
            self._partial = b""
        return [clip(_shown(line.decode("utf-8", "replace"))) for line in lines]

    def rest(self) -> list[str]:
        """The line still without its newline, if any (a task ended, or its worker died)."""
        rest, self._partial = self._partial, b""
        return [clip(_shown(rest.decode("utf-8", "replace")))] if rest else []
