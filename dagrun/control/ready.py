"""The planner's queue of specs waiting for a worker: lowest rank first, then arrival order.

Most specs of a run share a few ranks (every stage with the same longest
path below it gets the same bottom level), so the queue keeps a heap of the
distinct ranks and one first-in-first-out line per rank: putting a spec in
and taking the next out cost O(1) however many wait, where one heap of
every spec compared tuples about log2(n) times for each.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator

from ..executors.base import TaskSpec


class ReadyQueue:
    """Specs by rank (lower first), in arrival order within one rank."""

    def __init__(self) -> None:
        self._ranks: list[float] = []  # a heap of the ranks that have specs waiting
        self._lines: dict[float, deque[TaskSpec]] = {}
        self._size = 0

    def push(self, rank: float, spec: TaskSpec) -> None:
        """``spec`` waits behind every spec of a lower or equal rank."""
        self._line(rank).append(spec)
        self._size += 1

    def put_back(self, rank: float, spec: TaskSpec) -> None:
        """A spec just taken with ``pop`` returns to the head of its line."""
        self._line(rank).appendleft(spec)
        self._size += 1

    def pop(self) -> tuple[float, TaskSpec]:
        """The next spec and its rank (IndexError when none waits)."""
        rank = self._ranks[0]
        line = self._lines[rank]
        spec = line.popleft()
        self._size -= 1
        if not line:
            heapq.heappop(self._ranks)
            del self._lines[rank]
        return rank, spec

    def clear(self) -> None:
        self._ranks.clear()
        self._lines.clear()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[TaskSpec]:
        """Every waiting spec, in no particular order."""
        for line in self._lines.values():
            yield from line

    def _line(self, rank: float) -> deque[TaskSpec]:
        line = self._lines.get(rank)
        if line is None:
            line = self._lines[rank] = deque()
            heapq.heappush(self._ranks, rank)
        return line
