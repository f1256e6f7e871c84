"""Sizes (``512M``, ``10G``: binary units) and durations (``90s``, ``15m``, ``2h``, ``7d``)."""

from __future__ import annotations

import re

from .errors import UsageError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(text: str | int, what: str = "size") -> int:
    """Bytes in ``text``: a number with an optional binary unit (``512M``, ``10G``)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if match is None:
        msg = f"{what} {text!r} is not a size; write it like 512M, 10G or 1048576"
        raise UsageError(msg)
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


def parse_duration(text: str | float, what: str = "duration") -> float:
    """Seconds in ``text``: a number with an optional unit (``90s``, ``15m``, ``2h``, ``7d``)."""
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(str(text))
    if match is None:
        msg = f"{what} {text!r} is not a duration; write it like 90s, 15m, 2h or 7d"
        raise UsageError(msg)
    return float(match.group(1)) * _DURATION_UNITS[(match.group(2) or "s").lower()]


def format_bytes(n: int) -> str:
    """``n`` bytes for people: 512 B, 3.1 MiB, 2.0 GiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
