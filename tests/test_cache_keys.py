"""Cache keys: what changes a stage's key and what does not (fresh interpreters, real files)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dagrun import Pipeline, bind, stage
from dagrun.cache import plan_keys
from dagrun.errors import UnhashableParameter
from dagrun.graph.build import build_graph

RESOURCES = Path(__file__).parent / "resources"
TOOL = RESOURCES / "cache_tool.py"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A private copy of the cache fixture project, free to edit."""
    target = tmp_path / "project"
    shutil.copytree(RESOURCES / "cache_project", target)
    return target


def keys(project: Path, *params: str) -> dict[str, str]:
    """Every stage's key, computed by a fresh interpreter in the project directory."""
    out = subprocess.run(
        [sys.executable, str(TOOL), "keys", "pipeline.py", *params],
        cwd=project, capture_output=True, text=True, check=True, timeout=60,
    )
    return {name: pair[0] for name, pair in json.loads(out.stdout).items()}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


@pytest.mark.slow
def test_keys_are_stable_across_interpreters(project: Path) -> None:
    """Two fresh interpreters compute the same keys for an unchanged project."""
    assert keys(project) == keys(project)


@pytest.mark.slow
def test_comments_docstrings_and_formatting_do_not_count(project: Path) -> None:
    """Comments, docstrings, blank lines and line breaks leave every key as it was."""
    before = keys(project)
    documented = "def _inner(x):  # a comment\n    '''Doc.'''\n"
    edit(project / "helpers.py", "def _inner(x):\n", documented)
    edit(project / "pipeline.py", '"""Numbers scaled by a helper', '"""Other words about')
    edit(project / "pipeline.py", "return combined * 2", "return (\n        combined * 2\n    )")
    assert keys(project) == before


@pytest.mark.slow
def test_helper_of_a_helper_changes_the_key(project: Path) -> None:
    """Editing a function two calls deep re-keys its stage and everything downstream."""
    before = keys(project)
    edit(project / "helpers.py", "return x * FACTOR", "return x * FACTOR - 0")
    assert changed(before, keys(project)) == {"source", "combined", "total"}


@pytest.mark.slow
def test_module_constant_changes_the_key(project: Path) -> None:
    """A constant read by a helper counts by value."""
    before = keys(project)
    edit(project / "helpers.py", "FACTOR = 3", "FACTOR = 5")
    assert changed(before, keys(project)) == {"source", "combined", "total"}


@pytest.mark.slow
def test_stage_decorator_options_do_not_count(project: Path) -> None:
    """Run options such as retries are not part of the key."""
    before = keys(project)
    edit(project / "pipeline.py", "@stage\ndef total", "@stage(retries=3, timeout=9)\ndef total")
    assert keys(project) == before


@pytest.mark.slow
def test_parameter_change_reruns_exactly_downstream(project: Path) -> None:
    """A parameter re-keys its stage and what consumes it, nothing else."""
    before = keys(project)
    assert changed(before, keys(project, "n=7")) == {"source", "combined", "total"}


@pytest.mark.slow
def test_path_parameter_file_content_counts(project: Path) -> None:
    """The content of the file a Path parameter names is part of the key."""
    before = keys(project)
    (project / "input.csv").write_text("a,b\n1,3\n")
    assert changed(before, keys(project)) == {"notes", "combined", "total"}


@pytest.mark.slow
def test_new_path_parameter_file_counts(project: Path) -> None:
    """Pointing the Path parameter at another file re-keys the stage."""
    before = keys(project)
    (project / "other.csv").write_text("a,b\n1,2\n")
    assert changed(before, keys(project, "table=other.csv")) == {"notes", "combined", "total"}


@pytest.mark.slow
def test_watched_file_counts(project: Path) -> None:
    """A file listed in watch= re-keys its stage when its content changes or it appears."""
    before = keys(project)
    (project / "watched.txt").write_text("v2\n")
    after = keys(project)
    assert changed(before, after) == {"notes", "combined", "total"}
    (project / "watched.txt").unlink()
    assert changed(after, keys(project)) == {"notes", "combined", "total"}


@pytest.mark.slow
def test_version_pin_ignores_code(project: Path) -> None:
    """version= pins the code part: editing a pinned stage's body keeps its key."""
    edit(project / "pipeline.py", "@stage\ndef total", '@stage(version="1")\ndef total')
    before = keys(project)
    edit(project / "pipeline.py", "return combined * 2", "return combined * 3")
    assert keys(project) == before
    edit(project / "pipeline.py", '@stage(version="1")', '@stage(version="2")')
    assert changed(before, keys(project)) == {"total"}


@stage
def _numbers(count: int = 3) -> list:
    return list(range(count))


@stage
def _consumer(_numbers: list, when: object = None) -> int:
    return len(_numbers)


def test_unhashable_parameter_names_stage_and_parameter() -> None:
    """A parameter value without a content hash is a clear usage error, not a constant key."""
    pipeline = Pipeline([_numbers, bind(_consumer, "consumer", when=object())])
    graph = build_graph(pipeline)
    with pytest.raises(UnhashableParameter) as info:
        plan_keys(graph)
    assert info.value.stage == "consumer" and info.value.parameter == "when"
    assert "cache=False" in str(info.value)


