"""``dagrun explain`` and the cache part of ``dagrun clean``.

``explain`` loads and validates the pipeline, computes every stage's key
(``cache.plan_keys``) and compares it with the cache and with the last
recorded run of the same pipeline; nothing runs. ``clean_cache`` is what
``dagrun clean --cache [--verify] [--older-than AGE] [--max-size SIZE]`` does:
with none of the three, the whole cache goes; otherwise damaged entries
(``--verify``), entries unused for AGE, then the least recently used beyond
SIZE. The cache directory is ``--cache-dir``, else ``$DAGRUN_CACHE_DIR``,
else ``STATE/cache``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import DagrunError
from .options import (
    CacheDirOpt,
    ParamOpt,
    PipelineArg,
    StateDirOpt,
    TargetOpt,
    fail,
    parse_date_arg,
    parse_params,
)


def register(app: typer.Typer) -> None:
    """Add ``explain`` to the ``dagrun`` command."""
    app.command("explain")(explain_command)


def cache_dir_for(state_dir: Path | None, cache_dir: Path | None) -> Path:
    """The cache directory: the option, else ``$DAGRUN_CACHE_DIR``, else ``STATE/cache``."""
    from ..settings import Environment

    if cache_dir is not None:
        return cache_dir
    env = Environment.read()
    if env.cache_dir:
        return Path(env.cache_dir)
    return (state_dir or Path(env.state_dir or ".dagrun")) / "cache"


def explain_command(
    pipeline: PipelineArg,
    param: ParamOpt = None,
    target: TargetOpt = None,
    state_dir: StateDirOpt = None,
    cache_dir: CacheDirOpt = None,
    run_date: Annotated[
        str | None, typer.Option(help="The logical date a run would get [default: today].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per stage.")] = False,
) -> None:
    """Say, per stage, whether a run would compute it and why; runs nothing."""
    try:
        from ..cache import Cache, explain, pipeline_key, plan_keys
        from ..control.run_ends import bind_run_date
        from ..graph.build import build_graph
        from ..pipeline.loader import load

        graph = build_graph(load(pipeline), parse_params(param or []), target)
        bind_run_date(graph, parse_date_arg(run_date, "--run-date") if run_date else None)
        keys = plan_keys(graph)
        cache = Cache(cache_dir_for(state_dir, cache_dir))
        reasons = explain(graph, cache, keys, pipeline_key(graph))
    except DagrunError as exc:
        raise fail(exc) from None
    if as_json:
        for name, reason in reasons.items():
            typer.echo(json.dumps({
                "stage": name, "would_run": reason.would_run, "reason": reason.reason,
                "key": keys[name].key, "notes": list(reason.notes),
            }))
        return
    width = max((len(n) for n in reasons), default=0)
    for name, reason in reasons.items():
        verdict = "run " if reason.would_run else "skip"
        typer.echo(f"{name:<{width}}  {verdict}  {reason.reason}")
        for note in reason.notes:
            typer.echo(f"{'':<{width}}        {note}")
    running = sum(r.would_run for r in reasons.values())
    typer.echo(f"{running} of {len(reasons)} stage(s) would run")


def clean_cache(
    state_dir: Path,
    cache_dir: Path | None = None,
    *,
    verify: bool = False,
    older_than: float | None = None,
    max_size: str | None = None,
) -> list[str]:
    """Clean the cache as ``dagrun clean --cache`` does; the entries removed."""
    from ..cache import Cache, maintenance
    from ..units import parse_size

    limit = parse_size(max_size, "--max-size") if max_size is not None else None
    directory = cache_dir_for(state_dir, cache_dir)
    if not directory.exists():
        return []
    cache = Cache(directory)
    lines = []
    if not verify and older_than is None and limit is None:
        report = maintenance.clear(cache)
    else:
        if verify:
            lines += [f"{bad.path} (damaged: {bad.reason})" for bad in maintenance.verify(cache)]
        report = maintenance.clean(cache, older_than=older_than, max_size=limit)
    return lines + report.removed
