"""``encode``/``decode``: choose each value's transport, and rebuild it read-only.

    value ─┬─ ndarray (large, non-object) ─────────────▶ arrays   (shm | file)
           ├─ Table/RecordBatch/pandas/polars frame ───▶ arrow    (arrow | arrow+file)
           ├─ bytes / bytearray / memoryview (large) ──▶ its bytes in a segment, as is
           ├─ anything pickling to < inline_max bytes ─▶ pickle, inside the handle
           ├─ a large pickle with no large buffer ─────▶ that pickle in a segment (blob)
           └─ anything else (containers, objects) ─────▶ tree: a pickled skeleton whose
              large arrays/tables are persistent ids for their own parts, and whose
              other large out-of-band buffers become uint8 arrays (shm+pickle, …)

The first path for anything not an array or a table is one ``pickle.dumps``
with no filesystem call; its buffer callback aborts as soon as a large buffer
shows up, so a container of big arrays is never copied into a pickle. When
none shows up and the pickle names no numpy (an array pickled in-band), it is
the value's whole encoding: plain Python data
(a list of a million ints) costs one ``dumps`` and one ``loads``, never a
Python-level hook per object. A bytes-like value is copied once into its
segment and once out of it (a ``memoryview`` not even that: the consumer
reads the mapping), and comes back as the type it was returned as.

A returned array is copied into its segment as it is, never freed page by
page while copied: whether anything else still references it cannot be
known for certain (``sys.getrefcount`` undercounts borrowed references from
CPython 3.14), and freeing the pages of an array someone else reads would
hand them zeros. A value kept in its worker (``held``) is given to its
consumer as a read-only view; the producer's own object is left as it was.
"""

from __future__ import annotations

import io
import pickle
import weakref
from typing import Any

import numpy as np

from . import arrays, arrow, held, segments
from .config import (
    ArrayPayload,
    ArrowPayload,
    BlobPayload,
    Decoded,
    Handle,
    StoreConfig,
    TreePayload,
)
from .held import HeldPayload

_ORDER = ("shm", "arrow", "file", "pickle")


class _Large(Exception):
    """A pickle buffer too large to travel inside a handle."""


def length_of(value: Any) -> int | None:
    """How many elements a map over ``value`` would see; None when it has no length."""
    if isinstance(value, np.ndarray):
        return len(value) if value.ndim else None
    try:
        return len(value)
    except TypeError:
        return None


def _transport(tokens: set[str]) -> str:
    return "+".join(t for t in _ORDER if t in tokens)


def encode_result(
    box: list[Any], config: StoreConfig, stage: str, *, keep: bool = False
) -> Handle:
    """``encode`` for a result its caller gives up: ``box`` holds the caller's reference.

    With ``keep`` a large result may instead stay in this process (``held``),
    handed to its one consumer as a read-only view.
    """
    value = box.pop()
    if keep and held.holdable(value, config):
        return held.hold(value)
    return encode(value, config, stage)


def encode(value: Any, config: StoreConfig, stage: str, *, release: bool = False) -> Handle:
    """Store ``value`` (a stage's result) and return its handle.

    ``release``: ``value`` is an array nobody else can reach, whose pages may
    be freed as it is copied.
    """
    cls = type(value)
    if cls in _PLAIN:  # nothing inside to look for: pickled into the handle unless large
        data = pickle.dumps(value, 5)
        if len(data) < config.inline_max:
            return Handle("pickle", len(data), data, len(value) if cls is str else None)
    if cls is np.ndarray:
        if not value.dtype.hasobject and value.nbytes >= config.inline_max:
            return arrays.encode_array(value, config, stage, object(), release=release)
    elif cls in _BYTES_LIKE:
        if memoryview(value).nbytes >= config.inline_max:
            return _encode_bytes(value, config, stage)
    else:
        kind = arrow.kind_of(value)
        if kind is not None:
            handle = _try_arrow(value, kind, config, stage)
            if handle is not None:
                return handle
    limit = config.inline_max

    def inband(buffer: pickle.PickleBuffer) -> bool:
        if memoryview(buffer).nbytes >= limit:
            raise _Large
        return True

    try:
        data = pickle.dumps(value, protocol=5, buffer_callback=inband)
    except _Large:
        data = None
    if data is not None and len(data) < limit:
        return Handle("pickle", len(data), data, length_of(value))
    if data is not None and b"numpy" not in data:
        # Large, with no large buffer and no array inside: the pickle is all there is.
        blob = _encode_blob(data, config, stage)
        tokens = {"pickle", "file"} if blob.segment.where == "file" else {"pickle"}
        return Handle(_transport(tokens), len(data), blob, length_of(value))
    return _encode_tree(value, config, stage)


