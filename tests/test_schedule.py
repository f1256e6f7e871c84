"""The schedule's pure logic: cron parsing, fire times across time-zone changes, catch-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dagrun.errors import UsageError
from dagrun.jobs.cron import TickDecision, decide, fire_times, next_fires, parse_cron, ticks_between

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_daily_0230_fires_once_when_clocks_fall_back():
    """A 02:30 daily job in Paris fires once on the day 02:30 happens twice."""
    cron = parse_cron("30 2 * * *", "Europe/Paris")
    fires = next_fires(cron, datetime(2026, 10, 24, tzinfo=UTC), 3)
    assert [cron.local(f).isoformat() for f in fires] == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]


def test_daily_0230_fires_at_0300_when_0230_does_not_exist():
    """The day clocks spring forward, a 02:30 job fires at 03:00 (once)."""
    cron = parse_cron("30 2 * * *", "Europe/Paris")
    fires = next_fires(cron, datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert [cron.local(f).isoformat() for f in fires] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_resuming_inside_a_repeated_hour_does_not_repeat_a_tick():
    """Resuming after the first 02:30 but inside the second 02:00 hour skips to the next day."""
    cron = parse_cron("30 2 * * *", "Europe/Paris")
    first = next_fires(cron, datetime(2026, 10, 24, 12, tzinfo=UTC), 1)[0]  # 00:30 UTC
    resumed = next_fires(cron, first + timedelta(minutes=45), 1)[0]  # 02:15 CET, second pass
    assert resumed == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "tz", "message"),
    [
        ("61 * * * *", None, "Bad minute"),
        ("* * *", None, "Wrong number of fields"),
        ("0 0 30 2 *", None, "Bad day-of-month"),
        ("* * * * *", "Mars/Olympus", "not a known time zone"),
    ],
)
def test_bad_cron_or_zone_is_a_usage_error(expr, tz, message):
    """A bad expression or zone is a UsageError that says what to write instead."""
    with pytest.raises(UsageError, match=message) as info:
        parse_cron(expr, tz)
    assert "e.g." in str(info.value) or "IANA" in str(info.value)


def test_ticks_between_keeps_the_newest_and_counts_the_rest():
    """Past the cap only the newest ticks are listed; the dropped ones are counted."""
    cron = parse_cron("* * * * * *", "UTC")
    ticks, dropped = ticks_between(cron, at(0), at(5), limit=3)
    assert ticks == [at(3), at(4), at(5)] and dropped == 2


def test_decide_on_time_tick_runs():
    """A tick that came while the scheduler waited runs, with reason 'due'."""
    assert decide([at(10)], idle_since=at(5), started=at(0), policy="last") == [
        TickDecision(at(10), "run", "due")
    ]


def test_decide_last_runs_the_current_tick_and_skips_missed_ones():
    """Under 'last', ticks missed during a run are skipped when a current tick exists."""
    out = decide([at(1), at(2), at(3)], idle_since=at(2.5), started=at(0), policy="last")
    assert [(d.due, d.decision) for d in out] == [(at(1), "skip"), (at(2), "skip"),
                                                  (at(3), "run")]
    assert "a run was still going on" in out[0].reason and "later tick" in out[0].reason


def test_decide_last_catches_up_the_newest_missed_tick():
    """Under 'last' with no current tick, the newest missed tick runs."""
    out = decide([at(1), at(2)], idle_since=at(2.5), started=at(0), policy="last")
    assert [d.decision for d in out] == ["skip", "run"]
    assert "newest missed tick is caught up" in out[1].reason


def test_decide_none_skips_every_missed_tick():
    """Under 'none', missed ticks are skipped, and those before start say so."""
    out = decide([at(-2), at(1), at(2)], idle_since=at(2.5), started=at(0), policy="none")
    assert [d.decision for d in out] == ["skip", "skip", "skip"]
    assert "not running" in out[0].reason and "still going on" in out[1].reason


def test_decide_all_runs_every_tick_in_order():
    """Under 'all', every tick runs, oldest first."""
    out = decide([at(1), at(2), at(3)], idle_since=at(2.5), started=at(0), policy="all")
    assert [(d.due, d.decision) for d in out] == [(at(1), "run"), (at(2), "run"), (at(3), "run")]
    assert out[-1].reason == "due" and "caught up (catch-up all)" in out[0].reason


def test_decide_rejects_an_unknown_policy():
    """An unknown catch-up policy is a UsageError naming the choices."""
    with pytest.raises(UsageError, match="none, last, all"):
        decide([at(1)], idle_since=at(0), started=at(0), policy="some")


ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
         "Asia/Kolkata", "UTC"]
EXPRS = ["30 2 * * *", "0 * * * *", "*/20 * * * *", "15 1,2,3 * * *", "0 0 * * 0"]


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    expr=st.sampled_from(EXPRS),
    start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31),
                       timezones=st.just(UTC)),
)
def test_fire_times_exist_and_never_repeat(zone, expr, start):
    """Over DST changes in several zones, each fire time exists and none repeats."""
    cron = parse_cron(expr, zone)
    times = next_fires(cron, start, 40)
    assert all(a < b for a, b in zip(times, times[1:], strict=False))  # strictly increasing
    assert times[0] > start
    tz = ZoneInfo(zone)
    for instant in times:
        local = instant.astimezone(tz)
        # the wall-clock time exists: it survives a round trip through UTC
        naive = local.replace(tzinfo=None)
        assert naive.replace(tzinfo=tz, fold=local.fold).astimezone(UTC) == instant
    # resuming from any fire time continues the same sequence
    middle = len(times) // 2
    assert next_fires(cron, times[middle], 5) == times[middle + 1:middle + 6]


def test_fire_times_is_lazy_and_strictly_after():
    """fire_times starts strictly after the given instant."""
    cron = parse_cron("* * * * * *", "UTC")
    gen = fire_times(cron, at(0))
    assert next(gen) == at(1)
