"""Whether a result is worth storing: the pure rule, and what a run does with it."""

from __future__ import annotations

import json

import pytest

import dagrun
from dagrun.cache.worth import worth_storing
from dagrun.settings import Tuning
from tests.conftest import RESOURCES

GIB = 1 << 30


@pytest.mark.parametrize(("nbytes", "compute_s", "rate", "stored"), [
    (GIB, 0.1, 1e9, False),  # 1.07 s to write what took 0.1 s to make
    (GIB, 5.0, 1e9, True),  # 1.07 s against 5 s of work
    (GIB, 2.0, 1e9, False),  # more than half of the 2 s it took
    (GIB, 2.2, 1e9, True),  # less than half of 2.2 s
    (100 << 20, 0.0, 1e9, True),  # 0.1 s: under the free 0.2 s whatever the stage
    (300 << 20, 0.0, 1e9, False),  # 0.31 s for an instant stage
    (0, 0.0, 1e9, True),  # no size known: stored
    (GIB, 0.0, 0.0, True),  # no rate known: stored
])
def test_the_rule_with_fixed_numbers(nbytes, compute_s, rate, stored):
    """Stored unless writing takes over 0.2 s and over half of the stage's own time."""
    assert worth_storing(nbytes, compute_s, rate, 0.2, 0.5) is stored


@pytest.mark.slow
def test_a_large_result_made_at_once_is_left_unstored_and_says_so(tmp_path):
    """At a slow write rate, the instant stage's 4 MiB is not stored (stored: false, explain
    says why, the next run makes it again); the stage that took a second is stored."""
    from dagrun.cache import Cache, explain, pipeline_key, plan_keys
    from dagrun.graph.build import build_graph
    from dagrun.pipeline.loader import load

    cache_dir = tmp_path / "cache"
    Cache(cache_dir)
    (cache_dir / "write_rate.json").write_text(json.dumps({"bytes_per_s": 10e6}))
    numbers = Tuning(cache_write_free_s=0.05, cache_probe_bytes=1 << 20)
    pipeline = str(RESOURCES / "worth.py")

    def run():
        result = dagrun.run(pipeline, state_dir=tmp_path, cache_dir=cache_dir, tuning=numbers,
                            log_format="none", workers=2)
        with result:
            events = [json.loads(x) for x in result.events_path.read_text().splitlines()]
        return events

    first = {e["stage"]: e.get("stored") for e in run() if e["event"] == "task_finished"}
    assert first == {"quick": False, "slow": True}
    graph = build_graph(load(pipeline), {})
    reasons = explain(graph, Cache(cache_dir), plan_keys(graph), pipeline_key(graph))
    assert reasons["quick"].reason.startswith("not stored: recomputing is cheaper")
    assert reasons["slow"].reason == "cached"
    again = [e["stage"] for e in run() if e["event"] == "task_started"]
    assert again == ["quick"]
