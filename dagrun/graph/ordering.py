"""The order stages run in, and the cycles that forbid one (pure functions over edge lists).

Kahn's algorithm with a heap keeps ties in the pipeline's declaration order;
networkx is imported only to name the stages of a rejected cycle.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping


def topological_order(
    successors: Mapping[str, list[str]], position: Mapping[str, int],
) -> list[str]:
    """Kahn's algorithm; among ready stages the one declared first goes first.

    Stages on a cycle never become ready: they are missing from the result.
    """
    waiting = dict.fromkeys(successors, 0)
    for users in successors.values():
        for user in users:
            waiting[user] += 1
    ready = [(position[n], n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for user in successors[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, (position[user], user))
    return order


def cycle_problems(successors: Mapping[str, list[str]], stuck: set[str]) -> list[str]:
    """One problem per cycle among ``stuck`` (the stages no topological order reaches).

    Only a rejected pipeline pays for networkx's import here.
    """
    import networkx as nx

    dag = nx.DiGraph()
    dag.add_edges_from((u, v) for u in stuck for v in successors[u] if v in stuck)
    problems = []
    for component in nx.strongly_connected_components(dag):
        members = sorted(component)
        if len(members) == 1 and not dag.has_edge(members[0], members[0]):
            continue
        sub = dag.subgraph(component)
        edges = nx.find_cycle(sub, source=members[0])
        path = [edges[0][0]] + [v for _, v in edges]
        problems.append(
            f"cycle: {' -> '.join(path)}; a stage cannot depend on its own result, "
            f"remove one of these inputs"
        )
    return problems