def test_input_keys_chain_and_cache_false_outputs() -> None:
    """A consumer's key follows its input's key, or the input's value once it is given."""
    pipeline = Pipeline([_numbers, bind(_consumer, "consumer")])
    base = plan_keys(build_graph(pipeline))
    other = plan_keys(build_graph(pipeline, {"count": 4}))
    assert base["consumer"].key != other["consumer"].key
    by_value = plan_keys(build_graph(pipeline), outputs={"_numbers": [0, 1, 2]})
    same = plan_keys(build_graph(pipeline, {"count": 4}), outputs={"_numbers": [0, 1, 2]})
    assert by_value["consumer"].key == same["consumer"].key


def test_plan_keys_of_200_stages_is_fast() -> None:
    """Keys for a 200-stage chain take well under 0.1 s once the code is analysed."""
    stages = [bind(_numbers, "s0")]
    for i in range(1, 200):
        stages.append(bind(_consumer, f"s{i}", inputs={"_numbers": f"s{i - 1}"}, when=i))
    graph = build_graph(Pipeline(stages))
    plan_keys(graph)
    start = time.perf_counter()
    result = plan_keys(graph)
    elapsed = time.perf_counter() - start
    print(f"plan_keys, 200 stages: {elapsed * 1000:.1f} ms")
    assert len({r.key for r in result.values()}) == 200
    assert elapsed < 0.1


@pytest.mark.slow
def test_input_parameters_are_not_code_references(project: Path) -> None:
    """A parameter named like its upstream stage is an input, not a reference to its code."""
    out = subprocess.run(
        [sys.executable, str(TOOL), "keys", "pipeline.py"],
        cwd=project, capture_output=True, text=True, check=True, timeout=60,
    )
    code = json.loads(out.stdout)["combined"][1]["code"]
    assert set(code) == {"pipeline.combined", "pipeline.log", "pipeline.OFFSET"}
    before = keys(project)
    edit(project / "pipeline.py", "np.arange(n) *", "np.arange(n + 0) *")
    assert changed(before, keys(project)) == {"source", "combined", "total"}


@pytest.fixture
def wrapped(tmp_path: Path) -> Path:
    """A private copy of the project whose stage sits under a decorator from another module."""
    target = tmp_path / "wrapped"
    shutil.copytree(RESOURCES / "cache_wrapped", target)
    return target


def components(project: Path) -> dict[str, dict]:
    out = subprocess.run(
        [sys.executable, str(TOOL), "keys", "pipeline.py"],
        cwd=project, capture_output=True, text=True, check=True, timeout=60,
    )
    return {name: pair[1] for name, pair in json.loads(out.stdout).items()}


@pytest.mark.slow
def test_a_wrapped_stage_follows_its_body_its_helpers_and_the_wrapper(wrapped: Path) -> None:
    """Under a functools.wraps decorator from another module, an edit to the stage's body,
    to a helper it calls, or to the wrapper itself changes its key (and what it feeds)."""
    before = keys(wrapped)
    edit(wrapped / "pipeline.py", "return name.upper()", "return name.lower()")
    after_helper = keys(wrapped)
    assert changed(before, after_helper) == {"names", "summed"}
    edit(wrapped / "pipeline.py", 'return [_shout("dave")]', 'return [_shout("eve")]')
    after_body = keys(wrapped)
    assert changed(after_helper, after_body) == {"names", "summed"}
    edit(wrapped / "timing.py", "elapsed.append(", "elapsed.insert(0, ")
    assert changed(after_body, keys(wrapped)) == {"names", "summed"}


@pytest.mark.slow
def test_library_functions_count_by_version_not_as_untracked(wrapped: Path) -> None:
    """numpy's ufuncs and pyarrow's compiled functions are their library's, not 'not tracked'."""
    summed = components(wrapped)["summed"]
    assert summed["untracked"] == []
    assert {"library numpy", "library pyarrow"} <= set(summed["code"])


@pytest.mark.slow
def test_a_watched_glob_follows_the_files_it_matches(wrapped: Path) -> None:
    """watch=['feed/*.txt'] matches nothing at first (and says so), then keys by every match."""
    empty = components(wrapped)["feed"]
    assert empty["files"] == {"watch:feed/*.txt": "missing"}
    (wrapped / "feed").mkdir()
    (wrapped / "feed" / "a.txt").write_text("one")
    first = keys(wrapped)["feed"]
    (wrapped / "feed" / "b.txt").write_text("two")
    second = keys(wrapped)["feed"]
    (wrapped / "feed" / "a.txt").write_text("uno")
    third = keys(wrapped)["feed"]
    assert len({first, second, third}) == 3


def test_a_stage_without_source_runs_every_time_and_says_why() -> None:
    """Code with no source to read (made by exec, with nothing in linecache) is volatile;
    the same code whose source linecache holds (a notebook cell) is keyed as usual."""
    import linecache

    source = "def blind(n: int = 2) -> int:\n    return n * 2\n"
    scope: dict = {"__name__": "cells"}
    exec(compile(source, "<no-file>", "exec"), scope)
    graph = build_graph(Pipeline([stage(scope["blind"])]), {})
    record = plan_keys(graph, root=Path.cwd())["blind"]
    assert record.volatile and "source not available" in record.why

    cell = "<cell-7>"
    linecache.cache[cell] = (len(source), None, source.splitlines(True), cell)
    scope = {"__name__": "cells"}
    exec(compile(source, cell, "exec"), scope)
    graph = build_graph(Pipeline([stage(scope["blind"])]), {})
    assert not plan_keys(graph, root=Path.cwd())["blind"].volatile
