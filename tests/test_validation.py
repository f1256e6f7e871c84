"""Validation reports every problem at once, before anything runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import dagrun
from dagrun.errors import PipelineLoadError, ValidationError
from dagrun.graph.build import build_graph
from dagrun.pipeline.loader import load
from tests.conftest import resource

DAGRUN = str(Path(sys.executable).with_name("dagrun"))  # the interpreter running the tests


def problems_of(name: str, **kwargs) -> list[str]:
    with pytest.raises(ValidationError) as info:
        build_graph(load(resource(name)), **kwargs)
    return info.value.problems


def test_every_problem_is_reported_together():
    """A cycle, a missing input, a lambda and a nested function: four problems, one error."""
    problems = problems_of("invalid")
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "cycle: alpha -> beta -> gamma -> alpha" in text
    assert "stage 'lonely' needs 'sourse'" in text and "did you mean 'source'" in text
    assert "stage 'anonymous' is a lambda" in text
    assert "stage 'inner' is a nested function" in text


def test_unknown_param_and_target_with_suggestions():
    """Unknown --param and --target names are named, with the closest match."""
    problems = problems_of("hello", params={"nmae": "x"}, targets=["reprot"])
    assert any("unknown parameter 'nmae' (did you mean 'name'?)" in p for p in problems)
    assert any("unknown target 'reprot' (did you mean 'report'?)" in p for p in problems)


def test_bad_value_names_the_parameter():
    """A value that does not convert names the parameter and the expected type."""
    problems = problems_of("params_pipeline", params={"count": "three"})
    assert problems == [
        "parameter 'count' of stage 'settings': 'three' is not a valid int; "
        "give a value of type int"
    ]


def test_duplicate_names_are_an_error():
    """Two different stages called 'same' are reported."""
    problems = problems_of("duplicates")
    assert any("two different stages are named 'same'" in p for p in problems)


def test_syntax_error_shows_file_and_line():
    """A pipeline that does not parse names its file and line."""
    with pytest.raises(PipelineLoadError) as info:
        load(resource("syntax_error"))
    assert "syntax_error.py, line 6" in str(info.value)


def test_import_error_and_missing_file():
    """An import failure and a missing file are load errors with the cause."""
    with pytest.raises(PipelineLoadError, match="definitely_not_a_module_xyz"):
        load(resource("import_error"))
    with pytest.raises(PipelineLoadError, match="does not exist"):
        load("no/such/pipeline.py")
    with pytest.raises(PipelineLoadError, match="neither a .py file nor an importable module"):
        load("no_such_module_xyz")


def test_parameters_convert_by_annotation():
    """Text values convert to int, float, bool, str, Path and list[int]."""
    graph = build_graph(
        load(resource("params_pipeline")),
        params={"count": "3", "ratio": "2.5", "verbose": "yes", "where": "/tmp", "sizes": "4,5"},
    )
    values = graph.nodes["settings"].params
    assert values["count"] == 3 and values["ratio"] == 2.5 and values["verbose"] is True
    assert str(values["where"]) == "/tmp" and values["sizes"] == [4, 5]


def test_explicit_pipeline_wins():
    """`pipeline = Pipeline(...)` in the module is the pipeline."""
    assert list(load(resource("explicit")).stages) == ["kept"]


def test_bad_map_target_and_options():
    """map= must name an input; batch_size and timeout must be positive."""

    def make():
        return dagrun.bind(_double, name="m")

    record = make()
    from dataclasses import replace

    bad = replace(record, options=replace(record.options, map="nothing", timeout=-1))
    with pytest.raises(ValidationError) as info:
        build_graph(dagrun.Pipeline([bad]))
    text = str(info.value)
    assert "maps over 'nothing', which is not one of its inputs" in text
    assert "timeout must be a positive number" in text


def _double(x: int = 1) -> int:
    return 2 * x


def test_include_binds_unknown_param_is_an_error():
    """include() refuses to bind a parameter no included stage takes."""
    from tests.resources import reusable

    with pytest.raises(dagrun.UsageError, match="binds 'cuont'"):
        dagrun.include(reusable, prefix="p", params={"cuont": 1})


# -- mistakes that used to surface only at run time ------------------------------------
def test_late_errors_are_validation_problems():
    """Every mistake of late_errors.py is one problem naming its stage and the fix."""
    text = "\n".join(problems_of("late_errors"))
    for stage, fix in [
        ("wrapped", "put @stage on the top line"),
        ("hidden", "put @stage on the top line"),
        ("generated", "is a generator function"),
        ("awaited", "is an `async def` function"),
        ("method", "is a method of class 'Holder'"),
        ("each", "returns int, which cannot be split"),
        ("itself", "a stage cannot consume its own output"),
        ("locked", "cannot be sent to a worker process"),
    ]:
        assert f"stage {stage!r}" in text and fix in text, (stage, text)
    for option in ["batch_size must be", "retries must be", "retry_delay must be",
                   "timeout must be", "cpus must be", "gpus must be", "memory must be",
                   "resources must map", "watch= takes file paths"]:
        assert f"stage 'optioned': {option}" in text, (option, text)


def test_a_pipeline_without_stages_is_invalid(tmp_path):
    """No stages (an empty file, undecorated functions, a package) is an error, not a no-op."""
    empty = tmp_path / "empty.py"
    empty.write_text("")
    for target in [str(empty), resource("no_stages"), "tests.resources"]:
        with pytest.raises(ValidationError, match="has no stages"):
            build_graph(load(target))


def test_a_directory_is_not_a_pipeline(tmp_path):
    """A directory given as the pipeline says so and how to name a package's module."""
    with pytest.raises(PipelineLoadError, match="is a directory"):
        load(str(tmp_path) + "/")


