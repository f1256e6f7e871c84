"""The planner's decisions on tiny graphs, without a process: specs, batches, retries, cache.

The planner is given an in-memory executor double and the scheduler's state,
which each test moves by firing transitions itself, as the runner would; what
the planner returns (specs in its queue, a decision record, a retry delay) is
asserted whole.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

import dagrun
from dagrun import executors
from dagrun.control import planning
from dagrun.control.decisions import Batches, FailedUnrun, FromCache
from dagrun.control.incremental import RunCache
from dagrun.control.ledger import Ledger
from dagrun.control.scheduler import Scheduler, TaskKey
from dagrun.events.log import EventLog
from dagrun.events.reporter import Reporter
from dagrun.executors.base import (
    OOM,
    Capabilities,
    ErrorInfo,
    ExecutorContext,
    RemoteRef,
    TaskMetrics,
    TaskOutcome,
    TaskSpec,
)
from dagrun.graph.build import build_graph
from dagrun.pipeline.pipeline import Pipeline
from dagrun.settings import RunOptions
from dagrun.store import Decoded
from tests.test_scripted import Scripted


@dagrun.stage
def numbers() -> list[int]:
    return [1, 2, 3, 4, 5]


@dagrun.stage(map="numbers", batch_size=2, retries=1)
def doubled(numbers: int) -> int:
    return numbers * 2


@dagrun.stage
def total(doubled: list[int]) -> int:
    return sum(doubled)


@dagrun.stage
def label() -> str:
    return "x"


@dagrun.stage
def shout(label: str) -> str:
    return label.upper()


class Double(Capabilities):
    """An executor double: holds nothing, chains nothing, reads values from a dict."""

    name = "double"

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values = values or {}
        self.released: list[str] = []

    def chain(self, spec: TaskSpec) -> bool:
        return False

    def release(self, ref: RemoteRef) -> None:
        self.released.append(ref.key)

    def read(self, ref: RemoteRef, stage: str) -> Any:
        return Decoded(self.values[ref.key])


def _make(tmp_path, stages, **options: Any) -> tuple[Scheduler, planning.Planner, Ledger]:
    graph = build_graph(Pipeline(stages, name="planning"))
    settings = RunOptions.build(state_dir=tmp_path, workers=2, no_cache=True, **options)
    ledger = Ledger(Double())
    scheduler, planner = planning.start(graph, settings, ledger, ledger.executor,
                                        rng=random.Random(0))
    return scheduler, planner, ledger


def _queued(planner: planning.Planner) -> list[tuple[TaskKey, tuple[int, int] | None]]:
    specs = []
    while planner.queue:
        specs.append(planner.queue.pop()[1])
    return [(s.key, s.items) for s in specs]


def _outcome(key: TaskKey, attempt: int, info: ErrorInfo) -> TaskOutcome:
    return TaskOutcome(key, attempt, None, info, TaskMetrics(0))


def test_a_ready_stage_becomes_one_queued_spec(tmp_path):
    """An ordinary ready stage is queued as one spec, and nothing is left for the loop."""
    scheduler, planner, _ = _make(tmp_path, [label, shout])
    assert scheduler.take_ready() == ["label"]
    assert planner.plan("label") is None
    spec = planner.queue.pop()[1]
    assert (spec.key, spec.attempt, spec.inputs, spec.after) == (TaskKey("label"), 1, {}, None)
    assert not planner.queue and scheduler.running == {"label": 1}


def test_a_consumer_reads_its_input_from_the_ledger(tmp_path):
    """A consumer's spec names its input by the reference the ledger holds."""
    scheduler, planner, ledger = _make(tmp_path, [label, shout])
    scheduler.take_ready()
    ledger.record("label", None, RemoteRef("label/1", nbytes=8))
    assert scheduler.finish(TaskKey("label")).ready == ["shout"]
    assert scheduler.take_ready() == ["shout"]
    assert planner.plan("shout") is None
    assert planner.queue.pop()[1].inputs == {"label": RemoteRef("label/1", nbytes=8)}


