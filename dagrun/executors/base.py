"""What travels between the runner and an executor, and the ``Executor`` protocol.

    runner ──TaskSpec──▶ executor ──▶ worker: execute(spec) ──▶ TaskOutcome ──▶ runner
                                  ├──▶ Started (a task began: which worker, which host)
                                  └──▶ TaskLog (a line the stage printed or logged)

A ``TaskSpec`` names its inputs by reference (never by content): a store
``Handle`` on this machine, a ``RemoteRef`` on a cluster engine, whose
executor alone knows the future or object ref behind it. A ``TaskOutcome``
carries the result's reference or an ``ErrorInfo``, and always the task's
``TaskMetrics``. Every executor (inline, local process pool, Dask, Ray, a
test's scripted one) honours the same protocol and is built by name from an
``ExecutorContext`` (see ``executors.create``), so the runner's loop never
changes for a new one and one behaviour suite runs on each.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ..settings import Tuning
from ..store import Decoded, Handle, StoreConfig
from ..store.config import ByPosition


class TaskKey(NamedTuple):
    """One unit of work: a stage, or one batch of a mapped stage."""

    stage: str
    batch: int | None = None

    def __str__(self) -> str:
        return self.stage if self.batch is None else f"{self.stage}[{self.batch}]"


@dataclass(frozen=True)
class RemoteRef:
    """A value held by a cluster engine, named by the engine's key; its executor maps it back."""

    key: str
    transport: str = "remote"
    nbytes: int = 0
    length: int | None = None  # len() of the value along axis 0, when it has one


Ref = Handle | RemoteRef


@dataclass(frozen=True)
class Batched:
    """A mapped stage's result: one reference per batch, each holding a list of results."""

    handles: tuple[Ref, ...]
    concat: bool = False

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes for h in self.handles)

    @property
    def length(self) -> int:
        return sum(h.length or 0 for h in self.handles)

    @property
    def transport(self) -> str:
        kinds = sorted({part for h in self.handles for part in h.transport.split("+")})
        return "+".join(kinds) or "pickle"


@dataclass(frozen=True)
class Pending:
    """An input that is the result of the task this one is chained behind (``after``)."""

    stage: str


Output = Ref | Batched


def output_handles(output: Output) -> Sequence[Ref]:
    """Every stored reference behind an output."""
    return output.handles if isinstance(output, Batched) else (output,)


@dataclass(eq=False)
class TaskSpec(ByPosition):
    """One task to run: which stage (or batch), its inputs by handle, its parameters.

    Treat it as immutable (``dataclasses.replace`` makes a changed copy); it is
    not frozen because a frozen dataclass sets each of its fields through
    ``object.__setattr__``, and a spec is built for every task and unpickled
    again in the worker that runs it.
    """

    key: TaskKey
    attempt: int
    inputs: dict[str, Output | Pending]
    params: dict[str, Any]
    submitted_at: float
    map_input: str | None = None
    items: tuple[int, int] | None = None  # [start, stop) of the mapped input
    timeout: float | None = None
    resources: dict[str, str] = field(default_factory=dict)  # parameter -> @worker_init name
    concat: bool = False  # a batch of a stage whose results are joined into one array/table
    keep: bool = False  # a large result may stay in the worker for its one consumer
    after: TaskKey | None = None  # chained: runs next in the worker running this task
    cache: Any = None  # a ``cache.Target``: where the worker stores the result for later runs
    first: int = 0  # the mapped input holds elements [first, ...): only this batch's slice


    def resolved(self, handle: Ref) -> TaskSpec:
        """This chained task with its ``Pending`` input replaced by the result's handle.

        It became ready just now, so its queue wait starts now.
        """
        inputs: dict[str, Output | Pending] = {
            p: handle if isinstance(o, Pending) else o for p, o in self.inputs.items()}
        return dataclasses.replace(self, inputs=inputs, after=None, submitted_at=time.time())


OOM = "oom"  # ``ErrorInfo.cause``: the out-of-memory killer likely ended the worker


@dataclass(frozen=True)
class ErrorInfo:
    """Why a task failed, in a form that always pickles."""

    kind: str  # raised | crashed | timeout
    error_type: str
    message: str
    traceback: str = ""
    type_names: tuple[str, ...] = ()  # the exception's class and its bases, module-qualified
    exception: bytes | None = None  # the pickled exception, when it pickles
    # What the evidence says ended it, decided where the death is described (``OOM``):
    # the runner acts on this, never on the message's words.
    cause: str | None = None


class TaskMetrics(NamedTuple):
    """Measurements of one task attempt, filled in where it ran (a tuple: one comes back
    with every task, and a tuple is the cheapest record to unpickle)."""

    worker_pid: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_bytes: int = 0  # the worker's peak resident size during this task
    rss_growth_bytes: int = 0  # that peak over the worker's resident size when the task began
    queue_wait_s: float = 0.0
    input_bytes: int = 0
    output_bytes: int = 0
    transport: str = ""
    started_at: float = 0.0
    items: int | None = None
    worker: str | None = None  # a cluster engine's worker address or id
    host: str | None = None  # the machine that ran the task
    stored: bool | None = None  # the result went into the cache (None: none was asked)


