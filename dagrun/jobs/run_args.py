"""One run as the command line gave it, to start again (a scheduled tick, a backfill date)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class RunArgs:
    """One run as the command line gave it (``run_date`` excepted: each command sets it)."""

    pipeline: str
    params: dict[str, str] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    def kwargs(self, run_date: date | datetime | None = None) -> dict[str, Any]:
        """Keyword arguments for ``dagrun.run``."""
        out = {**self.options, "params": dict(self.params), "targets": list(self.targets) or None}
        if run_date is not None:
            out["run_date"] = run_date
        return out

    def argv(self, run_date: date | datetime | None = None) -> list[str]:
        """Arguments of ``dagrun run`` that make the same run."""
        out = ["run", self.pipeline]
        for name, value in self.params.items():
            out += ["--param", f"{name}={value}"]
        for stage in self.targets:
            out += ["--target", stage]
        for name, value in self.options.items():
            flag = "--" + name.replace("_", "-")
            if value is None or value is False:
                continue
            if value is True:
                out.append(flag)
            elif isinstance(value, list | tuple):
                for item in value:
                    out += [flag, str(item)]
            else:
                out += [flag, str(value)]
        if run_date is not None:
            out += ["--run-date", run_date.isoformat()]
        return out
