"""Cron expressions, zones and the catch-up decision: pure functions, no clock inside.

Fire times are computed by ``cronsim`` in the schedule's zone and handed out
as UTC instants, strictly increasing: the scheduler's loop, its state file
and its comparisons all stay in UTC, so a daylight-saving change can neither
repeat a tick nor make one vanish. ``cronsim`` follows Debian cron for jobs at
a fixed time: a 02:30 daily job fires once when clocks fall back (at the first
02:30) and at 03:00 when 02:30 does not exist (clocks spring forward).

The catch-up decision looks at the ticks that passed since the last one
handled (oldest first). The newest tick is *current* when it came while the
scheduler was idle (waiting for it); every other tick was *missed*, either
while a run was going on or while the scheduler was not running. Policies:

    none   run the current tick; skip every missed one
    last   run the current tick, or else the newest missed one; skip the rest
    all    run every tick, oldest first
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..errors import UsageError
from ..settings import Environment

POLICIES = ("none", "last", "all")
# When more ticks than this passed (a per-second schedule stopped for a day), only the
# newest are listed; the older ones are counted and reported in one event.
MAX_TICKS = 1000


@dataclass(frozen=True)
class Cron:
    """A validated cron expression and the zone its fields are read in."""

    expr: str
    zone: tzinfo
    zone_name: str

    def local(self, instant: datetime) -> datetime:
        """``instant`` as a wall-clock time in the schedule's zone."""
        return instant.astimezone(self.zone)


@dataclass(frozen=True)
class TickDecision:
    """What the scheduler does with one tick: ``run`` or ``skip``, and why."""

    due: datetime  # UTC instant
    decision: str
    reason: str


def parse_zone(name: str | None) -> tuple[tzinfo, str]:
    """The zone called ``name`` (an IANA name such as ``Europe/Paris``), or the local zone."""
    if name is None:
        return local_zone()
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError, OSError):
        msg = (
            f"--tz {name!r} is not a known time zone; give an IANA zone name such as "
            f"'Europe/Paris', 'America/New_York' or 'UTC' (they are listed in /usr/share/zoneinfo)"
        )
        raise UsageError(msg) from None


def local_zone() -> tuple[tzinfo, str]:
    """This machine's zone with its daylight-saving rules (``$TZ``, else ``/etc/localtime``)."""
    name = Environment.read().tz
    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    link = Path("/etc/localtime")
    try:
        target = str(link.resolve())
        if "zoneinfo/" in target:
            key = target.split("zoneinfo/", 1)[1]
            return ZoneInfo(key), key
        with open(link, "rb") as f:
            return ZoneInfo.from_file(f, key="localtime"), "localtime"
    except (OSError, ValueError, ZoneInfoNotFoundError):
        return UTC, "UTC"


def parse_cron(expr: str, tz: str | None = None) -> Cron:
    """Validate ``expr`` (5 fields, or 6 with seconds first) in zone ``tz``."""
    zone, zone_name = parse_zone(tz)
    cron = Cron(" ".join(expr.split()), zone, zone_name)
    try:
        next(iter(CronSim(cron.expr, datetime(2000, 1, 1, tzinfo=zone))))
    except (CronSimError, StopIteration) as exc:
        detail = str(exc) or "it never fires"
        msg = (
            f"--cron {expr!r} is not a valid cron expression ({detail}); write five fields, "
            f"'MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK', e.g. '30 2 * * *' for 02:30 daily "
            f"or '*/15 * * * *' every 15 minutes (a sixth field in front gives seconds)"
        )
        raise UsageError(msg) from None
    return cron


def fire_times(cron: Cron, after: datetime) -> Iterator[datetime]:
    """Every fire time strictly after the instant ``after``, as UTC instants, in order."""
    last = after.astimezone(UTC)
    for local in CronSim(cron.expr, after.astimezone(cron.zone)):
        instant = local.astimezone(UTC)
        # cronsim reads a fixed-time job's clock naively, so resuming inside a repeated
        # hour can yield the first occurrence again: an instant already past is dropped.
        if instant > last:
            last = instant
            yield instant


def next_fire(cron: Cron, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (a UTC instant)."""
    return next(fire_times(cron, after))


def next_fires(cron: Cron, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after`` (UTC instants)."""
    times = fire_times(cron, after)
    return [next(times) for _ in range(count)]


def ticks_between(
    cron: Cron, after: datetime, until: datetime, limit: int = MAX_TICKS
) -> tuple[list[datetime], int]:
    """Fire times in ``(after, until]``: the newest ``limit``, and how many were dropped."""
    kept: deque[datetime] = deque(maxlen=limit)
    total = 0
    for instant in fire_times(cron, after):
        if instant > until:
            break
        kept.append(instant)
        total += 1
    return list(kept), total - len(kept)


def decide(
    ticks: list[datetime], idle_since: datetime, started: datetime, policy: str
) -> list[TickDecision]:
    """Run or skip each tick (oldest first) under ``policy``; see the module docstring."""
    if policy not in POLICIES:
        msg = f"--catch-up {policy!r} is not a policy; choose one of: {', '.join(POLICIES)}"
        raise UsageError(msg)
    if not ticks:
        return []
    current = ticks[-1] if ticks[-1] >= idle_since else None
    newest_missed = ticks[-1] if current is None else None
    out = []
    for due in ticks:
        if due == current:
            out.append(TickDecision(due, "run", "due"))
            continue
        why = "missed: the scheduler was not running" if due < started else (
            "missed: a run was still going on"
        )
        if policy == "all":
            out.append(TickDecision(due, "run", f"{why}; caught up (catch-up all)"))
        elif policy == "last" and due == newest_missed:
            out.append(TickDecision(due, "run", f"{why}; the newest missed tick is caught up "
                                                "(catch-up last)"))
        elif policy == "last":
            out.append(TickDecision(due, "skip", f"{why}; a later tick runs instead "
                                                 "(catch-up last)"))
        else:
            out.append(TickDecision(due, "skip", f"{why}; not caught up (catch-up none)"))
    return out
