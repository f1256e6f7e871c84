"""``RunResult``: what ``dagrun.run`` returns.

A read-only mapping from target stage name to its output, plus the run's
status, errors and task metrics. Outputs backed by shared memory stay valid
until the result is closed; it is a context manager, and it is closed at
interpreter exit at the latest, so nothing is left in ``/dev/shm``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import DagrunError, StageFailed


class RunResult(Mapping[str, Any]):
    """Outputs of a run's target stages, its status and its metrics."""

    def __init__(
        self,
        *,
        run_id: str,
        status: str,
        run_dir: Path,
        wall_s: float,
        targets: list[str],
        values: dict[str, Any],
        errors: dict[str, StageFailed],
        metrics: list[dict[str, Any]],
        skipped: dict[str, str],
        closer: Callable[[], None],
    ) -> None:
        self.run_id = run_id
        self.status = status
        self.run_dir = run_dir
        self.wall_s = wall_s
        self.targets = targets
        self.errors = errors
        self.metrics = metrics
        self.skipped = skipped
        self._values = values
        self._finalizer = weakref.finalize(self, closer)

    @property
    def events_path(self) -> Path:
        """The run's ``events.jsonl``."""
        return self.run_dir / "events.jsonl"

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def __getitem__(self, name: str) -> Any:
        if not self._finalizer.alive and name in self.targets:
            msg = (
                f"the result of run {self.run_id} is closed, so {name!r} is gone; "
                f"read outputs inside `with dagrun.run(...) as result:`"
            )
            raise DagrunError(msg)
        if name in self._values:
            return self._values[name]
        if name in self.errors:
            raise self.errors[name]
        msg = f"{name!r} is not an output of this run; outputs: {', '.join(self._values) or 'none'}"
        raise KeyError(msg)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def raise_for_status(self) -> None:
        """Raise the first stage failure, if the run failed."""
        for error in self.errors.values():
            raise error

    def close(self) -> None:
        """Release the outputs' shared memory; they are unusable afterwards."""
        self._values.clear()
        self._finalizer()

    def __enter__(self) -> RunResult:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RunResult {self.run_id} {self.status}: {', '.join(self._values)}>"

