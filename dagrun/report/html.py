"""A run as one self-contained HTML page: inline CSS and SVG, no script, no network.

    header      pipeline, run id, status, wall, workers, parallelism, critical path
    timeline    an SVG Gantt chart: one row per worker, one <rect data-task> per task
                attempt, filled with its stage's colour; a failed attempt has a solid
                red outline, one that was retried a dashed one; each rect's <title>
                (the browser's hover text) holds the task's metrics
    graph       the DAG, stages in columns by depth (longest path from a source),
                coloured by status; the critical path's edges drawn thicker
    stages      the per-stage table of ``summary.summarize``
    failures    each failed task's error and traceback

Every string from the events is escaped: a stage name or error message is
data, never markup.
"""

from __future__ import annotations

from collections.abc import Iterable
from graphlib import TopologicalSorter
from html import escape
from typing import Any

from ..events.summary import TaskSpan, seconds, summarize, task_spans
from ..units import format_bytes

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
           "#9c755f", "#bab0ac", "#86bcb6", "#8cd17d", "#d4a6c8")  # Tableau 10 and kin
STATUS_COLOUR = {"succeeded": "#cfe8cf", "failed": "#f4b6b6", "cached": "#cfe0f4",
                 "skipped": "#e4e4e4", "running": "#fff1b8", "pending": "#fff1b8"}