def test_a_mapped_stage_is_queued_as_batches_and_decided_as_batches(tmp_path):
    """Five elements in batches of two: three specs queued, and a Batches(3) for the loop."""
    scheduler, planner, ledger = _make(tmp_path, [numbers, doubled, total])
    scheduler.take_ready()
    ledger.record("numbers", None, RemoteRef("numbers/1", nbytes=40, length=5))
    scheduler.finish(TaskKey("numbers"))
    scheduler.take_ready()
    assert planner.plan("doubled") == Batches("doubled", 3, concat=False)
    assert _queued(planner) == [(TaskKey("doubled", 0), (0, 2)), (TaskKey("doubled", 1), (2, 4)),
                                (TaskKey("doubled", 2), (4, 5))]
    assert scheduler.running == {"doubled": 1}  # the loop, not the planner, sets the batches
    assert "doubled" not in ledger.batches


def test_an_empty_map_is_decided_as_zero_batches(tmp_path):
    """A map over nothing queues no task: Batches(0) tells the loop the stage is done, empty."""
    scheduler, planner, ledger = _make(tmp_path, [numbers, doubled, total])
    scheduler.take_ready()
    ledger.record("numbers", None, RemoteRef("numbers/1", nbytes=0, length=0))
    scheduler.finish(TaskKey("numbers"))
    scheduler.take_ready()
    assert planner.plan("doubled") == Batches("doubled", 0, concat=False)
    assert not planner.queue


def test_a_map_over_a_value_without_length_fails_before_running(tmp_path):
    """A mapped input with no length is a FailedUnrun decision; the scheduler is untouched."""
    scheduler, planner, ledger = _make(tmp_path, [numbers, doubled, total])
    scheduler.take_ready()
    ledger.record("numbers", None, RemoteRef("numbers/1", nbytes=8))
    scheduler.finish(TaskKey("numbers"))
    scheduler.take_ready()
    decision = planner.plan("doubled")
    assert isinstance(decision, FailedUnrun) and decision.stage == "doubled"
    assert decision.info.error_type == "TypeError" and "has no length" in decision.info.message
    assert scheduler.running == {"doubled": 1} and not scheduler.failed


def test_a_raised_error_is_retried_until_retries_run_out(tmp_path):
    """A batch with one retry is retried after its first failure, not after its second."""
    scheduler, planner, _ = _make(tmp_path, [numbers, doubled, total])
    scheduler.take_ready()
    scheduler.finish(TaskKey("numbers"))
    scheduler.take_ready()
    info = ErrorInfo("raised", "ValueError", "bad", type_names=("builtins.ValueError",))
    key = TaskKey("doubled", 1)
    assert planner.retry_delay(_outcome(key, 1, info), info) == 0.0  # no retry_delay declared
    assert planner.retry_delay(_outcome(key, 2, info), info) is None
    assert not planner.alone


def test_no_retry_once_the_stage_stopped_running(tmp_path):
    """A failure of a stage that is no longer running (stopped) is final."""
    scheduler, planner, _ = _make(tmp_path, [numbers, doubled, total])
    scheduler.take_ready()
    scheduler.stop()
    info = ErrorInfo("crashed", "WorkerCrashed", "gone", cause=OOM)
    assert planner.retry_delay(_outcome(TaskKey("numbers"), 1, info), info) is None


def test_an_oom_death_is_retried_once_alone_whatever_its_words(tmp_path):
    """The typed OOM cause, with a message that never says so, is retried once, at once, alone."""
    scheduler, planner, _ = _make(tmp_path, [label, shout])
    scheduler.take_ready()
    info = ErrorInfo("crashed", "WorkerCrashed", "the worker vanished", cause=OOM)
    key = TaskKey("label")
    assert planner.retry_delay(_outcome(key, 1, info), info) == 0.0
    assert planner.alone == {key}
    assert planner.retry_delay(_outcome(key, 2, info), info) is None  # no retries: once only


