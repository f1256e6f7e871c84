"""The engine-side task body (``remote.run_task``: ``worker.perform`` given an engine's
edges) in this process, beside the local one, and ``drive``: the
runner's use of an executor (submit when inputs are ready, wait, retry, read), which the
Dask and Ray tests use to drive those executors exactly as the runner does."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dagrun.control.scheduler import TaskKey
from dagrun.executors.base import Batched, ErrorInfo, Event, TaskOutcome, TaskSpec
from dagrun.executors.engines.checks import check_feasible, check_versions, demand
from dagrun.executors.engines.engine import task_key
from dagrun.executors.engines.remote import Blob, Call, nbytes_of, run_task, versions
from dagrun.graph.build import build_graph
from dagrun.pipeline.loader import load
from dagrun.pipeline.stage import StageOptions
from dagrun.store import StoreConfig
from dagrun.values import concatenate
from tests.conftest import resource

RESOURCES = Path(__file__).parent / "resources"


@dataclasses.dataclass
class Driven:
    """What ``drive`` saw: target values, every event, and the final error per stage."""

    values: dict[str, Any]
    events: list[Event]
    errors: dict[str, ErrorInfo]

    def outcomes(self, stage: str) -> list[TaskOutcome]:
        return [e for e in self.events if isinstance(e, TaskOutcome) and e.key.stage == stage]


def context_for(name: str, state_dir: Path, *, params: dict | None = None, workers: int = 2,
                address: Any = None, targets: list[str] | None = None):
    """(graph, ExecutorContext) for fixture pipeline ``name``."""
    from dagrun.executors.base import ExecutorContext

    pipe = load(resource(name))
    graph = build_graph(pipe, params, targets)
    config = StoreConfig.for_run(f"t{time.monotonic_ns():x}", state_dir)
    context = ExecutorContext(
        funcs={n: graph.nodes[n].stage.func for n in graph.selected},
        resources={n: r.func for n, r in graph.resources.items()},
        options={n: graph.nodes[n].stage.options for n in graph.selected},
        config=config, workers=workers, sources=(pipe.source,), address=address,
    )
    return graph, context


def drive(exe: Any, graph: Any, *, budget_s: float = 60.0) -> Driven:
    """Run ``graph`` on ``exe`` the way the runner does; read the targets; release the rest."""
    outputs: dict[str, Any] = {}
    batches: dict[str, list[Any]] = {}
    events: list[Event] = []
    errors: dict[str, ErrorInfo] = {}
    waiting = list(graph.selected)
    queue: list[TaskSpec] = []
    running = 0
    deadline = time.monotonic() + budget_s
    while waiting or queue or running:
        assert time.monotonic() < deadline, f"stuck: {waiting} {queue} {running}"
        for name in list(waiting):
            node = graph.nodes[name]
            if any(u in errors for u in node.inputs.values()):
                waiting.remove(name)
            elif all(u in outputs for u in node.inputs.values()):
                waiting.remove(name)
                queue.extend(_plan(node, outputs, batches))
                if node.map_input is not None and not batches[name]:
                    outputs[name] = Batched((), node.stage.options.concat)
        while queue and exe.free_slots() > 0:
            exe.submit(queue.pop(0))
            running += 1
        if not running:
            continue
        for event in exe.wait(1.0):
            events.append(event)
            if not isinstance(event, TaskOutcome):
                continue
            running -= 1
            key, node = event.key, graph.nodes[event.key.stage]
            if event.error is not None:
                if event.attempt <= node.stage.options.retries:
                    spec = _spec(node, key, outputs, event.attempt + 1, _size(node, outputs))
                    queue.append(spec)
                else:
                    errors[key.stage] = event.error
            elif key.batch is None:
                outputs[key.stage] = event.handle
            else:
                batches[key.stage][key.batch] = event.handle
                if all(h is not None for h in batches[key.stage]):
                    outputs[key.stage] = Batched(tuple(batches[key.stage]),
                                                 node.stage.options.concat)
    values = {}
    for name in graph.targets:
        output = outputs.get(name)
        if isinstance(output, Batched):
            parts = [x for h in output.handles for x in exe.read(h, name).value]
            values[name] = concatenate(parts) if output.concat else parts
        elif output is not None:
            values[name] = exe.read(output, name).value
    for output in outputs.values():
        for handle in output.handles if isinstance(output, Batched) else (output,):
            exe.release(handle)
    return Driven(values, events, errors)


def _size(node: Any, outputs: dict[str, Any]) -> int:
    if node.map_input is None:
        return 0
    length = outputs[node.inputs[node.map_input]].length or 0
    return node.stage.options.batch_size or max(1, math.ceil(length / 8))


def _plan(node: Any, outputs: dict[str, Any], batches: dict[str, list[Any]]) -> list[TaskSpec]:
    if node.map_input is None:
        return [_spec(node, TaskKey(node.name), outputs, 1, 0)]
    size = _size(node, outputs)
    count = math.ceil((outputs[node.inputs[node.map_input]].length or 0) / size)
    batches[node.name] = [None] * count
    return [_spec(node, TaskKey(node.name, i), outputs, 1, size) for i in range(count)]


def _spec(node: Any, key: TaskKey, outputs: dict, attempt: int, size: int) -> TaskSpec:
    inputs = {p: outputs[u] for p, u in node.inputs.items()}
    options = node.stage.options
    if key.batch is None:
        return TaskSpec(key, attempt, inputs, node.params, time.time(), timeout=options.timeout,
                        resources=node.resources)
    length = inputs[node.map_input].length
    items = (key.batch * size, min(length, (key.batch + 1) * size))
    return TaskSpec(key, attempt, inputs, node.params, time.time(), node.map_input, items,
                    options.timeout, node.resources, options.concat)


# -- the task body, in this process ----------------------------------------
def _call(func: Any, spec: TaskSpec, layout=(), resources=()) -> Call:
    return Call("run1", spec, Blob.of(func), resources, layout, False, lambda: "here")


def _noisy(values: np.ndarray) -> float:
    import logging

    print("summing", len(values))
    logging.getLogger("noisy").warning("warning line")
    return float(values.sum())


def test_task_body_captures_output_and_metrics():
    """Printed and logged lines come back with the report; the input arrives read-only."""
    spec = TaskSpec(TaskKey("total"), 1, {}, {}, time.time())
    value, report = run_task(_call(_noisy, spec, (("values", 1, False, False),)), np.ones(4))
    assert value == 4.0 and report.error is None
    assert ("stdout", "info", "summing 4") in report.logs
    assert ("logging", "warning", "warning line") in report.logs
    assert report.metrics.worker == "here" and report.metrics.input_bytes == 32


def _writes(values: np.ndarray) -> None:
    values[0] = 1


def test_task_body_reports_a_write_into_an_input():
    """Writing into an input is the stage's error, with the read-only hint; never a raise."""
    spec = TaskSpec(TaskKey("w"), 1, {}, {}, time.time())
    value, report = run_task(_call(_writes, spec, (("values", 1, False, False),)), np.zeros(3))
    assert value is None and report.error is not None
    assert "read-only" in report.error.message and report.error.kind == "raised"


