"""What a failed task reports: an exception described as an ``ErrorInfo``.

The user's traceback is kept with dagrun's own frames trimmed, chained causes
included; a write into a read-only input gets a note saying how to fix it;
the exception itself travels only if it pickles. Describing never raises.
"""

from __future__ import annotations

import pickle
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import ErrorInfo

_PACKAGE = str(Path(__file__).resolve().parent.parent)
# What numpy (and memoryview) say when a write meets a read-only buffer: only
# these, so that a user's own error that merely mentions "read-only" is left alone.
_READ_ONLY_MESSAGES = (
    "assignment destination is read-only",
    "output array is read-only",
    "cannot modify read-only memory",
)
_READ_ONLY_HINT = (
    "inputs are read-only views shared with other stages; copy before writing "
    "(e.g. `arr = arr.copy()`)"
)


def error_info(exc: BaseException, stage: str, kind: str = "raised") -> ErrorInfo:
    """Describe ``exc`` with the user's traceback; keep the exception if it pickles.

    Never raises: an exception whose ``__str__``, ``__repr__`` or notes raise
    is still described (by its type), since a report that fails would turn
    the stage's error into a crash of its worker.
    """
    try:
        return _describe(exc, stage, kind)
    except Exception as inner:  # noqa: BLE001 - reporting an error must never fail
        name = _type_name(exc)
        message = f"<the error could not be described: {type(inner).__name__}>"
        return ErrorInfo(kind, name, message, f"{name}: {message}\n", (name,), None)


def _describe(exc: BaseException, stage: str, kind: str) -> ErrorInfo:
    message = _text(exc)
    if type(exc) in (ValueError, TypeError) and message in _READ_ONLY_MESSAGES:
        exc.add_note(f"stage {stage!r} wrote into one of its inputs: {_READ_ONLY_HINT}")
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        tb = tb.tb_next
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:  # noqa: BLE001 - a broken __str__ deep in the chain
        frames = "".join(traceback.format_tb(tb))
        text = f"Traceback (most recent call last):\n{frames}{_type_name(exc)}: {message}\n"
    notes = getattr(exc, "__notes__", None)
    if notes and isinstance(notes, list):
        notes = [_text(n) for n in notes]
        message = "; ".join([message, *notes]) if message else "; ".join(notes)
    if isinstance(exc, SystemExit):
        message = f"the stage called sys.exit({_text(exc.code, repr)})"
    elif isinstance(exc, KeyboardInterrupt):
        message = "the stage raised KeyboardInterrupt (Ctrl-C is handled by the driver)"
    blob: bytes | None
    try:
        blob = pickle.dumps(exc, protocol=5)
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - an exception that does not pickle is still reported
        blob = None
    names = tuple(f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__)
    return ErrorInfo(kind, _type_name(exc), message, text, names, blob)


def _type_name(exc: BaseException) -> str:
    return str(getattr(type(exc), "__name__", "Exception"))


def _text(value: Any, show: Callable[[Any], str] = str) -> str:
    try:
        return show(value)
    except Exception as inner:  # noqa: BLE001 - the user's __str__ raised
        try:
            detail = f"{type(inner).__name__}: {inner}"
        except Exception:  # noqa: BLE001 - and so did the inner one's
            detail = type(inner).__name__
        return f"<{show.__name__}() of this exception raised {detail}>"
