"""Every error a user of dagrun can meet, rooted at one ``DagrunError``.

    DagrunError
    ├── UsageError                 a mistake in how dagrun was called (exit 2)
    │   ├── PipelineLoadError      the pipeline file or module cannot be imported
    │   ├── ValidationError        the pipeline is invalid; lists every problem at once
    │   ├── ParameterError         a --param / params= value is unknown or does not convert
    │   └── UnhashableParameter    a parameter value cannot be part of a cache key
    ├── LockHeldError              another run holds this pipeline's lock (exit 3)
    ├── StageFailed                a stage raised, crashed or timed out (exit 1)
    │   ├── WorkerCrashed          the worker process died while running the task
    │   └── StageTimeout           the task ran past its ``timeout``
    ├── StoreError                 an intermediate could not be stored or read
    │   ├── StoreFull              no room in shared memory nor on disk for a value
    │   ├── SegmentExistsError     a new segment's name was taken (never attached to)
    │   ├── SegmentMissingError    a handle names a segment that is gone
    │   └── CacheError             the cache directory cannot be used
    │       └── CacheCorrupt       a cache entry is damaged (it is recomputed)
    ├── RunTimedOut                the run passed its ``max_runtime`` (status timed_out, exit 124)
    └── Interrupted                SIGINT / SIGTERM stopped the run (exit 130 / 143)

User mistakes (``UsageError``) are told apart from failures of the work
itself; the CLI maps the tree to exit codes in one place
(``cli.options.exit_code_for``). ``RunTimedOut`` and ``Interrupted`` stop a
run from inside; ``dagrun.run`` reports them as the result's status, and
re-raises ``Interrupted`` once everything is cleaned up.
"""

from __future__ import annotations

from collections.abc import Sequence


class DagrunError(Exception):
    """Root of every error dagrun raises."""


class UsageError(DagrunError):
    """dagrun was called wrongly: nothing ran."""


class PipelineLoadError(UsageError):
    """The pipeline file or module could not be imported."""


class ParameterError(UsageError):
    """A pipeline parameter is unknown or its value does not convert."""


class ValidationError(UsageError):
    """The pipeline is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        if count == 1:
            msg = self.problems[0]
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            msg = f"{count} errors encountered:\n{lines}"
        super().__init__(msg)


class LockHeldError(DagrunError):
    """Another run holds this pipeline's lock."""


class StageFailed(DagrunError):
    """A stage did not produce its result."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        super().__init__(f"stage {stage!r} failed: {message}")


class WorkerCrashed(StageFailed):
    """The worker process running the stage died."""


class StageTimeout(StageFailed):
    """The stage ran past its timeout and its worker was stopped."""


class StoreError(DagrunError):
    """An intermediate value could not be stored or read back."""


class StoreFull(StoreError):
    """Neither shared memory nor the spill directory has room for a value."""


class UnhashableParameter(UsageError):
    """A stage's parameter value cannot be hashed into the stage's cache key."""

    def __init__(self, stage: str, parameter: str, reason: str) -> None:
        self.stage = stage
        self.parameter = parameter
        super().__init__(
            f"parameter {parameter!r} of stage {stage!r} cannot be part of the cache key: "
            f"{reason}; pass plain data (numbers, strings, paths, arrays, tables), or mark "
            f"the stage @stage(cache=False)"
        )


class SegmentExistsError(StoreError):
    """A new segment's name already existed: dagrun refuses to attach to it."""


class SegmentMissingError(StoreError):
    """A handle names a segment that was released or removed."""


class CacheError(StoreError):
    """The cache directory or one of its entries cannot be used."""


class CacheCorrupt(CacheError):
    """A cache entry is truncated or damaged; the stage is recomputed."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cache entry {path} is damaged: {reason}")


class RunTimedOut(DagrunError):
    """The whole run passed its ``max_runtime``: it is stopped (status ``timed_out``)."""

    def __init__(self, seconds: float | None) -> None:
        super().__init__(f"the run passed its maximum run time of {seconds:g} s and was stopped")


class Interrupted(DagrunError):
    """The run was stopped by a signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by signal {signum}")
