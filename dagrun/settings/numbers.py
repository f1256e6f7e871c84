"""The numbers that shape a run, each with the reason for its value, and the one in force."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    """The numbers that shape a run; each field's comment is the reason for its value.

    A run's own record is ``RunOptions.tuning``: the ``tuning`` argument of
    ``dagrun.run``, else the defaults, with ``DAGRUN_HOLD_MIN`` applied. While a run goes on it is
    the one in force (``tuning()``) in the driver and in every worker, and
    modules read their numbers from it when they use them, never at import.
    The README's settings table lists every field.
    """

    # -- scheduling (runner, planner) --
    # Automatic batch size of a mapped stage: about this many batches per worker, enough to
    # balance uneven elements, few enough that per-task overhead stays small.
    tasks_per_worker: int = 4
    # A consumer is not chained behind a task whose shared inputs are this large: the driver
    # frees them only when that task ends, so the link would overlap them in memory.
    chain_inputs_max: int = 16 << 20
    # Share of the memory limit kept free when no --memory budget is given: the driver, the
    # page cache and the interpreters' baselines live there.
    memory_margin: float = 0.1
    # Earlier runs whose stage times and memory count: enough to smooth noise, recent enough
    # to follow edits.
    recent_runs: int = 5
    # Seconds between two looks at a cache entry that another run is computing.
    cache_wait_s: float = 0.2
    # The events file and the console are brought up to date at least this often while tasks
    # end in quick succession, and at once when the run goes quiet: a chain of short tasks
    # wakes the driver once per task, and two writes per wake cost more than the task.
    events_flush_s: float = 0.02
    # Signals closer together than this are one signal (one keypress, or timeout(1) and a
    # process group, reach the driver twice).
    signal_merge_s: float = 1.0

    # -- the local process pool --
    # Tasks a worker may hold: the running one and those queued behind it, sent to it in one
    # write (no driver round trip between them).
    prefetch: int = 32
    # A worker gets more tasks queued only while the typical times of what it holds add up
    # to less than this: behind a long task the queued ones would wait while others idle.
    short_task_s: float = 0.005
    # Results from this size on pull their consumers to the worker that wrote them (it still
    # has the pages mapped).
    near_min: int = 1 << 20
    # Messages read from one worker per wake-up: a chatty worker cannot starve the others.
    messages_per_wake: int = 64
    # Peak-memory samples of busy workers: cheap, and fine enough to describe a crash.
    sample_every_s: float = 0.5
    # A worker must finish its imports within this, task timeout or not.
    startup_grace_s: float = 30.0
    # A worker asked to stop gets this long to exit before it is killed: enough for its
    # resources' teardown, short enough that Ctrl-C still feels immediate.
    term_grace_s: float = 1.0
    # Last lines of a dead worker's output quoted in its task's error.
    tail_lines: int = 5
    # A printed line longer than this is cut: one runaway print must not make a huge event.
    max_line_chars: int = 10_000
    # Tasks in flight per Dask or Ray worker: enough that the engine is never idle while the
    # driver handles reports (at 2, 1,000 no-ops cost 10 ms each on Dask; at 64, 3 ms).
    engine_prefetch: int = 64

    # -- intermediates (store) --
    # Values (or array members) smaller than this travel pickled inside the handle: no file.
    inline_max: int = 64 << 10
    # A pickled list or tuple a stage maps over, up to this size, is read once by the driver
    # and each batch is sent only its own elements; a larger one is read by each task, so
    # the driver never holds a second copy of a large value.
    slice_max: int = 64 << 20
    # From this size a result with one consumer that can start at once stays in its worker;
    # below it, the shared-memory path is cheap enough and keeps the documented transports.
    hold_min: int = 256 << 20
    # At most this much of released values waits for reuse: peak memory stays within the
    # live set plus this.
    pool_max: int = 256 << 20
    # Parked segments kept at most, whatever their size.
    max_free: int = 16
    # Larger segments are freed, not parked: a large value gets fresh pages instead of
    # holding memory for a next value that may never come.
    recycle_max: int = 32 << 20
    # Below this a single memcpy is as fast as copying with threads.
    parallel_copy_min: int = 16 << 20
    # The smallest piece one copying thread takes.
    copy_chunk_min: int = 8 << 20
    # From this size an array nobody else holds is freed page by page as it is copied.
    release_min: int = 32 << 20
    # How much is copied before those pages are given back.
    release_chunk: int = 16 << 20
    # Free space left in a directory after a new segment, so the system does not run dry.
    reserve: int = 1 << 20
    # Mappings a process keeps open for reuse.
    max_cached_maps: int = 64

    # -- cache --
    # Bytes at each end of a cached file whose digests a lookup checks (constant time).
    cache_edge: int = 4096
    # Bytes hashed per call when a value is not contiguous: one reused buffer.
    hash_chunk: int = 8 << 20
    # The cache directory is trimmed to this size at the end of each run, least recently used
    # entries first: enough for many runs of large intermediates, bounded on a shared disk
    # (-1: no cap).
    cache_max_bytes: int = 20 << 30
    # A result is stored unless writing it would take longer than this and longer than
    # cache_write_share of its stage's time: writes this short are worth it whatever the stage.
    cache_write_free_s: float = 0.2
    # ... and unless writing it would take more than this share of the time its stage took:
    # recomputing is then the cheaper way to have it again.
    cache_write_share: float = 0.5
    # Bytes written once per cache directory to measure its write rate (data and checksum),
    # the first time a result this large is to be stored; a smaller one is always stored
    # (at 80 MB/s, the slowest disk worth caching on, it writes within cache_write_free_s).
    cache_probe_bytes: int = 16 << 20


TUNING = Tuning()
"""The defaults: in force whenever no run has put its own."""

_in_force = [TUNING]


def tuning() -> Tuning:
    """The tuning in force: the current run's in its driver and workers, else the defaults."""
    return _in_force[0]


def put_in_force(record: Tuning) -> Tuning:
    """Make ``record`` the tuning every module reads; returns the one it replaces."""
    previous, _in_force[0] = _in_force[0], record
    return previous
