"""Run in a fresh interpreter by the cache tests: print keys, or fill a cache as a run would.

    python cache_tool.py keys PIPELINE [NAME=VALUE ...]       JSON {stage: [key, components]}
    python cache_tool.py populate PIPELINE CACHE_DIR [NAME=VALUE ...]
        computes every stage in order (calling the functions directly), writes each
        cacheable result and records its key, as the runner does after a stage succeeds
"""

from __future__ import annotations

import json
import sys

from dagrun.cache import Cache, pipeline_key, plan_keys
from dagrun.graph.build import build_graph
from dagrun.pipeline.loader import load


def main(argv: list[str]) -> None:
    command, pipeline, *rest = argv
    cache_dir = rest.pop(0) if command == "populate" else None
    params = dict(item.split("=", 1) for item in rest)
    graph = build_graph(load(pipeline), params)
    keys = plan_keys(graph)
    if command == "keys":
        print(json.dumps({name: [rec.key, rec.components] for name, rec in keys.items()}))
        return
    cache = Cache(cache_dir)
    values: dict[str, object] = {}
    for name in graph.order:
        node = graph.nodes[name]
        args = {p: values[u] for p, u in node.inputs.items()}
        values[name] = node.stage.func(**args, **node.params)
        if node.stage.options.cache:
            cache.write(keys[name].key, values[name], stage=name)
        cache.record(pipeline_key(graph), name, keys[name])


if __name__ == "__main__":
    main(sys.argv[1:])
