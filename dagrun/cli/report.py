"""``dagrun report [RUN_ID] [-o FILE] [--trace FILE] [--state-dir DIR]``.

Thin: find the run's ``events.jsonl`` (``report.find_run``), render, write.
RUN_ID is a run id, a unique prefix of one, or a run directory (one copied
from another machine works: nothing but its event file is read); without
it, the latest run. The HTML goes to ``report.html`` in the run's directory
unless ``-o`` names a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""
    app.command("report")(report_command)


def report_command(
    run_id: Annotated[
        str | None,
        typer.Argument(help="A run id, a unique prefix of one, or a run directory "
                            "[default: the latest run]."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The HTML file [default: report.html in the run's "
                                            "directory]."),
    ] = None,
    trace: Annotated[
        Path | None,
        typer.Option(help="Also write Chrome trace-event JSON here (open it in Perfetto)."),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="Where runs live [default: $DAGRUN_STATE_DIR or .dagrun]."),
    ] = None,
) -> None:
    """Write a run's HTML timeline report (and, with --trace, a Chrome trace)."""
    from ..errors import DagrunError, UsageError

    try:
        written = _report(run_id, output, trace, state_dir)
    except DagrunError as exc:
        from .options import exit_code_for

        typer.echo(f"dagrun: error: {exc}", err=True)
        raise typer.Exit(exit_code_for(exc)) from None
    except OSError as exc:
        error = UsageError(f"cannot write the report: {exc}; choose another path with -o")
        typer.echo(f"dagrun: error: {error}", err=True)
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(f"wrote {path}")


def _report(
    run_id: str | None, output: Path | None, trace: Path | None, state_dir: Path | None
) -> list[Path]:
    import json

    from ..events.history import read_events
    from ..report import chrome_trace, find_run, render_html
    from ..settings import Environment

    state = state_dir if state_dir is not None else Path(Environment.read().state_dir or ".dagrun")
    events_path = find_run(state, run_id)
    events = read_events(events_path)
    html_path = output if output is not None else events_path.parent / "report.html"
    html_path.write_text(render_html(events), encoding="utf-8")
    written = [html_path]
    if trace is not None:
        trace.write_text(json.dumps(chrome_trace(events), default=str), encoding="utf-8")
        written.append(trace)
    return written
