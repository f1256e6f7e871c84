"""Each batch of a map over a pickled input (a list, say) gets only its own elements.

Without this, every task would unpickle the whole input to take its few
elements (inside the task message when the input is small, from shared
memory when not): a map over N elements would cost O(N²). The driver reads
such an input once, up to ``slice_max`` bytes, while it plans the stage's
batches, and lets it go when they are planned; arrays, tables and joined
batches are not read here (each task maps its own part of those, zero-copy).
"""

from __future__ import annotations

from typing import Any

from ..executors.base import Executor
from ..store import Decoded, Handle, encode


class InputSlices:
    """The pickled mapped inputs read for the batches being planned now."""

    def __init__(self, executor: Executor, max_bytes: int) -> None:
        self.executor = executor
        self.max_bytes = max_bytes
        self._read: dict[str, Decoded] = {}

    def part(self, handle: Any, upstream: str, items: tuple[int, int]) -> Handle | None:
        """Elements ``[start, stop)`` of ``upstream``'s output as a handle of their own, or
        None when the batch should read the input itself."""
        if not isinstance(handle, Handle) or handle.transport != "pickle":
            return None
        if type(handle.payload) is not bytes and handle.nbytes > self.max_bytes:
            return None  # the driver does not hold a second copy of a large value
        decoded = self._read.get(upstream)
        if decoded is None:
            decoded = self._read[upstream] = self.executor.read(handle, upstream)
        try:
            elements = decoded.value[items[0]:items[1]]
        except TypeError:
            return None
        return encode(elements, self.executor.config, upstream)

    def forget(self) -> None:
        """Every batch planned has its elements (a retry reads the input again)."""
        for decoded in self._read.values():
            decoded.close()
        self._read.clear()
