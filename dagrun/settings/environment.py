"""What the environment says, read here and nowhere else in dagrun."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UsageError
from ..units import parse_size
from .numbers import Tuning


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
