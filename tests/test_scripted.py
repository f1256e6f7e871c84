"""The runner's loop driven by a scripted executor: planned outcomes, no process started.

The executor is registered by name, as any plug-in would be; each stage's
attempts follow a script (``ok``, ``raise``, ``crash``, ``interrupt``), and the
test asserts the events and the result the loop makes of them.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import pytest

import dagrun
from dagrun import executors
from dagrun.executors.base import (
    Capabilities,
    ErrorInfo,
    ExecutorContext,
    RemoteRef,
    TaskMetrics,
    TaskOutcome,
    TaskSpec,
)
from dagrun.pipeline.pipeline import Pipeline
from dagrun.store import Decoded


@dagrun.stage
def source() -> int:
    return 1


@dagrun.stage(retries=2)
def flaky(source: int) -> int:
    return source + 1


@dagrun.stage
def sink(flaky: int) -> int:
    return flaky * 10


class Scripted(Capabilities):
    """Answers each attempt of a stage as its script says; values live in a dict."""

    name = "scripted"

    def __init__(self, context: ExecutorContext, script: dict[str, list[str]]) -> None:
        self.workers = context.workers
        self.config = context.config
        self.funcs = context.funcs
        self.script = {stage: list(steps) for stage, steps in script.items()}
        self.values: dict[str, Any] = {}
        self.pending: list[TaskOutcome] = []
        self.released: list[str] = []
        self.submitted: list[tuple[str, int]] = []

    def free_slots(self) -> int:
        return self.workers - len(self.pending)

    def shares_cache(self, directory: str) -> bool:
        return False  # values live in a dict: runs are not cached

    def submit(self, spec: TaskSpec) -> str:
        stage = spec.key.stage
        self.submitted.append((stage, spec.attempt))
        step = (self.script.get(stage) or ["ok"]).pop(0) if self.script.get(stage) else "ok"
        metrics = TaskMetrics(worker_pid=0, wall_s=0.01, worker="scripted-0", host="here")
        if step == "ok":
            args = {p: self.values[ref.key] for p, ref in spec.inputs.items()}
            key = f"{stage}/{spec.attempt}"
            self.values[key] = self.funcs[stage](**args, **spec.params)
            ref = RemoteRef(key, "scripted", 8)
            self.pending.append(TaskOutcome(spec.key, spec.attempt, ref, None, metrics))
        elif step == "interrupt":
            os.kill(os.getpid(), signal.SIGINT)
            self.pending.append(TaskOutcome(
                spec.key, spec.attempt, None,
                ErrorInfo("crashed", "WorkerCrashed", "stopped"), metrics))
        else:
            kind = "raised" if step == "raise" else "crashed"
            info = ErrorInfo(kind, "ValueError" if kind == "raised" else "WorkerCrashed",
                             f"scripted {step}", type_names=("builtins.ValueError",))
            self.pending.append(TaskOutcome(spec.key, spec.attempt, None, info, metrics))
        return "scripted-0"

    def chain(self, spec: TaskSpec) -> bool:
        return False

    def wait(self, timeout: float | None, wake: int | None = None) -> list:
        events, self.pending = self.pending, []
        return events

    def release(self, ref: RemoteRef) -> None:
        self.released.append(ref.key)
        self.values.pop(ref.key, None)

    def read(self, ref: RemoteRef, stage: str) -> Decoded:
        return Decoded(self.values[ref.key])

    def notice(self, ref: RemoteRef) -> None:
        return None

    def shutdown(self, *, cancel: bool = False) -> None:
        pass

    def kill_all(self) -> None:
        pass

    def close(self) -> None:
        self.values.clear()


@pytest.fixture
def scripted():
    """Register a scripted executor for one test; yield a setter for its script."""
    made: list[Scripted] = []
    script: dict[str, list[str]] = {}

    def factory(context: ExecutorContext) -> Scripted:
        made.append(Scripted(context, script))
        return made[-1]

    executors.register("scripted", factory)
    yield script, made
    executors._registered.pop("scripted", None)


def _run(state_dir, **kwargs):
    pipeline = Pipeline([source, flaky, sink], name="scripted")
    return dagrun.run(pipeline, executor="scripted", workers=2, state_dir=state_dir,
                      log_format="none", no_cache=True, **kwargs)


def _events(result) -> list[dict]:
    return [json.loads(line) for line in result.events_path.read_text().splitlines()]


def test_a_retried_task_succeeds_and_every_value_is_released(scripted, state_dir):
    """A raise then a crash are retried; the result is right and intermediates are freed."""
    script, made = scripted
    script["flaky"] = ["raise", "crash", "ok"]
    with _run(state_dir) as result:
        assert result.status == "succeeded" and result["sink"] == 20
        events = _events(result)
    kinds = [(e["event"], e.get("stage"), e.get("attempt")) for e in events]
    assert ("task_failed", "flaky", 1) in kinds and ("task_failed", "flaky", 2) in kinds
    assert ("task_retrying", "flaky", 2) in kinds and ("task_retrying", "flaky", 3) in kinds
    assert [a for s, a in made[0].submitted if s == "flaky"] == [1, 2, 3]
    assert {"source/1", "flaky/3"} <= set(made[0].released)
    started = [e for e in events if e["event"] == "task_started"]
    assert all(e["worker"] == "scripted-0" and e["host"] is None for e in started)


def test_retries_exhausted_fail_the_stage_and_skip_downstream(scripted, state_dir):
    """Three failures of a stage with two retries fail the run; its consumer is skipped."""
    script, _ = scripted
    script["flaky"] = ["raise", "raise", "raise"]
    with _run(state_dir) as result:
        assert result.status == "failed"
        assert result.skipped == {"sink": "upstream_failed"}
        assert "scripted raise" in str(result.errors["flaky"])
        failed = [e for e in _events(result) if e["event"] == "task_failed"]
    assert [e["level"] for e in failed] == ["warning", "warning", "error"]


def test_an_interrupt_stops_the_run_and_raises(scripted, state_dir):
    """A SIGINT during the run ends it as interrupted, with run_finished written."""
    script, made = scripted
    script["flaky"] = ["interrupt"]
    with pytest.raises(dagrun.Interrupted):
        _run(state_dir)
    run_dir = next((state_dir / "runs").iterdir())
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "interrupted"
    assert ("sink", 1) not in made[0].submitted


class _Partial:
    """An executor written to the old, shorter protocol: no cache, chaining or prefetch."""

    name = "partial"

    def __init__(self, context: ExecutorContext) -> None:
        self.workers = context.workers
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_an_executor_lacking_protocol_members_is_refused_by_name(state_dir):
    """A registered executor missing members of the protocol is a UsageError naming them,
    raised before any stage runs; what it built is closed."""
    built: list[_Partial] = []
    executors.register("partial", lambda context: built.append(_Partial(context)) or built[-1])
    try:
        with pytest.raises(dagrun.UsageError, match=r"lacks .*could_chain.*Capabilities"):
            dagrun.run(Pipeline([source]), executor="partial", state_dir=state_dir,
                       log_format="none")
    finally:
        executors._registered.pop("partial", None)
    assert built and built[0].closed
