"""Draw a validated graph as text, Mermaid or Graphviz dot."""

from __future__ import annotations

from .build import Graph


def render_graph(graph: Graph, fmt: str) -> str:
    """The graph in ``fmt`` (``text``, ``mermaid`` or ``dot``), ending with a newline."""
    edges = [(u, v) for v in graph.order for u in graph.upstream(v)]
    if fmt == "mermaid":
        ids = {name: f"s{i}" for i, name in enumerate(graph.order)}
        lines = ["flowchart TD"]
        lines += [f'    {ids[n]}["{_label(graph, n)}"]' for n in graph.order]
        lines += [f"    {ids[u]} --> {ids[v]}" for u, v in edges]
        return "\n".join(lines) + "\n"
    if fmt == "dot":
        lines = ["digraph pipeline {", "    rankdir=LR;"]
        lines += [f'    "{n}" [label="{_label(graph, n)}"];' for n in graph.order]
        lines += [f'    "{u}" -> "{v}";' for u, v in edges]
        return "\n".join(lines + ["}"]) + "\n"
    lines = []
    for name in graph.order:
        upstream = graph.upstream(name)
        arrow = f" <- {', '.join(upstream)}" if upstream else ""
        lines.append(f"{_label(graph, name)}{arrow}")
    return "\n".join(lines) + "\n"


def _label(graph: Graph, name: str) -> str:
    mapped = graph.nodes[name].map_input
    return f"{name} (map {mapped})" if mapped else name
