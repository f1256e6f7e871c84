"""Segments: private files in ``/dev/shm`` (or the spill directory), mapped directly.

No ``multiprocessing.shared_memory``: a segment is ``os.open(O_CREAT|O_EXCL,
0o600)`` + ``posix_fallocate`` (so a full tmpfs is an ``ENOSPC`` error, never
a SIGBUS) + ``mmap(MAP_SHARED|MAP_POPULATE)``; the spill fallback is the same
code in another directory. Readers map ``PROT_READ``: the kernel, not a
flag, keeps inputs read-only; only in the process that wrote a segment does
a reader reuse the writer's mapping, through a view numpy will not make
writable again.

Why recycling (the physics): on this kind of machine a fresh tmpfs page
costs a page fault plus zeroing (0.4–2.8 GB/s) while a copy into pages
already mapped runs at 12–20 GB/s. So the parent, when it releases a small
value (under the tuning's ``recycle_max``; a parked segment is memory held for
the next value, so large ones are freed), parks its segment in a per-run
*free pool* (a rename to ``<prefix>f-…``) and the next producer of a similar
size *claims* it (an atomic rename to a new live name: exactly one claimer
wins). Each process keeps its mappings in a small cache keyed by inode, so a
recycled segment is written or read through pages it already has mapped.

Safety of recycling rests on ``flock``:

    holder                         lock      taken while
    writer (encode / empty())      LOCK_SH   it writes, or a user array over it lives
    reader (decode)                LOCK_SH   any view handed to user code lives
    parent (release / close)       LOCK_EX|NB  only if nobody holds: then recycle or
                                             truncate (frees pages that idle
                                             caches still map); else unlink later

A view that user code keeps past its task thus never sees its memory
recycled or truncated under it. The per-process cache drops entries whose
file was unlinked (``st_nlink == 0``) on every segment operation.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import pickle
import secrets
import stat
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import SegmentExistsError, SegmentMissingError, StoreError, StoreFull
from ..settings import tuning
from .config import SegmentRef, StoreConfig
from .files import (  # noqa: E402,F401
    ensure_private_dir,
    free_name,
    has_room,
    parse_free_size,
    remove,
    retire,
)

PAGE = mmap.PAGESIZE
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_NOSPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.ENOMEM}


class Mapping:
    """One process's mapping of one segment (by inode), shared by every use of it."""

    __slots__ = ("fd", "mm", "size", "writable", "key", "prefix", "holds", "dead", "pid")

    def __init__(
        self, fd: int, size: int, writable: bool, st: os.stat_result, prefix: str,
        *, populate: bool = True,
    ):
        self.fd = fd
        self.size = size
        self.writable = writable
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        flags = mmap.MAP_SHARED | (_POPULATE if populate else 0)
        self.mm = mmap.mmap(fd, size, flags=flags, prot=prot)
        self.key = (writable, st.st_dev, st.st_ino)
        self.prefix = prefix
        self.holds = 1  # the caller holds LOCK_SH on ``fd`` already
        self.dead = False
        self.pid = os.getpid()

    def hold(self) -> None:
        """Take a shared lock for one more user of this mapping."""
        if self.holds == 0:
            fcntl.flock(self.fd, fcntl.LOCK_SH)
        self.holds += 1

    def unhold(self) -> None:
        """Drop one user; the last one unlocks (never raises: runs from finalizers)."""
        if self.pid != os.getpid():  # inherited through fork: the lock is the parent's
            return
        self.holds -= 1
        if self.holds > 0:
            return
        if self.dead:
            self.dispose()
        else:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            except OSError:
                pass

    def root(self, *, read_only: bool = False) -> np.ndarray:
        """A uint8 array over the whole mapping holding one lock until it dies.

        ``read_only`` over a writable mapping goes through a read-only buffer
        (a ``PickleBuffer``: numpy would see through a bare memoryview to the
        writable mapping), so no view of it can be made writable again.
        """
        self.hold()
        buffer: Any = self.mm
        if read_only and self.writable:
            buffer = pickle.PickleBuffer(memoryview(self.mm).toreadonly())
        root = np.ndarray((self.size,), np.uint8, buffer=buffer)
        weakref.finalize(root, self.unhold)
        return root

    def dispose(self) -> None:
        """Unmap (unless views still export it) and close the fd, releasing its lock."""
        self.dead = True
        try:
            self.mm.close()
        except (BufferError, ValueError):
            pass  # user views keep the mapping; it goes when they do
        self.close_fd()

    def close_fd(self) -> None:
        """Close the descriptor once (closing it drops this process's lock)."""
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


