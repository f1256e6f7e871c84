"""dagrun report: the HTML page in a real headless Chromium, the Chrome trace, the command."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dagrun
from dagrun.cli.main import app
from dagrun.events.history import read_events
from dagrun.report import chrome_trace, render_html

CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium, driven by Playwright without its own browser download or any network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOT_COPY = Path("/tmp/dagrun-report.png")

PIPELINE = textwrap.dedent('''
    """A map, a slow branch, a retried stage and a failing one, joined."""
    import time
    from pathlib import Path

    from dagrun import stage


    @stage
    def source(count: int = 24) -> list:
        return list(range(count))


    @stage(map="source", batch_size=3)
    def squared(source):
        time.sleep(0.01)
        return source * source


    @stage
    def slow(source: list) -> int:
        time.sleep(0.2)
        return len(source)


    @stage(retries=1, retry_delay=0.01)
    def flaky(source: list, marker: str = "") -> int:
        path = Path(marker)
        if not path.exists():
            path.write_text("1")
            raise ConnectionError("first attempt fails")
        return 1


    @stage
    def broken(slow: int) -> int:
        raise ValueError("broken on purpose")


    @stage
    def joined(squared: list, slow: int, flaky: int) -> int:
        return sum(squared) + slow + flaky
''')


@pytest.fixture
def ran(tmp_path: Path) -> tuple[Path, str]:
    """A finished run with every kind of task: (state directory, run id)."""
    path = tmp_path / "pipe.py"
    path.write_text(PIPELINE)
    state = tmp_path / "state"
    with dagrun.run(str(path), state_dir=state, workers=2, keep_going=True, log_format="none",
                    params={"marker": str(tmp_path / "marker")}) as result:
        assert result.status == "failed" and set(result.errors) == {"broken"}
        return state, result.run_id


def attempts(events: list[dict]) -> int:
    """How many task attempts ended (each should be one rectangle, one trace event)."""
    return sum(e["event"] in ("task_finished", "task_failed") for e in events)


@pytest.mark.slow
def test_report_renders_in_chromium(ran: tuple[Path, str], tmp_path: Path):
    """The page loads offline without a console error and draws every task and stage."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: install Debian's chromium (`apt-get install -y "
                    "chromium`, which `make test` tries) to run the report's browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) missing")
    state, run_id = ran
    events = read_events(state / "runs" / run_id / "events.jsonl")
    html = tmp_path / "report.html"
    html.write_text(render_html(events), encoding="utf-8")
    shot = tmp_path / "report.png"
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.as_uri())
            tasks = page.locator("svg#timeline rect[data-task]").count()
            nodes = page.locator("svg#graph g[data-node]").count()
            failed = page.locator("rect[data-status=failed] title").first.text_content()
            retried = page.locator("rect[data-status=retried]").count()
            rows = page.locator("table#stages tr").count()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert requests == [html.as_uri()]  # self-contained: nothing else is fetched
    assert tasks == attempts(events) > 10
    assert nodes == 6 and rows == 1 + 6
    assert "ValueError: broken on purpose" in (failed or "")
    assert retried == 1
    assert shot.stat().st_size > 10_000
    shutil.copyfile(shot, SCREENSHOT_COPY)


@pytest.mark.slow
def test_trace_has_a_complete_event_per_task(ran: tuple[Path, str]):
    """Each task attempt is an "X" event in microseconds on its worker's pid and tid."""
    state, run_id = ran
    events = read_events(state / "runs" / run_id / "events.jsonl")
    trace = chrome_trace(events)
    json.dumps(trace)  # serialisable as it is
    complete = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == attempts(events)
    pids = {e["worker_pid"] for e in events if e["event"] == "task_started"}
    assert {e["pid"] for e in complete} == pids and all(e["tid"] == e["pid"] for e in complete)
    names = {e["pid"]: e["args"]["name"] for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "process_name"}
    assert set(names) == pids
    slow = next(e for e in complete if e["name"] == "slow")
    assert slow["dur"] >= 200_000 and slow["ts"] >= 0  # microseconds: it slept 0.2 s
    assert slow["args"]["wall_s"] > 0.2 and slow["args"]["transport"]
    assert {e["cat"] for e in complete} == {"succeeded", "failed", "retried"}


@pytest.mark.slow
def test_report_command_writes_html_and_trace(ran: tuple[Path, str], tmp_path: Path):
    """``dagrun report PREFIX -o FILE --trace FILE`` writes both files and names them."""
    state, run_id = ran
    out, trace = tmp_path / "r.html", tmp_path / "t.json"
    result = CliRunner().invoke(app, ["report", run_id[:18], "--state-dir", str(state),
                                      "-o", str(out), "--trace", str(trace)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and f"wrote {trace}" in result.output
    assert out.read_text().startswith("<!DOCTYPE html>") and run_id in out.read_text()
    assert json.loads(trace.read_text())["traceEvents"]


@pytest.mark.slow
def test_report_command_defaults_to_the_latest_run(ran: tuple[Path, str]):
    """With no run id the latest run's report goes into its own directory."""
    state, run_id = ran
    result = CliRunner().invoke(app, ["report", "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    assert (state / "runs" / run_id / "report.html").exists()


@pytest.mark.slow
def test_report_from_a_copied_run_directory(ran: tuple[Path, str], tmp_path: Path):
    """A run directory copied elsewhere makes the same report: only events.jsonl is read."""
    state, run_id = ran
    copy = tmp_path / "elsewhere" / run_id
    shutil.copytree(state / "runs" / run_id, copy)
    out = tmp_path / "copy.html"
    result = CliRunner().invoke(app, ["report", str(copy), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().count("data-task=") == attempts(read_events(copy / "events.jsonl"))


@pytest.mark.slow
def test_unknown_and_ambiguous_run_ids_are_usage_errors(ran: tuple[Path, str]):
    """An id that matches no run, or several, exits 2 and says what to do."""
    state, run_id = ran
    shutil.copytree(state / "runs" / run_id, state / "runs" / (run_id + "x"))
    unknown = CliRunner().invoke(app, ["report", "nosuchrun", "--state-dir", str(state)])
    assert unknown.exit_code == 2 and "dagrun runs" in unknown.output
    ambiguous = CliRunner().invoke(app, ["report", run_id[:8], "--state-dir", str(state)])
    assert ambiguous.exit_code == 2 and "ambiguous" in ambiguous.output
    empty = CliRunner().invoke(app, ["report", "--state-dir", str(state / "none")])
    assert empty.exit_code == 2 and "no runs" in empty.output


def test_event_text_is_escaped():
    """An error message is shown as text, never as markup."""
    events = [
        {"event": "run_started", "timestamp": "2024-01-01T00:00:00.000000Z", "level": "info",
         "run_id": "r", "pipeline": "p<i>", "stages": 1, "workers": 1, "edges": []},
        {"event": "task_started", "timestamp": "2024-01-01T00:00:01.000000Z", "level": "info",
         "run_id": "r", "stage": "s", "attempt": 1, "worker_pid": 5},
        {"event": "task_failed", "timestamp": "2024-01-01T00:00:02.000000Z", "level": "error",
         "run_id": "r", "stage": "s", "attempt": 1, "error_type": "E",
         "error": "<script>alert(1)</script>", "traceback": "<b>tb</b>"},
    ]
    page = render_html(events)
    assert "<script>" not in page and "<b>tb</b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
