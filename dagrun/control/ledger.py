"""The outputs ledger: which stage's result lives where, until nobody needs it.

    outcome ─▶ Ledger.record(key, ref) ─┬─ a stage's result ─────────▶ outputs[stage]
                                        └─ one batch of a mapped stage ▶ batches[stage][i]
                                               last batch in ─▶ complete ─▶ outputs[stage]
    scheduler Step.released ─▶ Ledger.release(stage) ─▶ executor.release(every ref)
    end of run ─▶ Ledger.read(targets) ─▶ values (+ what to close) ─▶ release the rest

The ledger owns every reference an executor handed back and frees each
exactly once, through the executor that made it: the loop never frees a
value itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..executors.base import Batched, Executor, Output, Ref, output_handles
from ..store import Handle
from ..store.codec import inline_value
from ..values import concatenate


class Ledger:
    """Results of finished stages and the batches of running mapped stages."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.outputs: dict[str, Output] = {}
        self.batches: dict[str, list[Ref | None]] = {}
        self.live_bytes = 0  # what the values held now occupy (kept in step, not summed)

    def __contains__(self, stage: str) -> bool:
        return stage in self.outputs

    def __getitem__(self, stage: str) -> Output:
        return self.outputs[stage]

    def expect_batches(self, stage: str, count: int) -> None:
        """``stage`` runs as ``count`` batches; their results are collected in order."""
        self.batches[stage] = [None] * count

    def record(self, stage: str, batch: int | None, ref: Ref) -> None:
        """A task's result: the stage's output, or one batch of it."""
        self.live_bytes += ref.nbytes
        if batch is None:
            self.outputs[stage] = ref
        else:
            self.batches[stage][batch] = ref

    def complete(self, stage: str, concat: bool) -> None:
        """Every batch of a mapped stage is in: together they are its output."""
        parts = self.batches.pop(stage, None)
        if parts is not None:
            self.outputs[stage] = Batched(tuple(p for p in parts if p is not None), concat)

    def adopt(self, stage: str, output: Output) -> None:
        """An output that did not come from a task of this run (the cache)."""
        self.outputs[stage] = output
        self.live_bytes += output.nbytes

    def release(self, stage: str) -> None:
        """``stage``'s result (or its batches so far) has no consumer left."""
        output = self.outputs.pop(stage, None)
        if output is not None:
            self._free(output_handles(output))
        self._free(p for p in self.batches.pop(stage, None) or () if p is not None)

    def release_all(self, keep: Iterable[str] = ()) -> None:
        """Free every value but those of ``keep`` (the run is over)."""
        keep = set(keep)
        for stage in [s for s in self.outputs if s not in keep] + list(self.batches):
            self.release(stage)

    def read(self, stage: str) -> tuple[Any, list[Any]]:
        """The value of ``stage``'s output in this process, and what must be closed after use.

        Raises what reading raised (e.g. a result whose unpickling fails).
        """
        output = self.outputs[stage]
        if type(output) is Handle and type(output.payload) is bytes and output.transport != "cache":
            return inline_value(output.payload), []  # in the handle itself: nothing to close
        parts, opened = [], []
        try:
            for ref in output_handles(output):
                decoded = self.executor.read(ref, stage)
                opened.append(decoded)
                parts.append(decoded.value)
        except BaseException:
            for decoded in opened:
                decoded.close()
            raise
        if isinstance(output, Batched):
            flat = [x for part in parts for x in part]
            return (concatenate(flat) if output.concat else flat), opened
        return parts[0], opened

    def _free(self, refs: Iterable[Ref]) -> None:
        for ref in refs:
            self.live_bytes -= ref.nbytes
            self.executor.release(ref)
