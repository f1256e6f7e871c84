"""Validation reports every problem at once, before anything runs."""

from __future__ import annotations

import pytest

import dagrun
from dagrun.errors import PipelineLoadError, ValidationError
from dagrun.graph import build_graph
from dagrun.loader import load
from tests.conftest import resource


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