def _double(x: int) -> int:
    return 2 * x


def test_task_body_slices_a_batch_of_a_mapped_input():
    """A batch gets elements [start, stop) of a batched input and reports their count."""
    spec = TaskSpec(TaskKey("d", 1), 1, {}, {}, time.time(), "x", (2, 5))
    layout = (("x", 2, True, False),)
    value, report = run_task(_call(_double, spec, layout), [0, 1, 2], [3, 4, 5])
    assert value == [4, 6, 8] and report.length == 3 and report.metrics.items == 3


def test_a_result_that_does_not_pickle_is_the_stages_error():
    """A lock returned by a stage fails that stage with a hint, not its consumer later."""
    import threading

    spec = TaskSpec(TaskKey("lock"), 1, {}, {}, time.time())
    value, report = run_task(_call(threading.Lock, spec), )
    assert report.error is not None and "could not be pickled" in report.error.message
    assert nbytes_of(np.zeros(3)) == 24


def test_versions_mismatch_names_worker_and_versions():
    """A worker with another numpy is a UsageError naming the worker and both versions."""
    from dagrun.errors import UsageError

    check_versions("Dask", {"w1": versions()})
    other = {**versions(), "numpy": "0.1"}
    with pytest.raises(UsageError, match=r"w2: numpy 0\.1 \(driver"):
        check_versions("Dask", {"w1": versions(), "w2": other})


def test_infeasible_stage_is_named_before_running():
    """A stage asking for a GPU no worker offers is a UsageError naming it."""
    from dagrun.errors import UsageError

    needs = {"train": demand(StageOptions(gpus=1)), "prep": demand(StageOptions())}
    assert needs["prep"] == {}
    check_feasible("Ray", {"prep": {}}, {"n1": {"CPU": 2}}, "hint")
    with pytest.raises(UsageError, match="stage 'train' needs GPU=1"):
        check_feasible("Ray", needs, {"n1": {"CPU": 2}}, "hint")


def test_task_keys_name_run_stage_batch_and_attempt():
    """Keys are deterministic: run id, stage, batch and attempt."""
    spec = TaskSpec(TaskKey("s", 3), 2, {}, {}, 0.0)
    assert task_key("r1", spec) == "dagrun-r1-s-3-2"


def _fails(values: np.ndarray) -> None:
    raise ValueError(f"bad input of {len(values)}")


def test_local_and_engine_workers_report_the_same_error(tmp_path):
    """One task body: the store's edges and an engine's give the user the same error."""
    from dagrun.executors.worker import execute
    from dagrun.store import encode

    config = StoreConfig.for_run("same", tmp_path)
    spec = TaskSpec(TaskKey("f"), 1, {}, {}, time.time())
    local = execute(dataclasses.replace(spec, inputs={"values": encode(np.ones(2), config, "u")}),
                    _fails, config, in_worker=True).error
    value, report = run_task(_call(_fails, spec, (("values", 1, False, False),)), np.ones(2))
    assert local is not None and report.error is not None and value is None
    assert (report.error.kind, report.error.error_type, report.error.message) == (
        local.kind, local.error_type, local.message)
    assert report.error.traceback == local.traceback
    assert "in _fails" in local.traceback and "dagrun/executors" not in local.traceback


def test_a_worker_resource_that_fails_is_the_stages_error():
    """A failing @worker_init value fails the task with its note, on an engine as locally."""
    def broken() -> Any:
        raise OSError("no device")

    def uses(dev: Any) -> int:
        return 1

    spec = TaskSpec(TaskKey("r"), 1, {}, {}, time.time(), resources={"dev": "gpu"})
    call = Call("run-res", spec, Blob.of(uses), (("gpu", Blob.of(broken)),), (), False,
                lambda: "here")
    value, report = run_task(call)
    assert value is None and report.error is not None
    assert "while making worker resource 'gpu'" in report.error.message
