"""Intermediates: how a stage's result travels to the processes that consume it.

Interface used by the rest of dagrun:

    StoreConfig   frozen, picklable: where a run's segments live (run-scoped prefix)
    Handle        frozen, picklable, small: describes one stored value by name
    encode(value, config, stage) -> Handle            worker side: store a result
    encode_result([value], config, stage, keep=) -> Handle   the same, taking the caller's
                  reference (with ``keep`` a large result may stay in this worker for its
                  one consumer, which reads it read-only: transport ``worker``)
    decode(handle, config, stage) -> Decoded           worker/parent side: map read-only
    length_of(value) -> int | None                    the length a handle records for a value
    Store(config)                                     parent side: owns unlinking
        .release(handle)   free one value once its last consumer has finished
        .close()           free everything of the run, leftovers of crashed workers too
        .fallback_notice(handle) -> str | None   say once that values spill to disk
    active(config, stage)  context manager: lets ``empty``/``zeros`` allocate in the store
    empty / zeros          allocate an output array directly in shared memory
    clean_orphans(state_dir) -> list[str]   remove segments of drivers that are gone

Data flow (one value, producer worker -> consumer worker, driver owns lifetimes):

    producer: encode ──▶ segment /dev/shm/<prefix>s-<token> (0600, O_EXCL) ──▶ Handle
                           ▲ recycled from the free pool when one fits
    driver:   Handle ──▶ consumer ... last consumer done ──▶ Store.release
                           ──▶ parked as <prefix>f-… (or truncated + unlinked)
    consumer: decode ──▶ mmap PROT_READ ──▶ read-only numpy view / zero-copy Arrow table
    end of run: Store.close ──▶ every <prefix>* in shm_dir and spill_dir removed

Modules: ``config`` (values, names), ``segments`` (mappings, locks, the free
pool), ``files`` (room, private directories, freeing), ``arrays`` (numpy,
``empty``), ``arrow`` (IPC files, pandas/polars), ``codec`` (choosing a
transport, containers), ``lifecycle`` (``Store``, ``clean_orphans``),
``held`` (results kept in their worker). The handoff timing helper lives
with the benchmarks (``tests/bench/store_handoff.py``).

Contract for callers: a decoded value is valid until ``Decoded.close()``;
drop your own references to it before (or soon after) that call, so the
segment can be recycled (a view still alive keeps its memory, never
corrupted, and the segment is freed later). ``Store.close`` leaves values
the user still holds mapped (their memory lives on until dropped).
"""

from __future__ import annotations

from ..errors import SegmentExistsError, SegmentMissingError, StoreError, StoreFull
from .arrays import active, empty, zeros
from .arrow import as_arrow, write_ipc
from .arrow import kind_of as arrow_kind
from .codec import decode, encode, encode_result, length_of
from .config import Decoded, Handle, StoreConfig
from .held import TRANSPORT as HELD
from .lifecycle import Store, clean_orphans
from .segments import fallback_reason

__all__ = [
    "HELD",
    "Decoded",
    "Handle",
    "SegmentExistsError",
    "SegmentMissingError",
    "Store",
    "StoreConfig",
    "StoreError",
    "StoreFull",
    "active",
    "arrow_kind",
    "as_arrow",
    "clean_orphans",
    "decode",
    "empty",
    "encode",
    "encode_result",
    "fallback_reason",
    "length_of",
    "write_ipc",
    "zeros",
]
