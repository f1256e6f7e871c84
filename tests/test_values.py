"""Secret parameters and the value kinds: conversion, masking, what reaches the stage."""

from __future__ import annotations

import numpy as np
import pytest

import dagrun
from dagrun.errors import ValidationError
from dagrun.graph.build import build_graph, mask_params
from dagrun.pipeline.loader import load
from dagrun.pipeline.params import MASK, Secret, is_secret, plain
from dagrun.values import kind, unsplittable_annotation
from tests.conftest import resource


def test_secret_is_an_annotation_of_its_inner_type():
    """Secret[int] is recognised as secret and stands for int."""
    assert is_secret(Secret[int]) and plain(Secret[int]) is int
    assert is_secret(Secret[str] | None) and not is_secret(str)


def test_secret_values_convert_and_are_masked():
    """A Secret converts like its type, reaches the node plain, and is masked for logs."""
    graph = build_graph(load(resource("secrets_pipeline")),
                        params={"token": "s3cret", "port": "6543"})
    assert graph.nodes["connect"].params == {"token": "s3cret", "port": 6543,
                                             "host": "localhost"}
    assert mask_params(graph) == {"token": MASK, "port": MASK, "host": "localhost"}


def test_a_secret_that_does_not_convert_is_not_echoed():
    """The error for a bad Secret value names the parameter, never the value."""
    with pytest.raises(ValidationError) as info:
        build_graph(load(resource("secrets_pipeline")), params={"port": "hunter2"})
    assert "hunter2" not in str(info.value) and "'port'" in str(info.value)


@pytest.mark.parametrize("how", [("inline", None), ("local", "spawn")], ids=["inline", "spawn"])
def test_the_stage_gets_the_plain_value(how, tmp_path):
    """The stage receives the value itself (a str, an int), not a wrapper."""
    executor, method = how
    with dagrun.run(resource("secrets_pipeline"), params={"token": "abc"}, executor=executor,
                    start_method=method, workers=1, state_dir=tmp_path,
                    log_format="none") as result:
        assert result["connect"] == "str:abc@localhost:5433"


def test_kinds_and_splittable_annotations():
    """Value kinds without importing frame libraries; which annotations cannot be mapped."""
    assert kind(np.ones(3)) == "array" and kind((1, 2)) == "list" and kind(3) == "other"
    assert unsplittable_annotation(int) and unsplittable_annotation(dict[str, int])
    assert unsplittable_annotation(float | None)
    assert not unsplittable_annotation(list[int]) and not unsplittable_annotation(np.ndarray)
    assert not unsplittable_annotation(None)
