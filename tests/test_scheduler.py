"""The scheduler's transitions, asserted as whole states."""

from dagrun.control.scheduler import Scheduler, TaskKey

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
ORDER = ["a", "b", "c", "d"]


def make(keep_going: bool = False, keep=("d",)) -> Scheduler:
    return Scheduler(DIAMOND, ORDER, keep, keep_going=keep_going)


def test_only_sources_are_ready_at_start():
    """Stages without inputs are ready; the others wait on exactly their inputs."""
    s = make()
    assert s.ready == ["a"]
    assert s.waiting == {"b": {"a"}, "c": {"a"}, "d": {"b", "c"}}


def test_finishing_unblocks_consumers_and_not_more():
    """A stage is ready the moment its last input finishes, not before."""
    s = make()
    assert s.take_ready() == ["a"]
    step = s.finish(TaskKey("a"))
    assert step.ready == ["b", "c"] and step.stage_done
    assert s.take_ready() == ["b", "c"]
    step = s.finish(TaskKey("b"))
    assert step.ready == [] and s.waiting == {"d": {"c"}}
    step = s.finish(TaskKey("c"))
    assert step.ready == ["d"]


def test_intermediates_released_after_last_consumer():
    """An input is released when its last consumer finishes; targets are kept."""
    s = make()
    s.take_ready()
    assert s.finish(TaskKey("a")).released == []
    s.take_ready()
    assert s.finish(TaskKey("b")).released == []
    assert s.finish(TaskKey("c")).released == ["a"]
    s.take_ready()
    step = s.finish(TaskKey("d"))
    assert sorted(step.released) == ["b", "c"]
    assert s.finished and s.done == {"a", "b", "c", "d"}


def test_failure_without_keep_going_stops_everything():
    """Fail-fast: downstream is upstream_failed, everything else not started is stopped."""
    s = Scheduler({"a": [], "b": ["a"], "x": []}, ["a", "b", "x"], {"b", "x"})
    assert s.take_ready() == ["a", "x"]
    step = s.fail(TaskKey("a"))
    assert step.skipped == {"b": "upstream_failed"}
    assert s.stopped and s.running == {"x": 1}
    assert s.take_ready() == []
    s.finish(TaskKey("x"))
    assert s.finished and s.failed == {"a"} and s.done == {"x"}


def test_failure_with_keep_going_skips_only_downstream():
    """keep_going: stages not downstream of the failure still run."""
    s = Scheduler(
        {"a": [], "b": ["a"], "c": ["b"], "x": [], "y": ["x"]},
        ["a", "b", "c", "x", "y"],
        {"c", "y"},
        keep_going=True,
    )
    s.take_ready()
    step = s.fail(TaskKey("a"))
    assert step.skipped == {"b": "upstream_failed", "c": "upstream_failed"}
    assert not s.stopped
    assert s.finish(TaskKey("x")).ready == ["y"]
    assert s.take_ready() == ["y"]
    s.finish(TaskKey("y"))
    assert s.finished and s.skipped == {"b": "upstream_failed", "c": "upstream_failed"}


def test_batches_complete_a_stage_only_when_all_are_done():
    """A mapped stage with three batches is done after the third batch."""
    s = Scheduler({"a": [], "m": ["a"]}, ["a", "m"], {"m"})
    s.take_ready()
    s.finish(TaskKey("a"))
    assert s.take_ready() == ["m"]
    s.set_batches("m", 3)
    assert not s.finish(TaskKey("m", 0)).stage_done
    assert not s.finish(TaskKey("m", 2)).stage_done
    step = s.finish(TaskKey("m", 1))
    assert step.stage_done and step.released == ["a"] and s.finished


def test_late_batch_of_failed_stage_is_ignored():
    """A batch finishing after its stage failed changes nothing."""
    s = Scheduler({"m": []}, ["m"], {"m"}, keep_going=True)
    s.take_ready()
    s.set_batches("m", 2)
    s.fail(TaskKey("m", 0))
    step = s.finish(TaskKey("m", 1))
    assert not step.stage_done and s.failed == {"m"} and s.done == set()


def test_stop_skips_waiting_and_ready():
    """An interrupt hands out nothing more and marks unstarted stages stopped."""
    s = make()
    s.take_ready()
    skipped = s.stop()
    assert skipped == {"b": "stopped", "c": "stopped", "d": "stopped"}
    assert not s.finished
    s.finish(TaskKey("a"))
    assert s.finished


def test_queries_answer_from_the_whole_state():
    """The read-only queries the planner asks agree with the state after each transition."""
    s = make()
    s.take_ready()
    assert (s.is_running("a"), s.is_done("a"), s.is_waiting("d"), s.is_kept("d")) == (
        True, False, True, True)
    assert list(s.consumers("a")) == ["b", "c"] and list(s.consumers("d")) == []
    s.finish(TaskKey("a"))
    s.take_ready()
    s.finish(TaskKey("b"))
    assert s.waiting == {"d": {"c"}} and s.running == {"c": 1} and s.done == {"a", "b"}
    assert set(s.missing("d")) == {"c"} and s.waits_only_on("d", "c")
    assert not s.waits_only_on("d", "b") and set(s.missing("c")) == set()
    assert s.tally() == (2, 0)