ROW_H, LABEL_W, CHART_W = 24, 150, 1000  # timeline geometry, pixels
NODE_W, NODE_H, COL_GAP, ROW_GAP = 150, 34, 70, 16  # graph geometry, pixels

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px}
.meta{color:#555;margin:0 0 4px} .scroll{overflow-x:auto;border:1px solid #ddd;padding:6px}
table{border-collapse:collapse} th,td{padding:3px 8px;border-bottom:1px solid #eee;
text-align:right;white-space:nowrap} th{background:#f6f6f6} td.l,th.l{text-align:left}
tr.crit td{font-weight:600} .st{display:inline-block;padding:0 6px;border-radius:3px}
pre{background:#f8f8f8;padding:8px;overflow-x:auto;font-size:12px}
.legend span{display:inline-block;margin:2px 10px 2px 0}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
svg text{font:12px system-ui,sans-serif}
"""


def render_html(events: Iterable[dict[str, Any]]) -> str:
    """The report page for a run's events."""
    events = list(events)
    start = next((e for e in events if e.get("event") == "run_started"), {})
    end = next((e for e in reversed(events) if e.get("event") == "run_finished"), {})
    workers = int(start.get("workers") or 1)
    summary = summarize(events, workers)
    spans = task_spans(events)
    stages = [row["stage"] for row in summary["stages"]]
    for up, down in start.get("edges") or ():
        for name in (up, down):
            if name not in stages:
                stages.append(name)
    colours = {s: PALETTE[i] if i < len(PALETTE) else f"hsl({i * 137.5 % 360:.0f},55%,60%)"
               for i, s in enumerate(stages)}
    origin = seconds(start.get("timestamp")) or min((s.start for s in spans), default=0.0)
    title = f"{start.get('pipeline', 'run')} — {start.get('run_id', '?')}"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>dagrun report: {escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        _header(start, end, summary),
        f"<h2>Timeline ({len(spans)} task attempts)</h2>",
        "<div class='scroll'>", _timeline(spans, colours, origin, summary["wall_s"]), "</div>",
        _legend(colours),
        "<h2>Graph</h2><div class='scroll'>", _graph(start, summary), "</div>",
        _status_legend(),
        "<h2>Stages</h2>", _table(summary), _failures(events),
        "</body></html>\n",
    ]
    return "".join(parts)


def _header(start: dict[str, Any], end: dict[str, Any], summary: dict[str, Any]) -> str:
    status = end.get("status", "unfinished (no run_finished event)")
    path = " → ".join(escape(s) for s in summary["critical_path"]) or "-"
    return (
        f"<p class='meta'>status <b>{escape(str(status))}</b> · wall {summary['wall_s']:.2f} s"
        f" · {summary['workers']} worker(s), {escape(str(start.get('executor', '?')))}"
        f" executor · cpu {summary['cpu_s']:.2f} s · parallelism "
        f"{summary['parallelism']:.2f}</p>"
        f"<p class='meta'>critical path ({summary['critical_path_s']:.2f} s): {path}</p>"
    )


def _nice_step(total: float) -> float:
    """A tick step of 1, 2 or 5 times a power of ten giving about eight ticks."""
    raw = max(total, 1e-6) / 8
    power = 1.0
    while power * 10 <= raw:
        power *= 10
    while power > raw:
        power /= 10
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _timeline(spans: list[TaskSpan], colours: dict[str, str], origin: float, wall: float) -> str:
    rows: dict[str, int] = {}
    for span in spans:
        rows.setdefault(span.worker, len(rows))
    total = max([wall, *(s.end - origin for s in spans)], default=0.0) or 1.0
    scale = CHART_W / total
    height = 30 + ROW_H * max(1, len(rows))
    width = LABEL_W + CHART_W + 20
    out = [f"<svg id='timeline' xmlns='http://www.w3.org/2000/svg' width='{width}' "
           f"height='{height}' viewBox='0 0 {width} {height}'>"]
    step = _nice_step(total)
    tick = 0.0
    while tick <= total + 1e-9:
        x = LABEL_W + tick * scale
        out.append(f"<line x1='{x:.1f}' y1='18' x2='{x:.1f}' y2='{height}' stroke='#eee'/>"
                   f"<text x='{x:.1f}' y='12' text-anchor='middle' fill='#777'>"
                   f"{tick:.{_decimals(step)}f} s</text>")
        tick += step
    for worker, row in rows.items():
        y = 22 + row * ROW_H
        out.append(f"<text x='4' y='{y + ROW_H / 2 + 4:.1f}'>{escape(worker)}</text>")
    for span in spans:
        y = 22 + rows[span.worker] * ROW_H + 2
        x = LABEL_W + (span.start - origin) * scale
        # A failed attempt often dies at once: wide enough to see (and hover) anyway.
        least = 1.0 if span.status == "succeeded" else 4.0
        w = max(least, (span.end - span.start) * scale)
        stroke = {"failed": " stroke='#c00' stroke-width='2'",
                  "retried": " stroke='#c00' stroke-width='2' stroke-dasharray='4 2'"}.get(
                      span.status, " stroke='#fff' stroke-width='0.5'")
        out.append(
            f"<rect data-task='{escape(span.name)}#{span.attempt}' "
            f"data-stage='{escape(span.stage)}' data-status='{span.status}' x='{x:.2f}' "
            f"y='{y}' width='{w:.2f}' height='{ROW_H - 4}' fill='{colours[span.stage]}'"
            f"{stroke}><title>{escape(_tooltip(span, origin))}</title></rect>"
        )
    out.append("</svg>")
    return "".join(out)


def _decimals(step: float) -> int:
    return 0 if step >= 1 else min(6, len(f"{step:.6f}".rstrip("0").split(".")[1]))


def _tooltip(span: TaskSpan, origin: float) -> str:
    f = span.fields
    lines = [f"{span.name} (attempt {span.attempt}): {span.status}",
             f"{span.worker}, {span.start - origin:.3f} s → {span.end - origin:.3f} s "
             f"({span.end - span.start:.3f} s)"]
    if f.get("event") == "task_finished":
        lines += [
            f"cpu {f.get('cpu_s', 0):.3f} s · queue wait {f.get('queue_wait_s', 0):.3f} s",
            f"peak {format_bytes(f.get('max_rss_bytes') or 0)} · rss growth "
            f"{format_bytes(f.get('rss_growth_bytes') or 0)}",
            f"in {format_bytes(f.get('input_bytes') or 0)} · out "
            f"{format_bytes(f.get('output_bytes') or 0)} via {f.get('transport') or '-'}",
        ]
        if f.get("items") is not None:
            lines.append(f"items {f['items']}")
    else:
        lines.append(f"{f.get('error_type')}: {f.get('error')}")
    return "\n".join(lines)


def _legend(colours: dict[str, str]) -> str:
    items = "".join(f"<span><i style='background:{c}'></i>{escape(s)}</span>"
                    for s, c in colours.items())
    return (f"<p class='legend'>{items}<span><i style='border:2px solid #c00'></i>failed</span>"
            f"<span><i style='border:2px dashed #c00'></i>retried</span></p>")


def _status_legend() -> str:
    items = "".join(f"<span><i style='background:{c}'></i>{s}</span>"
                    for s, c in STATUS_COLOUR.items() if s != "pending")
    return f"<p class='legend'>{items}</p>"


def _graph(start: dict[str, Any], summary: dict[str, Any]) -> str:
    rows = {r["stage"]: r for r in summary["stages"]}
    edges = [(str(a), str(b)) for a, b in start.get("edges") or ()]
    nodes = list(rows)
    for a, b in edges:
        nodes += [n for n in (a, b) if n not in nodes]
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        preds[b].append(a)
    depth: dict[str, int] = {}
    for n in TopologicalSorter(preds).static_order():
        depth[n] = 1 + max((depth[p] for p in preds[n]), default=-1)
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(depth[n], []).append(n)
    pos: dict[str, tuple[float, float]] = {}
    for col in sorted(columns):
        # Order a column by where its inputs sit, so edges cross less.
        members = sorted(columns[col], key=lambda n: sum(pos[p][1] for p in preds[n]
                                                         if p in pos) / max(1, len(preds[n])))
        for i, n in enumerate(members):
            pos[n] = (10 + col * (NODE_W + COL_GAP), 10 + i * (NODE_H + ROW_GAP))
    width = 20 + (max(columns, default=0) + 1) * (NODE_W + COL_GAP)
    height = 20 + max((len(c) for c in columns.values()), default=1) * (NODE_H + ROW_GAP)
    crit = set(zip(summary["critical_path"], summary["critical_path"][1:], strict=False))
    out = [f"<svg id='graph' xmlns='http://www.w3.org/2000/svg' width='{width}' "
           f"height='{height}' viewBox='0 0 {width} {height}'><defs><marker id='arrow' "
           f"viewBox='0 0 10 10' refX='10' refY='5' markerWidth='8' markerHeight='8' "
           f"markerUnits='userSpaceOnUse' orient='auto'><path d='M0,0L10,5L0,10z' "
           f"fill='#888'/></marker></defs>"]
    for a, b in edges:
        (x1, y1), (x2, y2) = pos[a], pos[b]
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
        mid = (x1 + x2) / 2
        weight = "2.5" if (a, b) in crit else "1.2"
        out.append(f"<path d='M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} "
                   f"{x2:.1f},{y2:.1f}' fill='none' stroke='#888' stroke-width='{weight}' "
                   f"marker-end='url(#arrow)'/>")
    for n in nodes:
        x, y = pos[n]
        row = rows.get(n, {"status": "pending"})
        status = str(row["status"])
        label = n if len(n) <= 20 else n[:19] + "…"
        hover = f"{n}: {status}" + (f" ({row['reason']})" if row.get("reason") else "")
        if "wall_s" in row:
            hover += f"\nwall {row['wall_s']:.3f} s · cpu {row['cpu_s']:.3f} s"
        out.append(
            f"<g data-node='{escape(n)}' data-status='{escape(status)}'><title>"
            f"{escape(hover)}</title><rect x='{x}' y='{y}' width='{NODE_W}' height='{NODE_H}' "
            f"rx='6' fill='{STATUS_COLOUR.get(status, '#fff')}' stroke='#666'/>"
            f"<text x='{x + NODE_W / 2}' y='{y + NODE_H / 2 + 4}' text-anchor='middle'>"
            f"{escape(label)}</text></g>"
        )
    out.append("</svg>")
    return "".join(out)


def _table(summary: dict[str, Any]) -> str:
    crit = set(summary["critical_path"])
    head = ("<table id='stages'><tr><th class='l'>stage</th><th class='l'>status</th>"
            "<th>wall s</th><th>cpu s</th><th>peak</th><th>in</th><th>out</th>"
            "<th class='l'>transport</th><th>attempts</th><th>batches</th></tr>")
    body = []
    for r in summary["stages"]:
        colour = STATUS_COLOUR.get(r["status"], "#fff")
        body.append(
            f"<tr{' class=crit' if r['stage'] in crit else ''}>"
            f"<td class='l'>{escape(r['stage'])}</td><td class='l'><span class='st' "
            f"style='background:{colour}'>{escape(r['status'])}</span></td>"
            f"<td>{r['wall_s']:.3f}</td><td>{r['cpu_s']:.3f}</td>"
            f"<td>{format_bytes(r['max_rss_bytes'])}</td><td>{format_bytes(r['input_bytes'])}"
            f"</td><td>{format_bytes(r['output_bytes'])}</td>"
            f"<td class='l'>{escape(str(r['transport'] or '-'))}</td><td>{r['attempts']}</td>"
            f"<td>{r['batches'] or ''}</td></tr>"
        )
    note = "<p class='meta'>Bold rows are on the critical path.</p>" if crit else ""
    return head + "".join(body) + "</table>" + note


def _failures(events: list[dict[str, Any]]) -> str:
    failed = [e for e in events if e.get("event") == "task_failed"]
    if not failed:
        return ""
    out = ["<h2>Failures</h2>"]
    for e in failed:
        name = str(e.get("stage"))
        if e.get("batch") is not None:
            name += f"[{e['batch']}]"
        retried = " (retried)" if e.get("level") == "warning" else ""
        out.append(f"<details><summary><b>{escape(name)}</b> attempt {e.get('attempt')}"
                   f"{retried}: {escape(str(e.get('error_type')))}: "
                   f"{escape(str(e.get('error')))}</summary>"
                   f"<pre>{escape(str(e.get('traceback') or ''))}</pre></details>")
    return "".join(out)
