"""numpy arrays in segments, and ``empty``/``zeros`` that allocate there directly.

    producer                                  consumer
    np.ndarray ──copy (threads)──▶ segment ──▶ mmap PROT_READ ──▶ read-only view
    dagrun.empty() ══ segment, returned as is (handed over by name, no copy) ══▶

An array returned by a stage is copied once into a segment (recycled and
pre-mapped when small), in parallel chunks because one core cannot saturate
memory bandwidth. ``encode_array(release=True)`` frees the source chunk by
chunk as it is copied, into a segment whose pages are reserved just ahead of
the copy (``copy_releasing``), so it never exists twice; only a caller that
knows for certain nothing else can read the array may ask for it (results of
stages never do: see ``codec``). An array allocated
with ``empty``/``zeros`` inside ``active`` already lives in a segment:
``encode`` recognises it (its ``base`` chain ends at the allocation's root
array) and hands over the segment's name with the view's offset and strides,
so even a non-contiguous view costs nothing. An allocation that dies without
being returned is freed by its creator.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import mmap
import os
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..settings import tuning
from . import segments
from .config import ArrayPayload, Handle, SegmentRef, StoreConfig
from .segments import PAGE

_MADV_DONTNEED = 4

_active: list[tuple[StoreConfig, str, bool]] = []
_pool: ThreadPoolExecutor | None = None


class _Allocation:
    """An ``empty``/``zeros`` array's segment, and to which encode it was handed."""

    __slots__ = ("config", "ref", "entry", "handed", "pid")

    def __init__(self, config: StoreConfig, ref: SegmentRef, entry: segments.Mapping) -> None:
        self.config = config
        self.ref = ref
        self.entry = entry
        self.handed: object | None = None
        self.pid = os.getpid()


_allocations: dict[int, _Allocation] = {}


def _after_fork() -> None:
    global _pool
    _pool = None
    _allocations.clear()


os.register_at_fork(after_in_child=_after_fork)


