"""The cache directory: entries committed by rename, checked in constant time.

    <cache>/                          created 0700
      entries/<k2>/<key>/             one committed entry
          value.npy|.arrow|.pkl       the data (see codec.py)
          meta.json                   kind, size, xxh3-128 checksum of the whole file,
                                      digests of its first and last 4 KiB, stage, time
      tmp/<key>.<pid>.<random>/       an entry being written
      trash/                          entries being removed (renamed here, then deleted)
      locks/<key>.lock                one flock per key (locks.py)
      manifests/<pipeline>/<stage>.json   the last key components per pipeline and stage

**Writes** fill a private ``tmp/`` directory (data, then metadata) and
``rename`` it to ``entries/<k2>/<key>``: a reader sees a whole entry or
none. Nothing is fsynced (that cost 13 ms per entry here): after a power
loss an entry may be torn, and the lookup's size and head/tail digests
find it damaged, so it is recomputed. When two writers race, the second
rename fails (the target exists) and the second writer keeps the first's
entry, so concurrent runs sharing the directory never corrupt it.

**Lookup** reads ``meta.json`` and at most 8 KiB of the data file: its size,
the digests of its head and tail (header and footer) and the kind's magic
bytes. Truncation or a damaged header/footer is reported as ``Corrupt``
(the caller logs ``cache_corrupt``) and the entry is moved to ``trash/``,
so the recomputed value can be stored (``maintenance.verify`` hashes whole files).
A pickle entry is loaded only when the cache directory and the file belong
to the current user (unpickling runs code).

The last use of an entry is its ``meta.json`` mtime (touched on load), by
which ``maintenance`` trims and cleans the cache.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CacheCorrupt, CacheError
from ..settings import tuning
from . import codec
from .hashing import hash_bytes, hash_file
from .locks import KeyLock
from .plan import CACHE_FORMAT_VERSION, KeyRecord
from .worth import size_of, worth_storing, write_rate

_META_MAX = 1 << 20


@dataclass(frozen=True)
class Entry:
    """A committed cache entry: small and picklable, so it can travel to a worker."""

    key: str
    path: str  # the data file
    kind: str
    size: int
    checksum: str


# What ``lookup`` raises and ``verify`` returns for a damaged entry (``.path``, ``.reason``).
Corrupt = CacheCorrupt


@dataclass(frozen=True)
class CacheTarget:
    """Where a worker process stores one stage's result: picklable, opens the cache there."""

    root: str
    key: str
    stage: str

    def write(self, value: Any, compute_s: float | None = None) -> bool:
        """Store ``value`` as this key's entry (atomic; a racer's entry wins), unless it took
        ``compute_s`` to make and writing it would cost more (``worth.worth_storing``).

        Only a value larger than the rate probe can cost more than 0.2 s to write on
        any disk worth caching on, so only then is the cache's write rate needed.
        """
        cache = Cache(self.root)
        numbers = tuning()
        nbytes = size_of(value)
        if compute_s is not None and nbytes > numbers.cache_probe_bytes and not worth_storing(
                nbytes, compute_s, cache.write_rate(), numbers.cache_write_free_s,
                numbers.cache_write_share):
            return False
        cache.write(self.key, value, stage=self.stage)
        return True


_READY: set[str] = set()  # cache roots whose directories this process has made
_RATES: dict[str, float] = {}  # cache root -> its write rate, bytes per second