class TaskOutcome(NamedTuple):
    """What came back from a task: a result handle or an error, and metrics (a tuple,
    like ``TaskMetrics``)."""

    key: TaskKey
    attempt: int
    handle: Ref | None = None
    error: ErrorInfo | None = None
    metrics: TaskMetrics = TaskMetrics(worker_pid=0)

    @property
    def ok(self) -> bool:
        return self.error is None


class Started(NamedTuple):
    """A task that began after being queued: the worker's pid, or an engine's worker id
    (a tuple, like the outcome that follows it)."""

    spec: TaskSpec
    pid: int | str
    host: str | None = None


class TaskLog(NamedTuple):
    """One line a stage wrote: ``stream`` is stdout, stderr, logging or structlog."""

    key: TaskKey
    attempt: int
    worker: int | str
    stream: str
    level: str
    message: str


Event = TaskOutcome | Started | TaskLog


@dataclass(frozen=True)
class ExecutorContext:
    """Everything an executor is built from (``executors.create(name, context)``)."""

    funcs: Mapping[str, Callable[..., Any]]  # stage name -> function
    resources: Mapping[str, Callable[[], Any]]  # @worker_init name -> factory
    options: Mapping[str, Any]  # stage name -> StageOptions (cpus, memory, gpus, resources)
    config: StoreConfig  # where this run's intermediates live on this machine
    workers: int
    start_method: str = "fork"
    sources: tuple[Any, ...] = ()  # ModuleSource of the pipeline, imported first by workers
    max_tasks_per_worker: int | None = None
    address: Any = None  # a cluster's address, or an engine client object
    settings: Tuning | None = None  # the run's tuning (None: the one in force)


class Executor(Protocol):
    """Runs tasks somewhere and reports their outcomes; the runner's only view of workers.

    Every member here is used by the loop; ``executors.create`` refuses an
    executor that lacks one. ``Capabilities`` gives the optional ones their
    usual answers for an executor that has nothing to add.
    """

    name: str
    workers: int
    config: StoreConfig  # where this run's intermediates live on this machine
    chains: bool  # takes a chained task before its input exists (the engine runs it when ready)
    in_driver: bool  # runs tasks in the driver's own process: a signal may raise inside one
    start_method: str | None  # how its worker processes start, where it starts them

    def free_slots(self) -> int:
        """How many more tasks can be submitted right now."""
        ...

    def could_chain(self, after: TaskKey) -> bool:
        """Whether ``chain`` would take a task to run behind ``after`` now."""
        ...

    def submit(self, spec: TaskSpec) -> int | str | None:
        """Hand over a task; the worker running it (a pid, an engine's name) if it started.

        None means it is queued in a worker; ``wait`` reports it (``Started``) when it begins.
        """
        ...

    def chain(self, spec: TaskSpec) -> bool:
        """Queue ``spec`` to run right after ``spec.after`` in the same worker, if possible.

        Its ``Pending`` input is that task's result, handed over inside the
        worker; if that task fails, ``spec`` does not run (and no outcome of
        it is reported, or one the runner ignores).
        """
        ...

    def wait(self, timeout: float | None, wake: int | None = None) -> list[Event]:
        """Block until something happened, ``timeout`` passes or ``wake`` is readable.

        Returns outcomes and starts of queued tasks, in the order they happened.
        """
        ...

    def release(self, ref: Ref) -> None:
        """``ref`` has no consumer left: free it now."""
        ...

    def read(self, ref: Ref, stage: str) -> Decoded:
        """Bring the value behind ``ref`` into this process (a requested output)."""
        ...

    def prefetch(self, refs: Sequence[Ref]) -> None:
        """Bring several requested outputs over at once, before they are ``read``."""
        ...

    def notice(self, ref: Ref) -> str | None:
        """A remark to say once per run about where ``ref`` lives (values spill to disk)."""
        ...

    def shares_cache(self, directory: str) -> bool:
        """Whether every worker sees the cache ``directory`` as this process does."""
        ...

    def shutdown(self, *, cancel: bool = False) -> None:
        """Stop every worker; with ``cancel``, without waiting for running tasks."""
        ...

    def kill_all(self) -> None:
        """Stop everything at once, from a signal handler's wake-up (a second Ctrl-C)."""
        ...

    def close(self) -> None:
        """Free every value of the run still held; the values ``read`` returned are closed."""
        ...


class Capabilities:
    """The optional members of ``Executor`` as an executor with nothing to add answers them:
    no chaining ahead of a start, reads one at a time, no remark, the cache shared."""

    chains = False
    in_driver = False
    start_method: str | None = None

    def could_chain(self, after: TaskKey) -> bool:
        return True  # ``chain`` itself says whether it took the task

    def prefetch(self, refs: Sequence[Ref]) -> None:
        return None

    def notice(self, ref: Ref) -> str | None:
        return None

    def shares_cache(self, directory: str) -> bool:
        return True


EXECUTOR_MEMBERS = (
    "name", "workers", "config", "chains", "in_driver", "start_method", "free_slots",
    "could_chain", "submit", "chain", "wait", "release", "read", "prefetch", "notice",
    "shares_cache", "shutdown", "kill_all", "close",
)
"""What ``executors.create`` checks a new executor has."""