def _threads() -> int:
    try:
        return min(4, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return min(4, os.cpu_count() or 1)


def copy_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[...] = src`` using a few threads for large arrays (numpy drops the GIL)."""
    global _pool
    workers = _threads()
    nbytes = src.nbytes
    numbers = tuning()
    chunks = min(workers, nbytes // numbers.copy_chunk_min)
    if nbytes < numbers.parallel_copy_min or chunks < 2:
        np.copyto(dst, src, casting="no")
        return
    same = (src.flags.c_contiguous and dst.flags.c_contiguous) or (
        src.flags.f_contiguous and dst.flags.f_contiguous
    )
    if same:
        srcs = np.array_split(src.ravel(order="K").view(np.uint8), chunks)
        dsts = np.array_split(dst.ravel(order="K").view(np.uint8), chunks)
    elif src.ndim and src.shape[0] >= chunks:
        srcs = np.array_split(src, chunks)
        dsts = np.array_split(dst, chunks)
    else:
        np.copyto(dst, src, casting="no")
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(workers, thread_name_prefix="dagrun-copy")
    for future in [_pool.submit(np.copyto, d, s) for d, s in zip(dsts, srcs, strict=True)]:
        future.result()


def copy_releasing(
    dst: np.ndarray, src: np.ndarray, reserve: Callable[[int, int], None] | None = None
) -> None:
    """``dst[...] = src``, giving ``src``'s pages back to the kernel as each chunk is copied.

    For an array nobody else can see (the caller checked), so that returning
    a large array costs one array's memory at a time, not two. ``src`` reads
    as zeros afterwards. ``reserve(start, stop)`` allocates each byte range
    of ``dst`` just before it is written. Chunks go to a few threads, like
    ``copy_into``.
    """
    global _pool
    flat_src = src.ravel(order="K").view(np.uint8)  # both contiguous in one order: views
    flat_dst = dst.ravel(order="K").view(np.uint8)
    address = _address(flat_src)
    skew = address % PAGE
    bounds = list(range(0, flat_src.nbytes, tuning().release_chunk))
    bounds = [0] + [b - skew for b in bounds[1:] if b - skew > 0] + [flat_src.nbytes]

    def one(start: int, stop: int) -> None:
        if reserve is not None:
            reserve(start, stop)
        flat_dst[start:stop] = flat_src[start:stop]
        first = -(-(address + start) // PAGE) * PAGE
        last = (address + stop) // PAGE * PAGE
        if last > first:
            _libc().madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)

    if _pool is None:
        _pool = ThreadPoolExecutor(_threads(), thread_name_prefix="dagrun-copy")
    for future in [_pool.submit(one, a, b) for a, b in zip(bounds, bounds[1:], strict=False)]:
        future.result()


def owned_outright(arr: np.ndarray, others: int) -> bool:
    """Whether ``arr`` is large and its memory unreachable from anything but the caller.

    ``others`` is how many references to ``arr`` exist besides the caller's
    own (every view, buffer export or container holding it counts).
    """
    contiguous = arr.flags.c_contiguous or arr.flags.f_contiguous
    return (
        others == 0 and arr.base is None and arr.flags.owndata and contiguous
        and arr.nbytes >= tuning().release_min
    )


_libc_handle: Any = None


def _libc() -> Any:
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
        _libc_handle.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return _libc_handle


def _transport(ref: SegmentRef) -> str:
    return "shm" if ref.where == "shm" else "file"


def _address(arr: np.ndarray) -> int:
    return arr.__array_interface__["data"][0]


def _allocation_of(arr: np.ndarray) -> tuple[_Allocation, np.ndarray] | None:
    root = arr
    while isinstance(root.base, np.ndarray):
        root = root.base
    alloc = _allocations.get(id(root))
    if alloc is None or not isinstance(root.base, mmap.mmap) or root.base is not alloc.entry.mm:
        return None
    return alloc, root


def encode_array(
    arr: np.ndarray, config: StoreConfig, stage: str, session: object, *, release: bool = False
) -> Handle:
    """Store a (large, non-object) array: hand over its allocation, or copy it once.

    ``release``: nobody else can reach ``arr``, so its pages may be freed as
    they are copied (``copy_releasing``).
    """
    length = arr.shape[0] if arr.ndim else None
    found = _allocation_of(arr)
    if found is not None:
        alloc, root = found
        if alloc.handed in (None, session) and arr.nbytes * 2 >= alloc.ref.size:
            alloc.handed = session
            with contextlib.suppress(ValueError):
                arr.flags.writeable = False  # best effort: the producer is done with it
            offset = _address(arr) - _address(root)
            payload = ArrayPayload(alloc.ref, offset, arr.dtype, arr.shape, arr.strides)
            return Handle(_transport(alloc.ref), arr.nbytes, payload, length)
    entry, ref, _fresh = segments.create(config, arr.nbytes, stage, lazy=release)
    with segments.filling(config, ref, entry):
        order = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
        dst = np.ndarray(arr.shape, arr.dtype, buffer=entry.mm, order=order)
        if release:
            copy_releasing(dst, arr, lambda a, b: segments.reserve(entry, a, b, stage))
        else:
            copy_into(dst, arr)
        payload = ArrayPayload(ref, 0, arr.dtype, arr.shape, dst.strides)
        del dst
    return Handle(_transport(ref), arr.nbytes, payload, length)


def decode_array(payload: ArrayPayload, config: StoreConfig, stage: str) -> np.ndarray:
    """A read-only view of a stored array over the mapped segment (no copy)."""
    root = segments.open_read(config, payload.segment, stage)
    return np.ndarray(
        payload.shape, payload.dtype, buffer=root, offset=payload.offset, strides=payload.strides
    )


class active:  # noqa: N801 - used like the function it replaced: ``with active(...)``
    """Make ``empty``/``zeros`` allocate in this run's store while a stage runs.

    With ``keep`` the stage's result may stay in this process (see ``held``):
    arrays of at least ``config.hold_min`` bytes are then ordinary process
    memory, which is cheaper to fault in than fresh shared pages. (A class, not
    a generator: it is entered once per task.)
    """

    __slots__ = ("entry",)

    def __init__(self, config: StoreConfig, stage: str, *, keep: bool = False) -> None:
        self.entry = (config, stage, keep)

    def __enter__(self) -> None:
        _active.append(self.entry)

    def __exit__(self, *exc: object) -> None:
        _active.pop()


def _allocate(shape: Any, dtype: Any, order: str, zero: bool) -> np.ndarray | None:
    if not _active:
        return None
    config, stage, keep = _active[-1]
    dt = np.dtype(dtype)
    dims = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    nbytes = math.prod(int(d) for d in dims) * dt.itemsize
    if dt.hasobject or nbytes < config.inline_max:
        return None
    if keep and 0 <= config.hold_min <= nbytes:
        return None
    entry, ref, fresh = segments.create(config, nbytes, stage)
    try:
        if zero and not fresh:  # a recycled segment holds an old value; a fresh one reads 0
            np.ndarray((nbytes,), np.uint8, buffer=entry.mm).fill(0)
        arr = np.ndarray(dims, dt, buffer=entry.mm, order=order)
    except BaseException:
        entry.unhold()
        segments.dispose_unreturned(config, ref, entry)
        raise
    _allocations[id(arr)] = _Allocation(config, ref, entry)
    weakref.finalize(arr, _allocation_died, id(arr))
    return arr


def _allocation_died(key: int) -> None:
    alloc = _allocations.pop(key, None)
    if alloc is None or alloc.pid != os.getpid():
        return
    alloc.entry.unhold()
    if alloc.handed is None:  # never returned: its creator frees it
        segments.dispose_unreturned(alloc.config, alloc.ref, alloc.entry)


def empty(shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
    """An uninitialised array that a stage can return without a copy.

    Inside a running stage it lives in the run's shared memory; elsewhere,
    when small, or when the stage's result will stay in its worker for its
    only consumer, it is a plain ``numpy.empty``.
    """
    made = _allocate(shape, dtype, order, zero=False)
    return np.empty(shape, dtype=dtype, order=order) if made is None else made


def zeros(shape: Any, dtype: Any = float, order: str = "C") -> np.ndarray:
    """A zero-filled array that a stage can return without a copy."""
    made = _allocate(shape, dtype, order, zero=True)
    return np.zeros(shape, dtype=dtype, order=order) if made is None else made
