"""The scheduling policies, as pure functions: no process, no clock."""

from __future__ import annotations

import random

from dagrun.control import policies
from dagrun.control.policies import Consumer


def test_auto_batch_size_gives_about_four_batches_per_worker():
    """100 elements on 2 workers make 8 batches of 13; never a batch of zero."""
    assert policies.auto_batch_size(100, 2, 4) == 13
    assert policies.auto_batch_size(0, 2, 4) == 1


def test_batch_ranges_cover_every_element_once():
    """Ranges are contiguous, in order, and the last one is short."""
    assert policies.batch_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert policies.batch_ranges(0, 4) == []


def test_may_keep_only_for_one_consumer_that_can_start_at_once():
    """A result stays in its worker only for a lone, unmapped, retry-free consumer."""
    alone = Consumer("b", mapped=False, retries=0, inputs=["a"], waiting_on=["a"])
    assert policies.may_keep("a", [alone], requested=False, executor_keeps=True)
    assert not policies.may_keep("a", [alone], requested=True, executor_keeps=True)
    assert not policies.may_keep("a", [alone], requested=False, executor_keeps=False)
    other_input = Consumer("b", mapped=False, retries=0, inputs=["a", "c"], waiting_on=["a", "c"])
    assert not policies.may_keep("a", [other_input], requested=False, executor_keeps=True)
    twice = Consumer("b", mapped=False, retries=0, inputs=["a", "a"], waiting_on=["a"])
    assert not policies.may_keep("a", [twice], requested=False, executor_keeps=True)
    retried = Consumer("b", mapped=False, retries=1, inputs=["a"], waiting_on=["a"])
    assert not policies.may_keep("a", [retried], requested=False, executor_keeps=True)
    assert not policies.may_keep("a", [alone, alone], requested=False, executor_keeps=True)


def test_chain_consumer_picks_the_first_consumer_held_back_by_this_task_alone():
    """A mapped consumer, or one still waiting on another input, is not chained."""
    mapped = Consumer("m", mapped=True, retries=0, inputs=["a"], waiting_on=["a"])
    blocked = Consumer("b", mapped=False, retries=0, inputs=["a", "x"], waiting_on=["a", "x"])
    free = Consumer("c", mapped=False, retries=0, inputs=["a"], waiting_on=["a"])
    assert policies.chain_consumer("a", [mapped, blocked, free]) == "c"
    assert policies.chain_consumer("a", [mapped, blocked]) is None


def test_backoff_doubles_with_jitter_from_the_given_source():
    """The delay doubles per attempt; the injected source decides the jitter."""
    low = policies.backoff(1.0, 3, lambda a, b: a)
    high = policies.backoff(1.0, 3, lambda a, b: b)
    assert (low, high) == (2.0, 6.0)
    rng = random.Random(7)
    assert 0.5 <= policies.backoff(1.0, 1, rng.uniform) <= 1.5


def test_retryable_follows_retry_on_for_raised_errors_only():
    """Crashes always retry; a raised error only when its type is listed."""
    names = ("builtins.KeyError", "builtins.LookupError", "builtins.Exception")
    assert policies.retryable("crashed", (), (ValueError,))
    assert policies.retryable("raised", names, ())
    assert policies.retryable("raised", names, (LookupError,))
    assert not policies.retryable("raised", names, (ValueError,))


def test_bottom_level_prefers_the_stage_the_end_waits_for():
    """On a fork of a long and a short branch, the long branch's head ranks first."""
    upstream = {"root": [], "long1": ["root"], "long2": ["long1"], "short": ["root"],
                "end": ["long2", "short"]}
    levels = policies.bottom_levels(upstream, {"long1": 5.0, "short": 1.0})
    assert levels["long1"] > levels["short"]
    assert levels["end"] == 1.0 and levels["root"] == 1.0 + levels["long1"]
