"""Incremental runs: what a re-run computes, seen from real runs on a real cache directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dagrun
from tests.conftest import ROOT, resource

pytestmark = pytest.mark.slow  # every test here starts processes


def _run(state: Path, trace: Path, **kwargs):
    params = {"trace": str(trace), **kwargs.pop("params", {})}
    return dagrun.run(resource("incr"), params=params, state_dir=state, workers=2,
                      log_format="none", **kwargs)


def _computed(trace: Path) -> list[str]:
    names = trace.read_text().split() if trace.exists() else []
    trace.write_text("")
    return sorted(set(names))


def _events(result) -> list[dict]:
    return [json.loads(x) for x in result.events_path.read_text().splitlines()]


ALL = ["fragile", "load", "report", "scaled", "squares"]


def test_a_rerun_with_nothing_changed_computes_nothing(tmp_path):
    """The second run skips every stage as cached and returns the same values."""
    trace = tmp_path / "trace"
    with _run(tmp_path, trace) as first:
        expected = first["report"]
    assert _computed(trace) == ALL
    with _run(tmp_path, trace) as second:
        assert second.ok and second["report"] == expected
        skipped = {e["stage"]: e["reason"] for e in _events(second)
                   if e["event"] == "task_skipped"}
    assert _computed(trace) == []
    assert skipped == {name: "cached" for name in ALL}
    finished = _events(second)[-1]
    counts = {k: finished[k] for k in ("succeeded", "failed", "skipped", "cached")}
    assert counts == {"succeeded": 0, "failed": 0, "skipped": 0, "cached": len(ALL)}


def test_a_changed_parameter_reruns_exactly_its_stage_and_downstream(tmp_path):
    """Changing `factor` recomputes scaled, fragile and report; load and squares come back."""
    trace = tmp_path / "trace"
    _run(tmp_path, trace).close()
    _computed(trace)
    with _run(tmp_path, trace, params={"factor": 3.0}) as result:
        assert result["report"] == 3.0 * sum(range(1000)) + float(
            np.square(np.arange(1000.0)).sum())
    assert _computed(trace) == ["fragile", "report", "scaled"]


def test_force_reruns_a_stage_and_everything_downstream(tmp_path):
    """--force scaled recomputes scaled and what consumes it, nothing else."""
    trace = tmp_path / "trace"
    _run(tmp_path, trace).close()
    _computed(trace)
    _run(tmp_path, trace, force=["scaled"]).close()
    assert _computed(trace) == ["fragile", "report", "scaled"]


def test_no_cache_computes_everything_and_stores_nothing(tmp_path):
    """With no_cache every stage runs, and a later cached run still computes everything."""
    trace = tmp_path / "trace"
    _run(tmp_path, trace, no_cache=True).close()
    assert _computed(trace) == ALL
    assert not (tmp_path / "cache" / "entries").exists() or not any(
        (tmp_path / "cache" / "entries").rglob("meta.json"))
    _run(tmp_path, trace).close()
    assert _computed(trace) == ALL


def test_a_failed_run_rerun_continues_from_the_failure(tmp_path):
    """What finished before the failure is not computed again; the failed stage is."""
    trace, flag = tmp_path / "trace", tmp_path / "fail"
    flag.write_text("")
    with _run(tmp_path, trace, params={"fail_flag": str(flag)}) as failed:
        assert failed.status == "failed"
    assert "fragile" in _computed(trace)
    flag.unlink()
    with _run(tmp_path, trace, params={"fail_flag": str(flag)}) as result:
        assert result.ok
    again = _computed(trace)
    assert "fragile" in again and "report" in again
    assert "load" not in again and "scaled" not in again


def test_a_truncated_entry_is_reported_and_recomputed(tmp_path):
    """A damaged entry gives a cache_corrupt warning and the stage runs again."""
    trace = tmp_path / "trace"
    _run(tmp_path, trace).close()
    _computed(trace)
    data = [p for p in (tmp_path / "cache" / "entries").rglob("*")
            if p.is_file() and p.name != "meta.json" and p.stat().st_size > 4000]
    assert data, "expected the array entries on disk"
    for path in data:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    with _run(tmp_path, trace) as result:
        assert result.ok
        corrupt = [e for e in _events(result) if e["event"] == "cache_corrupt"]
    assert corrupt and all(e["level"] == "warning" and e["reason"] for e in corrupt)
    assert "load" in _computed(trace)


def test_a_cached_input_reaches_a_consumer_mapped_and_read_only(tmp_path):
    """A consumer of a cached array gets it read-only; the transport says cache."""
    trace = tmp_path / "trace"
    _run(tmp_path, trace).close()
    with _run(tmp_path, trace, force=["fragile"]) as result:
        assert result.ok
        finished = [e for e in _events(result) if e["event"] == "task_finished"]
    assert {e["stage"] for e in finished} == {"fragile", "report"}
    fragile = next(e for e in finished if e["stage"] == "fragile")
    assert fragile["input_bytes"] >= 8000


@pytest.mark.timeout(120)
def test_two_pipelines_sharing_stages_run_at_once_and_compute_each_entry_once(tmp_path):
    """Two pipelines including one module share its entries: both succeed, base runs once."""
    trace, cache = tmp_path / "trace", tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dagrun", "run", resource(name), "--state-dir",
             str(tmp_path / name), "--cache-dir", str(cache), "--param",
             f"common.trace={trace}", "--log-format", "json", "--workers", "1"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name in ("share_one", "share_two")
    ]
    try:
        outs = [p.communicate(timeout=100) for p in procs]
    finally:
        for p in procs:  # a hang must not outlive the test
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1000:] for o in outs]
    assert trace.read_text().split() == ["base"]
    finals = [[json.loads(x) for x in o[0].splitlines() if x.startswith("{")][-1] for o in outs]
    assert all(f["status"] == "succeeded" for f in finals)


def test_a_run_that_writes_entries_trims_the_cache_to_its_cap(tmp_path):
    """Past the cap, the least recently used entries go at the run's end (cache_trimmed);
    a run that wrote nothing leaves the cache as it was."""
    from dagrun.settings import Tuning

    trace = tmp_path / "trace"
    _run(tmp_path, trace).close()
    entries = tmp_path / "cache" / "entries"
    count = len(list(entries.glob("*/*")))
    assert count == len(ALL)
    with _run(tmp_path, trace, tuning=Tuning(cache_max_bytes=0)) as cached:
        assert cached.ok  # every stage from the cache: nothing written, nothing trimmed
    assert len(list(entries.glob("*/*"))) == count
    with _run(tmp_path, trace, params={"factor": 5.0}, tuning=Tuning(cache_max_bytes=0)) as r:
        trimmed = [e for e in _events(r) if e["event"] == "cache_trimmed"]
    assert list(entries.glob("*/*")) == []
    assert trimmed and trimmed[0]["entries"] == count + 3 and trimmed[0]["kept_bytes"] == 0


def test_explain_says_a_stage_failed_last_time(tmp_path):
    """After a failed run, explain gives the failed stage's reason as its failure, and what
    never ran downstream as 'no earlier run recorded'; once it succeeds, it is cached."""
    from dagrun.cache import Cache, explain, pipeline_key, plan_keys
    from dagrun.graph.build import build_graph
    from dagrun.pipeline.loader import load

    trace, flag = tmp_path / "trace", tmp_path / "fail"
    flag.write_text("")
    params = {"trace": str(trace), "fail_flag": str(flag)}
    with _run(tmp_path, trace, params={"fail_flag": str(flag)}) as failed:
        assert failed.status == "failed"

    def reasons() -> dict[str, str]:
        graph = build_graph(load(resource("incr")), params)
        cache = Cache(tmp_path / "cache")
        said = explain(graph, cache, plan_keys(graph), pipeline_key(graph))
        return {name: reason.reason for name, reason in said.items()}

    said = reasons()
    assert "failed last time" in said["fragile"]
    assert said["report"] == "no cache entry (no earlier run recorded)"
    assert said["load"] == "cached"
    flag.unlink()
    with _run(tmp_path, trace, params={"fail_flag": str(flag)}) as result:
        assert result.ok
    assert reasons()["fragile"] == "cached"
