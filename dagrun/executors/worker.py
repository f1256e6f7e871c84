"""Run one task where the executor put it: decode inputs, call the stage, encode.

``execute`` never raises for anything the stage does: an exception (even
``SystemExit``, or one whose ``__str__`` raises), an input that cannot be
read, a ``@worker_init`` resource that fails, a result that will not pickle
or store, all become an
``ErrorInfo`` in the returned ``TaskOutcome``, with the user's traceback
(frames of dagrun itself trimmed) and the chained causes.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import resource
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import store
from ..resources import Resources
from ..store import Decoded, StoreConfig
from ..values import concatenate, row_chunk, stack_batch
from ..values import rows as _rows
from .base import Batched, ErrorInfo, Output, TaskMetrics, TaskOutcome, TaskSpec

_PACKAGE = str(Path(__file__).resolve().parent.parent)
_READ_ONLY_HINT = (
    "inputs are read-only views shared with other stages; copy before writing "
    "(e.g. `arr = arr.copy()`)"
)


def execute(
    spec: TaskSpec,
    func: Callable[..., Any],
    config: StoreConfig,
    resources: Resources | None = None,
    *,
    in_worker: bool = False,
) -> TaskOutcome:
    """Run ``spec`` with ``func`` and return its outcome; never raises for user errors.

    ``resources`` supplies the stage's ``@worker_init`` values. In a worker
    process (``in_worker``) even ``KeyboardInterrupt`` is the stage's error:
    the driver, not the worker, owns Ctrl-C; inline, it propagates.
    """
    started_at = time.time()
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    _reset_peak_rss()
    stage = spec.key.stage
    opened: list[Decoded] = []
    handle = None
    error = None
    input_bytes = 0
    items = None
    try:
        kwargs = dict(spec.params)
        for pname, output in spec.inputs.items():
            kwargs[pname] = _load(output, config, stage, opened, pname)
            input_bytes += output.nbytes
        for pname, rname in spec.resources.items():
            kwargs[pname] = _resource(resources, rname)
        with store.active(config, stage, keep=spec.keep):
            if spec.items is None:
                value = func(**kwargs)
            else:
                value = _run_batch(func, kwargs, spec)
                items = spec.items[1] - spec.items[0]
        kind = type(value).__name__
        # Consumers of a concatenated map see the joined rows: a later map splits by rows.
        rows = sum(map(_rows, value)) if spec.concat and spec.items is not None else None
        try:
            box, value = [value], None  # hand over this frame's reference
            handle = store.encode_result(box, config, stage, keep=spec.keep)
            if rows is not None:
                handle = dataclasses.replace(handle, length=rows)
        except Exception as exc:
            exc.add_note(
                f"the result of stage {stage!r} (a {kind}) could not be stored "
                f"for the stages that consume it; return data that pickles (no locks, open "
                f"files, lambdas or generators)"
            )
            raise
        del value
    except KeyboardInterrupt as exc:
        if not in_worker:
            raise
        error = error_info(exc, stage)
    except BaseException as exc:  # noqa: BLE001 - a worker always reports back
        error = error_info(exc, stage)
    finally:
        for decoded in opened:
            decoded.close()
    metrics = TaskMetrics(
        worker_pid=os.getpid(),
        wall_s=time.perf_counter() - wall0,
        cpu_s=time.process_time() - cpu0,
        max_rss_bytes=_peak_rss(),
        queue_wait_s=max(0.0, started_at - spec.submitted_at),
        input_bytes=input_bytes,
        output_bytes=handle.nbytes if handle is not None else 0,
        transport=handle.transport if handle is not None else "",
        started_at=started_at,
        items=items,
    )
    return TaskOutcome(spec.key, spec.attempt, handle, error, metrics)


def _run_batch(func: Callable[..., Any], kwargs: dict[str, Any], spec: TaskSpec) -> list[Any]:
    """Run elements ``[start, stop)`` of the mapped input; one result per call, in order.

    A sequence or array is mapped element by element (``value[i]``: for a numpy
    array a zero-copy view along axis 0 of the shared input). A table (Arrow
    ``Table``/``RecordBatch``, pandas or polars ``DataFrame``) is mapped over
    row chunks: one call per batch, given rows ``[start, stop)`` as a zero-copy
    slice, so the batch's list holds one result.
    """
    assert spec.map_input is not None and spec.items is not None
    start, stop = spec.items
    value = kwargs[spec.map_input]
    rows = row_chunk(value, start, stop)
    if rows is not None:
        kwargs[spec.map_input] = rows
        try:
            return [func(**kwargs)]
        except Exception as exc:
            exc.add_note(f"while mapping rows {start}..{stop - 1} of {spec.map_input!r}")
            raise
    elements = value[start:stop]
    results = []
    for offset in range(stop - start):
        kwargs[spec.map_input] = elements[offset]
        try:
            results.append(func(**kwargs))
        except Exception as exc:
            exc.add_note(f"while mapping element {start + offset} of {spec.map_input!r}")
            raise
    # concat=True: the batch becomes one chunk of rows now (see ``values``).
    return [stack_batch(results)] if spec.concat else results


def _load(
    output: Output, config: StoreConfig, stage: str, opened: list[Decoded], pname: str
) -> Any:
    try:
        if not isinstance(output, Batched):
            decoded = store.decode(output, config, stage)
            opened.append(decoded)
            return decoded.value
        parts: list[Any] = []
        for handle in output.handles:
            decoded = store.decode(handle, config, stage)
            opened.append(decoded)
            parts.extend(decoded.value)
        return concatenate(parts) if output.concat else parts
    except Exception as exc:
        exc.add_note(f"while reading input {pname!r} of stage {stage!r}")
        raise


def _resource(resources: Resources | None, name: str) -> Any:
    if resources is None:
        msg = f"no worker resources were given to this executor (resource {name!r})"
        raise RuntimeError(msg)
    try:
        return resources.get(name)
    except Exception as exc:
        exc.add_note(f"while making worker resource {name!r} (its @worker_init function)")
        raise


def error_info(exc: BaseException, stage: str, kind: str = "raised") -> ErrorInfo:
    """Describe ``exc`` with the user's traceback; keep the exception if it pickles."""
    if isinstance(exc, ValueError) and "read-only" in str(exc):
        exc.add_note(f"stage {stage!r} wrote into one of its inputs: {_READ_ONLY_HINT}")
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        tb = tb.tb_next
    message = _text(exc)
    try:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except Exception:  # noqa: BLE001 - a broken __str__ deep in the chain
        frames = "".join(traceback.format_tb(tb))
        text = f"Traceback (most recent call last):\n{frames}{type(exc).__name__}: {message}\n"
    notes = getattr(exc, "__notes__", None)
    if notes and isinstance(notes, list):
        notes = [str(n) for n in notes]
        message = "; ".join([message, *notes]) if message else "; ".join(notes)
    if isinstance(exc, SystemExit):
        message = f"the stage called sys.exit({exc.code!r})"
    elif isinstance(exc, KeyboardInterrupt):
        message = "the stage raised KeyboardInterrupt (Ctrl-C is handled by the driver)"
    try:
        blob: bytes | None = pickle.dumps(exc, protocol=5)
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - an exception that does not pickle is still reported
        blob = None
    names = tuple(f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__)
    return ErrorInfo(kind, type(exc).__name__, message, text, names, blob)


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as inner:  # noqa: BLE001 - the user's __str__ raised
        return f"<str() of this exception raised {type(inner).__name__}: {inner}>"


_clear_refs: tuple[int, int] | None = None  # (pid, fd): /proc/self is per process


def _reset_peak_rss() -> None:
    # Linux: writing "5" to clear_refs resets the peak RSS, which getrusage then
    # reports, so the peak is this task's own rather than the worker's lifetime.
    global _clear_refs
    pid = os.getpid()
    if _clear_refs is None or _clear_refs[0] != pid:
        try:
            _clear_refs = (pid, os.open("/proc/self/clear_refs", os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            _clear_refs = (pid, -1)
    if _clear_refs[1] >= 0:
        try:
            os.write(_clear_refs[1], b"5")
        except OSError:
            pass


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
