"""Values kept on this machine: the store side shared by the inline and local executors.

Both executors keep a run's intermediates in the run's ``Store`` (shared
memory, spilling to memory-mapped files): the executor that makes them owns
them, so the runner only says when a value has no consumer left
(``release``), asks for a requested output (``read``) and ends the run
(``close``). Leftovers of drivers that died are removed before a run starts.
"""

from __future__ import annotations

from .. import store
from ..store import Decoded, Handle, StoreConfig
from .base import Ref


class MachineValues:
    """The ``release``/``read``/``notice``/``close`` part of the executor protocol."""

    def __init__(self, config: StoreConfig) -> None:
        store.clean_orphans(config.state_dir, config.shm_dir)
        self.config = config
        self.store = store.Store(config)

    def release(self, ref: Ref) -> None:
        if isinstance(ref, Handle):  # this machine's store holds nothing else
            self.store.release(ref)

    def read(self, ref: Handle, stage: str) -> Decoded:
        return store.decode(ref, self.config, stage)

    def notice(self, ref: Ref) -> str | None:
        """A remark said once per run: values spill to disk because shared memory is short."""
        return self.store.fallback_notice(ref) if isinstance(ref, Handle) else None

    def close(self) -> None:
        self.store.close()
