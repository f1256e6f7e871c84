"""What stages print or log becomes ``task_log`` events, in order, before the outcome.

Under every start method (and inline for Python-level output): ``print``
with and without a trailing newline, ``sys.stderr``, raw writes to fd 1 and
fd 2, ``logging``, ``warnings`` and structlog; a worker that dies
(``os._exit``, SIGKILL, a timeout) has its last lines delivered before the
crash's outcome and quoted in its error. Checked at the executor level
(``LocalExecutor``, ``InlineExecutor``) and through ``dagrun.run`` in JSON mode.
"""

from __future__ import annotations

import io
import json
import time

import pytest

import dagrun
from dagrun import store
from dagrun.control.scheduler import TaskKey
from dagrun.executors.base import TaskLog, TaskOutcome, TaskSpec
from dagrun.executors.inline import InlineExecutor
from dagrun.executors.local import LocalExecutor
from tests.conftest import resource
from tests.resources import output

pytestmark = pytest.mark.timeout(60)

METHODS = [pytest.param(m, id=m) for m in ("fork", "forkserver", "spawn")]
STAGES = ["prints", "writes", "logs", "structlogs", "ordered", "exits_after_printing",
          "killed_after_printing", "hangs_after_printing", "quiet"]


def run_tasks(executor_for, names, tmp_path, timeout=None):
    """Submit one task per stage name (one at a time); every event ``wait`` returned."""
    config = store.StoreConfig.for_run("output", tmp_path)
    owner = store.Store(config)
    funcs = {name: getattr(output, name) for name in STAGES}
    exe = executor_for(funcs, config)
    events = []
    try:
        for name in names:
            exe.submit(TaskSpec(TaskKey(name), 1, {}, {}, time.time(), timeout=timeout))
            while not any(isinstance(e, TaskOutcome) and e.key.stage == name for e in events):
                events += exe.wait(10.0)
    finally:
        exe.shutdown()
        owner.close()
    return events


def local(method):
    return lambda funcs, config: LocalExecutor(funcs, config, workers=1, start_method=method)


def lines(events, name, stream=None):
    return [(e.stream, e.level, e.message) for e in events if isinstance(e, TaskLog)
            and e.key.stage == name and (stream is None or e.stream == stream)]


def outcome_of(events, name):
    return next(e for e in events if isinstance(e, TaskOutcome) and e.key.stage == name)


def before_outcome(events, name):
    """Every line of ``name`` comes before its outcome."""
    end = events.index(outcome_of(events, name))
    return all(events.index(e) < end for e in events
               if isinstance(e, TaskLog) and e.key.stage == name)


@pytest.mark.parametrize("method", METHODS)
def test_every_kind_of_output_arrives_before_the_outcome(method, tmp_path):
    """print, stderr, fd 1/2, logging, warnings and structlog: one TaskLog per line, in order."""
    names = ["prints", "writes", "logs", "structlogs", "ordered", "quiet"]
    events = run_tasks(local(method), names, tmp_path)
    for name in names:
        assert outcome_of(events, name).ok, outcome_of(events, name).error
        assert before_outcome(events, name)
    assert lines(events, "prints") == [("stdout", "info", "out one"), ("stdout", "info", "out two"),
                                       ("stdout", "info", "no newline at the end")]
    assert ("stderr", "warning", "err line") in lines(events, "writes")
    assert ("stderr", "warning", "fd two line") in lines(events, "writes")
    assert lines(events, "writes", "stdout") == [("stdout", "info", "fd one line"),
                                                 ("stdout", "info", "fd one without newline")]
    logged = lines(events, "logs")
    assert logged[:3] == [("logging", "info", "logged info"),
                          ("logging", "warning", "logged warning"),
                          ("logging", "warning", "second line")]
    assert logged[3][:2] == ("logging", "warning")
    assert logged[3][2].startswith("UserWarning: careful now (") and len(logged) == 4
    assert lines(events, "structlogs") == [("structlog", "info", "struct event rows=5"),
                                           ("structlog", "error", "struct failure")]
    expected = [m for i in range(5) for m in (("stdout", "info", f"print {i}"),
                                              ("logging", "warning", f"log {i}"))]
    assert lines(events, "ordered") == expected
    assert lines(events, "quiet") == []
    worker = outcome_of(events, "prints").metrics.worker_pid
    assert {e.worker for e in events if isinstance(e, TaskLog)} <= {worker} | {
        outcome_of(events, n).metrics.worker_pid for n in names}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("name", "said", "how"),
    [
        pytest.param("exits_after_printing", "before exit", "exited with code 3", id="os_exit"),
        pytest.param("killed_after_printing", "before kill", "killed by SIGKILL", id="sigkill"),
    ],
)
def test_a_dying_worker_delivers_its_last_lines(method, name, said, how, tmp_path):
    """The lines a worker wrote before dying come first, and end its crash's error."""
    events = run_tasks(local(method), [name], tmp_path)
    outcome = outcome_of(events, name)
    assert outcome.error is not None and outcome.error.error_type == "WorkerCrashed"
    assert before_outcome(events, name)
    got = {message for _, _, message in lines(events, name)}
    assert got == {f"last words {said}", f"raw words {said}"}
    assert how in outcome.error.message
    assert "its last output:\n  " in outcome.error.message
    assert f"last words {said}" in outcome.error.message


