"""The garbage collector's settings while a run goes on (the driver's, and its workers').

The driver collects less often and not at all through what exists once its
plan is made (``RunCollector``); a worker forked meanwhile keeps that frozen
set out of its own walks (its pages stay shared) but collects as the caller
had it set (``in_worker``): stages run under the caller's settings.
"""

from __future__ import annotations

import gc

_caller: tuple[int, ...] | None = None  # the caller's thresholds while a run changes them


class RunCollector:
    """The garbage collector's settings for the length of a run, restored after it.

    The youngest generation is collected after 10,000 new objects instead of
    700: building a large graph, and then each task, leaves records behind,
    and at the default a collection walking them ran every few dozen stages.
    Once the graph and the plan exist, ``freeze`` keeps the collector from
    walking them (and the caller's own objects) at all, and forked workers
    share their pages instead of copying them as a walk touches them.
    Together: about 15 µs less per task over 1,000s of no-op tasks
    (``tests.bench``, overhead).
    """

    YOUNG = 10_000

    def __init__(self) -> None:
        global _caller
        self.threshold = gc.get_threshold()
        self.frozen = False
        self._outer = _caller  # a run inside a run (an inline stage's) hands it back
        _caller = _caller or self.threshold
        gc.set_threshold(max(self.threshold[0], self.YOUNG), *self.threshold[1:])

    def freeze(self) -> None:
        gc.freeze()
        self.frozen = True

    def restore(self) -> None:
        global _caller
        _caller = self._outer
        gc.set_threshold(*self.threshold)
        if self.frozen:
            self.frozen = False
            gc.unfreeze()


def in_worker() -> None:
    """In a worker forked during a run: the caller's thresholds, not the run's."""
    if _caller is not None:
        gc.set_threshold(*_caller)