_BYTES_LIKE = (bytes, bytearray, memoryview)
_PLAIN = frozenset({type(None), bool, int, float, complex, str})
# Large Arrow and pandas buffers always leave the pickle (``_Large``); a large
# numpy array pickled in-band (a non-contiguous view) names numpy, and the
# tree stores it as its own part. One search of the bytes costs far less than
# the tree's hook per object.


def _encode_bytes(value: bytes | bytearray | memoryview, config: StoreConfig, stage: str) -> Handle:
    view = memoryview(value)
    extra = (view.format, view.shape) if type(value) is memoryview else None
    flat = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
    entry, ref, _fresh = segments.create(config, flat.nbytes, stage)
    with segments.filling(config, ref, entry):
        entry.mm[: flat.nbytes] = flat
    kind = type(value).__name__
    transport = "shm" if ref.where == "shm" else "file"
    return Handle(transport, flat.nbytes, BlobPayload(ref, flat.nbytes, kind, extra), len(value))


def _try_arrow(value: Any, kind: str, config: StoreConfig, stage: str) -> Handle | None:
    if kind in ("pandas", "series"):
        try:
            return arrow.encode_arrow(value, kind, config, stage)
        except (ImportError, TypeError, ValueError):  # mixed object columns: pickle instead
            return None
    return arrow.encode_arrow(value, kind, config, stage)


class _TreePickler(pickle.Pickler):
    """Pickles a skeleton; large arrays and tables become parts stored on their own."""

    def __init__(self, file: io.BytesIO, config: StoreConfig, stage: str) -> None:
        super().__init__(file, protocol=5, buffer_callback=self._buffer)
        self.config = config
        self.stage = stage
        self.session = object()
        self.parts: list[Handle] = []
        self.buffers: list[Handle] = []
        self.seen: dict[int, tuple[int, Any]] = {}

    def persistent_id(self, obj: Any) -> int | None:
        kind = None
        if type(obj) is np.ndarray:
            if obj.dtype.hasobject or obj.nbytes < self.config.inline_max:
                return None
        else:
            kind = arrow.kind_of(obj)
            if kind is None:
                return None
        known = self.seen.get(id(obj))
        if known is not None:
            return known[0]
        if kind is None:
            handle = arrays.encode_array(obj, self.config, self.stage, self.session)
        else:
            handle = _try_arrow(obj, kind, self.config, self.stage)
            if handle is None:
                return None
        self.parts.append(handle)
        self.seen[id(obj)] = (len(self.parts) - 1, obj)  # keep obj alive: ids stay unique
        return len(self.parts) - 1

    def _buffer(self, buffer: pickle.PickleBuffer) -> bool:
        view = memoryview(buffer)
        if view.nbytes < self.config.inline_max:
            return True
        flat = np.frombuffer(view.cast("B") if view.contiguous else view.tobytes(), np.uint8)
        self.buffers.append(arrays.encode_array(flat, self.config, self.stage, self.session))
        return False


def _encode_blob(data: bytes, config: StoreConfig, stage: str) -> BlobPayload:
    entry, ref, _fresh = segments.create(config, len(data), stage)
    with segments.filling(config, ref, entry):
        entry.mm[: len(data)] = data
    return BlobPayload(ref, len(data))