@pytest.mark.slow
def test_a_timed_out_task_delivers_its_last_lines(tmp_path):
    """A task stopped at its timeout still reports what it printed, also in its error."""
    events = run_tasks(local("fork"), ["hangs_after_printing"], tmp_path, timeout=1.0)
    outcome = outcome_of(events, "hangs_after_printing")
    assert outcome.error is not None and outcome.error.error_type == "StageTimeout"
    assert lines(events, "hangs_after_printing") == [
        ("stdout", "info", "last words before the timeout")]
    assert "last words before the timeout" in outcome.error.message


def test_inline_captures_python_level_output(tmp_path, capsys):
    """Inline, print, stderr, logging, warnings and structlog become TaskLogs, not driver output."""
    names = ["prints", "logs", "structlogs", "ordered"]
    events = run_tasks(lambda funcs, config: InlineExecutor(funcs, config), names, tmp_path)
    assert lines(events, "prints") == [("stdout", "info", "out one"), ("stdout", "info", "out two"),
                                       ("stdout", "info", "no newline at the end")]
    # pytest configured the root logger (WARNING): inline keeps the driver's levels.
    assert [m for _, _, m in lines(events, "logs")][:2] == ["logged warning", "second line"]
    assert lines(events, "structlogs")[0] == ("structlog", "info", "struct event rows=5")
    assert len(lines(events, "ordered")) == 10
    for name in names:
        assert before_outcome(events, name)
    captured = capsys.readouterr()
    assert "out one" not in captured.out and "logged" not in captured.err


@pytest.mark.parametrize("how", [("inline", None), ("local", "fork"), ("local", "spawn")],
                         ids=["inline", "fork", "spawn"])
def test_run_in_json_mode_logs_task_log_events(how, state_dir):
    """Through ``dagrun.run``: task_log events name the stage; stdout carries JSON lines only."""
    console = io.StringIO()
    executor, method = how
    with dagrun.run(resource("output"), targets=["prints", "logs"], executor=executor,
                    start_method=method, state_dir=state_dir, log_format="json", workers=2,
                    console=console) as result:
        assert result.ok
    shown = [json.loads(line) for line in console.getvalue().splitlines()]
    logged = [(e["stage"], e["stream"], e["message"]) for e in shown if e["event"] == "task_log"]
    assert ("prints", "stdout", "no newline at the end") in logged
    assert ("logs", "logging", "logged warning") in logged
    for event in shown:
        if event["event"] == "task_log":
            assert {"attempt", "worker", "level", "run_id", "timestamp"} <= set(event)
    stored = [json.loads(line) for line in result.events_path.read_text().splitlines()]
    assert [e for e in stored if e["event"] == "task_log"] == [
        e for e in shown if e["event"] == "task_log"]


def test_line_writer_keeps_a_progress_bars_last_state():
    """A carriage return starts a line over; a stage's flush does not cut its line."""
    from dagrun.executors.capture import Lines, LineWriter
    from dagrun.settings import tuning

    most = tuning().max_line_chars
    got = []
    writer = LineWriter(lambda *record: got.append(record), "stderr")
    writer.write("\r 10%")
    writer.flush()
    writer.write("\r 50%")
    writer.write("\r100%\n")
    writer.write("x" * (most + 1))  # a runaway line is delivered, cut
    writer.write("done, no newline")
    writer.end_line()
    assert got[0] == ("stderr", "warning", "100%")
    assert got[1][2].startswith("xxx") and got[1][2].endswith("(1 more characters)")
    assert got[2:] == [("stderr", "warning", "done, no newline")]
    raw = Lines("stdout")
    assert raw.feed(b"one\r\ntw") == ["one"]
    assert raw.feed(b"o\rTWO\nrest") == ["TWO"]
    assert raw.rest() == ["rest"]
