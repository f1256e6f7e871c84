"""`dagrun backfill`: one run per logical date, failed dates re-run alone, usage errors."""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import pytest

from dagrun.errors import UsageError
from dagrun.jobs.backfill import dates
from tests.conftest import ROOT, resource

DAGRUN = [sys.executable, "-m", "dagrun"]


def backfill(state_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DAGRUN, "backfill", resource("dated"), *args, "--state-dir", str(state_dir)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )


def outcomes(done: subprocess.CompletedProcess) -> dict[str, str]:
    """ISO date -> status, from the per-date report lines."""
    out = {}
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("backfill 20"):
            day, status = line.split()[1].rstrip(":"), line.split()[2]
            out[day] = status
    return out


def test_dates_are_inclusive_and_forward():
    """The range includes both ends; a reversed one is a usage error that says so."""
    assert dates(date(2026, 2, 27), date(2026, 3, 1)) == [
        date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1)]
    with pytest.raises(UsageError, match="is after --to"):
        dates(date(2026, 3, 2), date(2026, 3, 1))


@pytest.mark.slow
def test_five_days_with_one_failing_then_only_it_reruns(state_dir):
    """Five dates run in order; one fails (exit 1); the next backfill re-runs only that date."""
    first = backfill(state_dir, "--from", "2026-11-01", "--to", "2026-11-05",
                     "-p", "fail_on=2026-11-03")
    assert first.returncode == 1, first.stderr
    assert list(outcomes(first).items()) == [
        ("2026-11-01", "succeeded"), ("2026-11-02", "succeeded"), ("2026-11-03", "failed"),
        ("2026-11-04", "succeeded"), ("2026-11-05", "succeeded")]
    assert "logical date 2026-11-04 (date)" in first.stdout + first.stderr  # the stage saw it
    second = backfill(state_dir, "--from", "2026-11-01", "--to", "2026-11-05")
    assert second.returncode == 0, second.stderr
    assert [d for d, s in outcomes(second).items() if s != "skipped"] == ["2026-11-03"]
    forced = backfill(state_dir, "--from", "2026-11-04", "--to", "2026-11-05", "--force")
    assert set(outcomes(forced).values()) == {"succeeded"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "2026-11-05", "--to", "2026-11-01"), "is after --to"),
        (("--from", "2026-13-01", "--to", "2026-11-01"), "is not a date"),
        (("--from", "yesterday", "--to", "2026-11-01"), "write it as YYYY-MM-DD"),
    ],
)
def test_bad_ranges_exit_2(args, message, state_dir):
    """A reversed range or a bad date exits 2 with one clear paragraph, running nothing."""
    done = backfill(state_dir, *args)
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (state_dir / "runs").exists()