def _encode_tree(value: Any, config: StoreConfig, stage: str) -> Handle:
    file = io.BytesIO()
    pickler = _TreePickler(file, config, stage)
    pickler.dump(value)
    data = file.getvalue()
    skeleton: bytes | BlobPayload = data
    members = (*pickler.parts, *pickler.buffers)
    tokens = {"pickle"}
    for member in members:
        tokens.update(member.transport.split("+"))
    nbytes = len(data) + sum(m.nbytes for m in members)
    length = length_of(value)
    if len(data) >= config.inline_max:
        skeleton = _encode_blob(data, config, stage)
        if skeleton.segment.where == "file":
            tokens.add("file")
        if not members:  # just a large pickle
            return Handle(_transport(tokens), nbytes, skeleton, length)
    payload = TreePayload(skeleton, tuple(pickler.parts), tuple(pickler.buffers))
    return Handle(_transport(tokens), nbytes, payload, length)


def _read_only(make: Any) -> Any:
    def rebuild(*args: Any) -> Any:
        arr = make(*args)
        arr.flags.writeable = False
        return arr

    return rebuild


class _ReadOnlyUnpickler(pickle.Unpickler):
    """Unpickles with every array carried inside the pickle made read-only."""

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name)
        if name == "_frombuffer" and module.startswith("numpy"):
            return _read_only(found)
        return found


class _TreeUnpickler(_ReadOnlyUnpickler):
    """Rebuilds a skeleton, decoding each persistent id from its own part."""

    def __init__(
        self,
        file: Any,
        parts: tuple[Handle, ...],
        buffers: list[Any],
        config: StoreConfig,
        stage: str,
    ) -> None:
        super().__init__(file, buffers=buffers)
        self.parts = parts
        self.config = config
        self.stage = stage

    def persistent_load(self, pid: Any) -> Any:
        return _decode_value(self.parts[pid], self.config, self.stage)


def _decode_value(handle: Handle, config: StoreConfig, stage: str) -> Any:
    payload = handle.payload
    if isinstance(payload, ArrayPayload):
        return arrays.decode_array(payload, config, stage)
    if isinstance(payload, ArrowPayload):
        return arrow.decode_arrow(payload, config, stage)
    if isinstance(payload, BlobPayload):
        return _decode_blob(payload, config, stage)
    if isinstance(payload, HeldPayload):
        return held.take(payload, stage)
    if isinstance(payload, TreePayload):
        data = payload.skeleton
        if isinstance(data, BlobPayload):
            data = _read_blob(data, config, stage)
        buffers = [_decode_value(b, config, stage) for b in payload.buffers]
        unpickler = _TreeUnpickler(io.BytesIO(data), payload.parts, buffers, config, stage)
        return unpickler.load()
    return pickle.loads(payload)


def _decode_blob(blob: BlobPayload, config: StoreConfig, stage: str) -> Any:
    data = _read_blob(blob, config, stage)
    if blob.kind == "bytes":
        return data.tobytes()
    if blob.kind == "bytearray":
        return bytearray(data)
    if blob.kind == "memoryview":  # the read-only mapping itself, shaped as it was
        view = memoryview(data)
        fmt, shape = blob.extra
        try:
            return view.cast(fmt, shape) if shape else view.cast(fmt)
        except (TypeError, ValueError):
            return view
    return _ReadOnlyUnpickler(io.BytesIO(data)).load()


def _read_blob(blob: BlobPayload, config: StoreConfig, stage: str) -> Any:
    return segments.open_read(config, blob.segment, stage)[: blob.size]


def inline_value(payload: bytes) -> Any:
    """The value a handle carries in itself (a small pickle): nothing to map or close."""
    if b"_frombuffer" in payload:  # arrays inside: make them read-only too
        value = _ReadOnlyUnpickler(io.BytesIO(payload)).load()
    else:
        value = pickle.loads(payload)
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    return value


def decode(handle: Handle, config: StoreConfig, stage: str) -> Decoded:
    """Read a stored value back; arrays come back read-only, mapped where stored."""
    payload = handle.payload
    if handle.transport == "cache":  # an entry of the cache: its payload maps itself
        return Decoded(payload.load())
    if type(payload) is bytes:
        return Decoded(inline_value(payload))
    decoded = Decoded(_decode_value(handle, config, stage))
    ref = weakref.ref(decoded)

    def close() -> None:
        # Drop our reference; the mapping's lock goes when the user's views do.
        target = ref()
        if target is not None:
            target.value = None

    decoded.close = close
    return decoded