def test_a_param_named_like_a_stage_is_explained():
    """--param NAME where NAME is a stage: it is that stage's output, not a parameter."""
    problems = problems_of("hello", params={"greeting": "hi"})
    assert any("'greeting' is a stage, not a parameter" in p for p in problems), problems


@pytest.mark.slow
@pytest.mark.parametrize("command", ["validate", "run", "list", "graph"])
def test_every_command_exits_2_before_running(command, tmp_path):
    """Each command reports late_errors.py as invalid with exit 2 and no traceback."""
    import subprocess

    from tests.conftest import ROOT

    args = [DAGRUN, command, resource("late_errors")]
    if command == "run":
        args += ["--state-dir", str(tmp_path)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "bug in dagrun" not in done.stderr
    assert "is a generator function" in done.stderr


@pytest.mark.slow
def test_odd_inputs_never_reach_an_internal_error(tmp_path):
    """Odd pipelines and arguments are usage errors (exit 2), never 'a bug in dagrun'."""
    import subprocess

    from tests.conftest import ROOT

    empty = tmp_path / "empty.py"
    empty.write_text("")
    cases = [
        ["validate", str(empty)],
        ["validate", str(tmp_path) + "/"],
        ["validate", "tests.resources"],
        ["validate", resource("syntax_error")],
        ["validate", resource("hello"), "--target", "nope"],
        ["validate", resource("hello"), "--param", "greeting=x"],
        ["run", resource("hello"), "--state-dir", str(tmp_path / "s"), "--workers", "0"],
    ]
    for case in cases:
        done = subprocess.run([DAGRUN, *case], capture_output=True,
                              text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 2, (case, done.stderr)
        assert "bug in dagrun" not in done.stderr and "Traceback" not in done.stderr, case


@pytest.mark.parametrize("how", ["inline", "fork", "forkserver", "spawn"])
def test_a_stage_returning_a_generator_fails_as_the_stage(how, tmp_path):
    """A generator returned (not yielded) is the stage's own failure, exit 1, under each
    start method; nothing is left behind."""
    import dagrun

    pipe = tmp_path / "gives_generator.py"
    pipe.write_text(
        "from dagrun import stage\n\n\n@stage\ndef lazy() -> object:\n"
        "    return (i for i in range(3))\n"
    )
    executor, method = ("inline", None) if how == "inline" else ("local", how)
    with dagrun.run(str(pipe), executor=executor, start_method=method, workers=1,
                    state_dir=tmp_path / "s", log_format="none") as result:
        assert result.status == "failed"
        assert "could not be stored" in str(result.errors["lazy"].__cause__) or \
            "could not be stored" in str(result.errors["lazy"])