_cache: OrderedDict[tuple[bool, int, int], Mapping] = OrderedDict()
_fallback: list[str] = []


def _after_fork() -> None:
    # The child shares the parent's open file descriptions (and so its locks):
    # forget them without unlocking; ``Mapping.unhold`` checks the pid too.
    for entry in _cache.values():
        entry.dead = True
        entry.close_fd()
    _cache.clear()


os.register_at_fork(after_in_child=_after_fork)


def _evict(entry: Mapping) -> None:
    _cache.pop(entry.key, None)
    entry.dead = True
    if entry.holds <= 0:
        entry.dispose()


def sweep() -> None:
    """Drop cached mappings of unlinked or shrunk segments, and the oldest beyond the cap."""
    for entry in list(_cache.values()):
        try:
            st = os.fstat(entry.fd)
        except OSError:
            _evict(entry)
            continue
        if st.st_nlink == 0 or st.st_size < entry.size:
            _evict(entry)
    idle = [e for e in _cache.values() if e.holds == 0]
    for entry in idle[: max(0, len(_cache) - tuning().max_cached_maps)]:
        _evict(entry)


def purge(prefix: str) -> None:
    """Forget this process's mappings of one run (its store is closing)."""
    for entry in list(_cache.values()):
        if entry.prefix == prefix:
            _evict(entry)


def _adopt(fd: int, st: os.stat_result, writable: bool, prefix: str) -> Mapping:
    """The cached mapping of ``fd``'s inode (held), or a new one; ``fd`` is locked SH.

    A reader takes this process's writable mapping of the segment when there
    is one (the producer's own, already faulted in: a consumer in the same
    worker reads without mapping anything); ``open_read`` makes its view
    read-only.
    """
    key = (writable, st.st_dev, st.st_ino)
    for candidate in (key,) if writable else ((True, st.st_dev, st.st_ino), key):
        entry = _cache.get(candidate)
        if entry is None or entry.dead or entry.size != st.st_size or entry.fd < 0:
            continue
        entry.hold()
        os.close(fd)  # the entry's own lock now covers the segment
        _cache.move_to_end(candidate)
        return entry
    entry = _cache.get(key)
    if entry is not None:
        _evict(entry)
    try:
        entry = Mapping(fd, st.st_size, writable, st, prefix)
    except BaseException:
        os.close(fd)
        raise
    _cache[key] = entry
    return entry