class Cache:
    """Content-addressed stage results under one directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.root = Path(directory)
        if str(self.root) in _READY:
            return  # its directories were made (or checked) by this process already
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            for sub in ("entries", "tmp", "trash", "locks", "manifests"):
                (self.root / sub).mkdir(exist_ok=True, mode=0o700)
        except OSError as exc:
            msg = f"cannot use cache directory {str(self.root)!r}: {exc.strerror}"
            raise CacheError(msg) from None
        _READY.add(str(self.root))

    def _dir(self, key: str) -> Path:
        return self.root / "entries" / key[:2] / key

    # -- reading ----------------------------------------------------------

    def lookup(self, key: str) -> Entry | None:
        """The intact entry for ``key`` or ``None``; raises ``CacheCorrupt`` for a damaged
        one (already moved aside, so the recomputed value can be stored)."""
        directory = self._dir(key)
        try:
            with open(directory / "meta.json", "rb") as f:
                raw = f.read(_META_MAX)
        except FileNotFoundError:
            if directory.exists():
                raise self.damaged(key, directory, "its metadata is missing") from None
            return None
        try:
            meta = json.loads(raw)
            if meta["format"] != CACHE_FORMAT_VERSION or meta["key"] != key:
                raise self.damaged(key, directory, "metadata of another format or key")
        except (ValueError, KeyError, TypeError):
            raise self.damaged(key, directory, "its metadata does not parse") from None
        return self._checked(key, directory, meta)

    def _checked(self, key: str, directory: Path, meta: dict[str, Any]) -> Entry:
        try:
            kind = meta["kind"]
            name, head_magic, tail_magic = codec.MAGIC[kind]
            size, head_digest, tail_digest = int(meta["size"]), meta["head"], meta["tail"]
        except (KeyError, TypeError, ValueError):
            raise self.damaged(key, directory, "its metadata is incomplete") from None
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise self.damaged(key, directory, "its data file is missing") from None
        try:
            info = os.fstat(fd)
            if info.st_size != size:
                why = f"truncated or resized: {info.st_size} bytes, {size} expected"
                raise self.damaged(key, directory, why)
            edge = tuning().cache_edge
            head = os.pread(fd, edge, 0)
            tail = os.pread(fd, edge, max(0, info.st_size - edge))
        finally:
            os.close(fd)
        if hash_bytes(head) != head_digest or not head.startswith(head_magic):
            raise self.damaged(key, directory, "its header is damaged")
        if hash_bytes(tail) != tail_digest or not tail.endswith(tail_magic):
            raise self.damaged(key, directory, "its footer is damaged")
        if kind == "pickle" and not self._own(info, directory):
            # Not ours to delete either; just never unpickle it.
            raise CacheCorrupt(str(path), "a pickle entry owned by another user; not loaded")
        return Entry(key, str(path), kind, size, str(meta.get("checksum")))

    def _own(self, info: os.stat_result, directory: Path) -> bool:
        me = os.geteuid()
        return info.st_uid == me and all(
            p.stat().st_uid == me for p in (directory, self.root)
        )

    def damaged(self, key: str, directory: Path, reason: str) -> CacheCorrupt:
        self.discard(directory)
        return CacheCorrupt(str(directory), reason)

    def load(self, entry: Entry) -> Any:
        """The entry's value: memory-mapped and read-only for arrays and tables."""
        directory = Path(entry.path).parent
        try:
            with open(directory / "meta.json", "rb") as f:
                meta = json.loads(f.read(_META_MAX))
            value = codec.read(Path(entry.path), entry.kind, meta)
        except Exception as exc:  # noqa: BLE001 - any decoding failure means damage
            self.discard(directory)
            raise CacheCorrupt(entry.path, f"{type(exc).__name__}: {exc}") from None
        try:
            os.utime(directory / "meta.json")  # last use, for clean's LRU order
        except OSError:
            pass
        return value

    # -- writing ----------------------------------------------------------

    def write(self, key: str, value: Any, stage: str = "") -> Entry:
        """Store ``value`` under ``key`` atomically; returns the entry (possibly a racer's)."""
        kind = codec.kind_of(value)
        name = codec.MAGIC[kind][0]
        tmp = self.root / "tmp" / f"{key}.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.mkdir(mode=0o700)
        try:
            data = tmp / name
            extra = codec.write(data, kind, value)
            size = data.stat().st_size
            with open(data, "rb") as f:
                edge = tuning().cache_edge
                head = f.read(edge)
                f.seek(max(0, size - edge))
                tail = f.read(edge)
            meta = {
                "format": CACHE_FORMAT_VERSION,
                "key": key,
                "kind": kind,
                "size": size,
                "checksum": hash_file(data),
                "head": hash_bytes(head),
                "tail": hash_bytes(tail),
                "stage": stage,
                "created": time.time(),
                **extra,
            }
            (tmp / "meta.json").write_bytes(json.dumps(meta).encode())
            final = self._dir(key)
            final.parent.mkdir(exist_ok=True, mode=0o700)
            for _ in range(2):
                try:
                    os.rename(tmp, final)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                try:
                    existing = self.lookup(key)  # a racer committed first
                except CacheCorrupt:
                    continue  # it was damaged and is now moved aside: rename again
                if existing is not None:
                    return existing
            else:
                msg = f"cannot store the result of stage {stage!r} in {str(final)!r}"
                raise CacheError(msg)
            return Entry(key, str(final / name), kind, size, meta["checksum"])
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    # -- locks and manifests ---------------------------------------------

    def target(self, key: str, stage: str = "") -> CacheTarget:
        """A picklable handle a worker process uses to store ``key``'s value."""
        return CacheTarget(str(self.root), key, stage)

    def write_rate(self) -> float:
        """Bytes per second this cache writes an entry at (measured once per directory)."""
        known = _RATES.get(str(self.root))
        if known is None:
            known = _RATES[str(self.root)] = write_rate(self.root, self._probe)
        return known

    def _probe(self, value: Any) -> Path:
        entry = self.write(secrets.token_hex(16), value, stage="(write rate probe)")
        return Path(entry.path).parent

    def lock(self, key: str) -> KeyLock:
        """A context manager that holds ``key``'s lock (blocking until it is free)."""
        return KeyLock(self.root / "locks" / f"{key}.lock")

    def try_lock(self, key: str) -> KeyLock | None:
        """``key``'s lock, held, or None at once if another process holds it."""
        lock = KeyLock(self.root / "locks" / f"{key}.lock")
        return lock if lock.acquire(blocking=False) else None

    def _manifest(self, pipeline: str, stage: str) -> Path:
        return self.root / "manifests" / hash_bytes(pipeline.encode())[:16] / (
            hash_bytes(stage.encode())[:16] + ".json"
        )

    def record(self, pipeline: str, stage: str, rec: KeyRecord, *, failed: bool = False,
               unstored: bool = False) -> None:
        """Remember ``rec`` as the last key of ``stage`` in ``pipeline``, whether the stage
        ``failed`` under it, and whether its result was left ``unstored`` (for explain)."""
        path = self._manifest(pipeline, stage)
        known = self.previous(pipeline, stage)
        if (known is not None and known.key == rec.key and known.failed == failed
                and known.unstored == unstored):
            return  # unchanged: a re-run of an unchanged pipeline writes nothing
        path.parent.mkdir(exist_ok=True, mode=0o700)
        body = {"pipeline": pipeline, "stage": stage, "key": rec.key,
                "components": rec.components, "recorded": time.time(), "failed": failed,
                "unstored": unstored}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, path)

    def previous(self, pipeline: str, stage: str) -> KeyRecord | None:
        """The last recorded key of ``stage`` in ``pipeline``, or None."""
        try:
            body = json.loads(self._manifest(pipeline, stage).read_text())
            return KeyRecord(body["key"], body["components"], failed=bool(body.get("failed")),
                             unstored=bool(body.get("unstored")))
        except (OSError, ValueError, KeyError):
            return None

    # -- maintenance (maintenance.py) ----------------------------------------

    def recheck_layout(self) -> None:
        """The next ``Cache`` of this directory in this process checks its folders again."""
        _READY.discard(str(self.root))

    def discard(self, directory: Path) -> None:
        """Remove an entry's directory (renamed aside first, so no reader sees half of it)."""
        target = self.root / "trash" / f"{directory.name}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            os.rename(directory, target)
        except OSError:
            return
        shutil.rmtree(target, ignore_errors=True)