def test_oom_words_without_the_typed_cause_are_an_ordinary_crash(tmp_path):
    """A message naming the OOM killer but no typed cause gets no alone retry."""
    scheduler, planner, _ = _make(tmp_path, [label, shout])
    scheduler.take_ready()
    info = ErrorInfo("crashed", "WorkerCrashed", "likely killed by the out-of-memory killer")
    assert planner.retry_delay(_outcome(TaskKey("label"), 1, info), info) is None
    assert not planner.alone


def test_an_alone_retry_waits_for_every_running_task(tmp_path):
    """A spec marked alone is admitted only when nothing else is running."""
    scheduler, planner, _ = _make(tmp_path, [label, shout])
    scheduler.take_ready()
    planner.plan("label")
    spec = planner.queue.pop()[1]
    planner.alone.add(spec.key)
    planner.reserve(TaskSpec(TaskKey("other"), 1, {}, {}, 0.0))
    planner.push(spec)
    assert planner.pop_admitted() is None
    planner.unreserve(TaskKey("other"))
    assert planner.pop_admitted() is spec


def test_a_cache_hit_is_decided_from_the_cache_and_adopted_by_no_one_else(tmp_path):
    """An intact entry is a FromCache decision; the ledger and scheduler are left to the loop."""
    graph = build_graph(Pipeline([label, shout], name="planning"))
    settings = RunOptions.build(state_dir=tmp_path / "state", cache_dir=tmp_path / "cache",
                                workers=2)
    ledger = Ledger(Double())
    events = EventLog("r", tmp_path / "events.jsonl", log_format="none")
    cache = RunCache.open(graph, settings, "r", ledger, Reporter(events), ledger.executor)
    assert cache is not None
    key = cache.keys["label"].key
    cache.cache.write(key, "x", stage="label")
    scheduler, planner = planning.start(graph, settings, ledger, ledger.executor, cache)
    scheduler.take_ready()
    decision = planner.plan("label")
    assert isinstance(decision, FromCache) and decision.stage == "label"
    assert decision.output.transport == "cache"  # its consumers map the entry's file
    assert "label" not in ledger and scheduler.running == {"label": 1} and not planner.queue
    cache.close()
    events.close()


class _Oom(Scripted):
    """The scripted executor, whose ``oom`` step is a crash typed OOM in other words."""

    def submit(self, spec: TaskSpec) -> str:
        steps = self.script.get(spec.key.stage)
        if steps and steps[0] == "oom":
            steps.pop(0)
            self.submitted.append((spec.key.stage, spec.attempt))
            info = ErrorInfo("crashed", "WorkerCrashed", "worker gone (exit -9)", cause=OOM)
            self.pending.append(TaskOutcome(spec.key, spec.attempt, None, info, TaskMetrics(0)))
            return "scripted-0"
        return super().submit(spec)


@pytest.fixture
def oom_scripted():
    """Register the OOM-scripted executor for one test; yield its script and what it made."""
    made: list[_Oom] = []
    script: dict[str, list[str]] = {"label": ["oom"]}

    def factory(context: ExecutorContext) -> _Oom:
        made.append(_Oom(context, script))
        return made[-1]

    executors.register("scripted-oom", factory)
    yield made
    executors._registered.pop("scripted-oom", None)


def test_a_reworded_oom_crash_is_retried_alone_by_the_loop(oom_scripted, state_dir):
    """Through the loop: an OOM-typed crash worded otherwise is retried alone and succeeds."""
    pipeline = Pipeline([label, shout], name="oom-typed")
    with dagrun.run(pipeline, executor="scripted-oom", workers=2, state_dir=state_dir,
                    log_format="none", no_cache=True) as result:
        assert result.status == "succeeded" and result["shout"] == "X"
        events = [json.loads(x) for x in result.events_path.read_text().splitlines()]
    retry = next(e for e in events if e["event"] == "task_retrying")
    assert (retry["stage"], retry["alone"], retry["reason"]) == ("label", True, "out_of_memory")
    assert [a for s, a in oom_scripted[0].submitted if s == "label"] == [1, 2]