def round_up(nbytes: int) -> int:
    """``nbytes`` rounded up to whole pages (at least one)."""
    return max(PAGE, -(-nbytes // PAGE) * PAGE)


def fallback_reason(config: StoreConfig, size: int = 0) -> str | None:
    """Why a value of ``size`` bytes cannot go to ``shm_dir`` (None when it can)."""
    if not os.path.isdir(config.shm_dir):
        return f"{config.shm_dir} does not exist"
    if not has_room(config.shm_dir, size):
        return f"{config.shm_dir} has too little free space for {size} bytes"
    return None


def first_fallback() -> str | None:
    """The reason this process first fell back to spill files, if it did."""
    return _fallback[0] if _fallback else None


def create(
    config: StoreConfig, nbytes: int, stage: str, *, lazy: bool = False
) -> tuple[Mapping, SegmentRef, bool]:
    """A writable segment for ``nbytes`` (held): recycled if possible, else fresh.

    Returns the mapping, the segment's reference and whether it is fresh
    (fresh segments read as zeros). The caller must ``unhold`` the mapping.
    A ``lazy`` fresh segment has no pages yet: the caller ``reserve``s each
    range before writing it (so its memory grows as it is filled).
    """
    sweep()
    size = round_up(nbytes)
    reason = fallback_reason(config, size)
    places = [("shm", config.shm_dir)] if reason is None else []
    places.append(("file", config.spill_dir))
    if reason is not None and not _fallback:
        _fallback.append(reason)
    for where, directory in places:
        if where == "file":
            ensure_private_dir(directory)
        name = f"{config.prefix}s-{secrets.token_hex(16)}"
        claimed = _claim(config, directory, size, name)
        if claimed is not None:
            return claimed, SegmentRef(name, where, claimed.size), False
        entry = _fresh(config, directory, name, size, stage, lazy=lazy)
        if entry is not None:
            return entry, SegmentRef(name, where, size), True
        if where == "shm" and not _fallback:
            _fallback.append(f"{config.shm_dir} ran out of space")
    msg = (
        f"stage {stage!r}: no room for a {nbytes}-byte intermediate in "
        f"{config.shm_dir} nor in {config.spill_dir}; free space or raise the limit"
    )
    raise StoreFull(msg)


def _fresh(
    config: StoreConfig, directory: str, name: str, size: int, stage: str, *, lazy: bool = False
) -> Mapping | None:
    path = os.path.join(directory, name)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        msg = f"stage {stage!r}: segment {path} already exists; refusing to attach to it"
        raise SegmentExistsError(msg) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if lazy:
            os.ftruncate(fd, size)
        else:
            os.posix_fallocate(fd, 0, size)  # reserve now: ENOSPC here, not SIGBUS later
        st = os.fstat(fd)
        entry = Mapping(fd, size, True, st, config.prefix, populate=not lazy)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if exc.errno in _NOSPACE:
            return None
        msg = f"stage {stage!r}: cannot create segment {path}: {exc}"
        raise StoreError(msg) from exc
    _cache[entry.key] = entry
    return entry


def reserve(entry: Mapping, start: int, stop: int, stage: str) -> None:
    """Allocate bytes ``[start, stop)`` of a lazy segment before they are written.

    A full tmpfs or disk is then a ``StoreFull`` naming the stage, never a SIGBUS.
    """
    try:
        os.posix_fallocate(entry.fd, start, stop - start)
    except OSError as exc:
        if exc.errno in _NOSPACE:
            msg = (f"stage {stage!r}: ran out of space while storing its result; free "
                   f"space in the shared-memory or state directory")
            raise StoreFull(msg) from exc
        raise


def _claim(config: StoreConfig, directory: str, size: int, name: str) -> Mapping | None:
    """Take a parked segment of about ``size`` bytes by renaming it to ``name``."""
    if config.pool_bytes == 0:
        return None
    mark = f"{config.prefix}f-"
    candidates = []
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    for entry in names:
        if entry.startswith(mark):
            have = parse_free_size(entry[len(mark) :])
            if size <= have <= size + max(size // 8, 4 * PAGE):
                candidates.append((have, entry))
    for have, entry in sorted(candidates):
        path = os.path.join(directory, name)
        try:
            os.rename(os.path.join(directory, entry), path)
        except FileNotFoundError:
            continue  # another producer won it
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # the run is closing
        fcntl.flock(fd, fcntl.LOCK_SH)
        st = os.fstat(fd)
        if st.st_nlink == 0 or st.st_size != have:
            os.close(fd)  # truncated by a closing store between rename and lock
            continue
        return _adopt(fd, st, True, config.prefix)
    return None


def open_read(config: StoreConfig, ref: SegmentRef, stage: str) -> np.ndarray:
    """A read-only uint8 view of a whole segment, holding its lock while it lives."""
    sweep()
    path = os.path.join(config.directory(ref.where), ref.name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        msg = f"stage {stage!r}: intermediate {ref.name} is gone (released or cleaned up)"
        raise SegmentMissingError(msg) from exc
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode) or st.st_size < ref.size:
            msg = f"stage {stage!r}: {path} is not a segment of this run"
            raise StoreError(msg)
        fcntl.flock(fd, fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    entry = _adopt(fd, st, False, config.prefix)
    try:
        return entry.root(read_only=True)
    finally:
        entry.unhold()  # ``root`` took its own hold


@contextlib.contextmanager
def filling(config: StoreConfig, ref: SegmentRef, entry: Mapping) -> Iterator[Mapping]:
    """Hold a fresh segment while a value is written into it; free it if writing fails."""
    try:
        yield entry
    except BaseException:
        entry.unhold()
        dispose_unreturned(config, ref, entry)
        raise
    entry.unhold()


def dispose_unreturned(config: StoreConfig, ref: SegmentRef, entry: Mapping) -> None:
    """Free a segment this process allocated (``empty``) but never handed over."""
    path = os.path.join(config.directory(ref.where), ref.name)
    _evict(entry)
    remove(path)
