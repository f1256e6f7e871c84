"""One run's use of the cache: skip what is unchanged, store what was computed.

    start: keys for every stage (cache.plan_keys: a Merkle chain down the DAG)
    stage ready ─▶ enabled? ─no─▶ run it
                     │ yes
                     ├─ another run holds the key's lock ─▶ wait, look again shortly
                     ├─ intact entry ─▶ adopt it (task_skipped, reason cached): no task runs
                     ├─ damaged entry ─▶ cache_corrupt warning, run it
                     └─ no entry ─▶ run it, holding the key's lock; the worker that makes
                                    the result writes the entry (a mapped stage's combined
                                    result is written here, from its batches)

Entries are adopted by reference (``cache.adopted_handle``): a cached input
costs its consumer a memory mapping, and an entry nobody reads is never
loaded. A hit is returned as a ``FromCache`` decision that the loop applies
(ledger, reporter, scheduler): this module only reads the ledger.
``--force STAGE`` recomputes that stage and everything downstream;
``--no-cache`` neither reads nor writes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from ..events.reporter import Reporter
from ..executors.base import Executor
from ..graph.build import Graph
from ..settings import RunOptions, tuning
from .decisions import FromCache
from .ledger import Ledger

if TYPE_CHECKING:
    from ..cache import KeyRecord


class RunCache:
    """The cache as one run sees it: keys, the locks it holds, stages waiting on other runs."""

    def __init__(
        self, cache: Any, keys: dict[str, Any], forced: set[str], graph: Graph,
        pipeline_key: str, ledger: Ledger, report: Reporter, executor: Executor,
    ) -> None:
        self.cache, self.keys, self.forced, self.graph = cache, keys, forced, graph
        self.pipeline_key = pipeline_key
        self.ledger, self.report, self.executor = ledger, report, executor
        self.locks: dict[str, Any] = {}
        self.waiting: list[str] = []
        self.digests: dict[str, str] = {}  # cache=False stage -> its result's content hash
        self.grew = False  # this run wrote entries: the cache may have passed its cap

    @classmethod
    def open(
        cls, graph: Graph, options: RunOptions, run_id: str, ledger: Ledger, report: Reporter,
        executor: Executor,
    ) -> RunCache | None:
        """The run's cache, or None when it neither reads nor writes one."""
        if options.no_cache:
            return None
        if not any(graph.nodes[name].stage.options.cache for name in graph.selected):
            return None  # nothing to look up or store: no keys, no cache directory
        if not executor.shares_cache(str(options.cache_dir)):
            report.events.emit(
                "cache_off", level="warning", cache_dir=str(options.cache_dir),
                reason=f"the {executor.name} workers do not see {options.cache_dir}; give "
                       f"--cache-dir a directory every worker shares to cache on this cluster",
            )
            return None
        from ..cache import Cache, pipeline_key, plan_keys

        keys = plan_keys(graph)  # after the run date is bound: stages taking it are keyed by it
        _warn_about(keys, graph, report)
        forced = set(options.force)
        for name in options.force:
            forced |= graph.descendants(name)
        return cls(Cache(options.cache_dir), keys, forced, graph, pipeline_key(graph), ledger,
                   report, executor)

    def enabled_for(self, stage: str) -> bool:
        record = self.keys.get(stage)
        return record is not None and not record.volatile and stage not in self.forced

    def lookup(self, stage: str) -> FromCache | Literal[False] | None:
        """The entry to adopt; False: another run makes it (wait); None: compute it here.

        Adopting is the loop's: it applies the ``FromCache`` decision to the
        ledger, the reporter and the scheduler.
        """
        if not self.enabled_for(stage) or stage in self.locks:
            return None  # not cached, or claimed already (chained behind its input)
        key = self.keys[stage].key
        lock = self.cache.try_lock(key)
        if lock is None:
            self.waiting.append(stage)
            return False
        entry = self._intact_entry(stage, key)
        if entry is None:
            self.locks[stage] = lock
            return None
        lock.release()
        from ..cache import adopted_handle

        output = adopted_handle(entry)
        self.cache.record(self.pipeline_key, stage, self.keys[stage])
        return FromCache(stage, output)

    def claim(self, stage: str) -> bool:
        """Take ``stage``'s key for this run when no entry exists: it will be computed here."""
        if not self.enabled_for(stage):
            return True
        if stage in self.locks:
            return True
        key = self.keys[stage].key
        lock = self.cache.try_lock(key)
        if lock is None:
            return False
        if self._intact_entry(stage, key) is not None:
            lock.release()  # adopted when it becomes ready
            return False
        self.locks[stage] = lock
        return True

    def _intact_entry(self, stage: str, key: str) -> Any:
        from ..errors import CacheCorrupt

        try:
            return self.cache.lookup(key)
        except CacheCorrupt as exc:
            self.report.notice("cache_corrupt", stage, path=str(exc.path), reason=exc.reason)
            return None

    def target(self, stage: str) -> Any:
        """Where the worker making ``stage``'s result stores it, when this run computes it."""
        if stage not in self.locks or self.graph.nodes[stage].map_input is not None:
            return None
        self.grew = True
        return self.cache.target(self.keys[stage].key, stage)

    def stored(self, stage: str, stored: bool | None = None) -> None:
        """``stage`` finished: a mapped stage's combined result is written now; locks go.

        A ``cache=False`` stage's result is hashed instead, and what it feeds is
        keyed by that content from now on (it may differ from run to run).
        """
        if self.keys[stage].volatile:
            self._rekey_after(stage)
            return
        if stage not in self.locks:
            return
        if self.graph.nodes[stage].map_input is not None and stage in self.ledger:
            # A mapped stage is decided as a whole: its batches' time against its result.
            made_in = sum(r["wall_s"] for r in self.report.metrics if r["stage"] == stage)
            value, opened = self.ledger.read(stage)
            try:
                stored = self.cache.target(self.keys[stage].key, stage).write(value, made_in)
            finally:
                del value
                for decoded in opened:
                    decoded.close()
        self.cache.record(self.pipeline_key, stage, self.keys[stage], unstored=stored is False)
        self.abandon(stage)

    def _rekey_after(self, stage: str) -> None:
        from ..cache import Unhashable, hash_value, plan_keys

        users = self.graph.successors.get(stage, ())
        if stage not in self.ledger or not any(self.enabled_for(u) for u in users):
            return
        value, opened = self.ledger.read(stage)
        try:
            self.digests[stage] = hash_value(value)
        except (Unhashable, RecursionError):
            # A value without a content hash matches no earlier one: its consumers run.
            self.digests[stage] = f"unhashable:{os.urandom(16).hex()}"
        finally:
            del value
            for decoded in opened:
                decoded.close()
        self.keys = plan_keys(self.graph, outputs=self.digests)

    def failed(self, stage: str) -> None:
        """``stage`` failed for good: ``explain`` will say so until it runs under another key."""
        record = self.keys.get(stage)
        if record is not None and not record.volatile:
            self.cache.record(self.pipeline_key, stage, record, failed=True)

    def abandon(self, stage: str) -> None:
        lock = self.locks.pop(stage, None)
        if lock is not None:
            lock.release()

    def take_waiting(self) -> list[str]:
        waiting, self.waiting = self.waiting, []
        return waiting

    def close(self) -> None:
        """Let go of the keys still held, and trim the cache to its cap (least recently
        used entries first: this run's own were used just now)."""
        for stage in list(self.locks):
            self.abandon(stage)
        cap = tuning().cache_max_bytes
        if cap < 0 or not self.grew:
            return  # a run that wrote nothing leaves the cache no larger
        from ..cache import maintenance

        trimmed = maintenance.trim(self.cache, cap)
        if trimmed.removed:
            self.report.events.emit(
                "cache_trimmed", entries=len(trimmed.removed), freed_bytes=trimmed.freed_bytes,
                kept_bytes=trimmed.kept_bytes, max_bytes=cap,
            )


def _warn_about(keys: Mapping[str, KeyRecord], graph: Graph, report: Reporter) -> None:
    """Say once per run what the cache cannot follow: a stage that must run every time for a
    reason other than ``cache=False``, and a ``watch=`` entry that matches nothing."""
    for name in graph.selected:
        record = keys[name]
        if record.volatile and not record.why.startswith("cache=False"):
            report.events.emit("cache_bypassed", level="warning", stage=name, reason=record.why)
        for label, digest in record.components.get("files", {}).items():
            if label.startswith("watch:") and digest == "missing":
                path = label.removeprefix("watch:")
                report.events.emit(
                    "watch_empty", level="warning", stage=name, watch=path,
                    reason=f"watch={path!r} matches nothing (relative to {os.getcwd()}); "
                           f"check the path or pattern",
                )
