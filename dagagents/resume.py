"""What a rerun would do, without running anything: which checkpoints already answer which nodes.

A node whose inputs all come from checkpoints has a known key, so we can tell "cached" or
"compute". Below a node that must be computed the key depends on its new output, which early
cutoff may or may not match, so those nodes are "maybe".
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from dagagents.graph import Graph
from dagagents.keys import checkpoint_key
from dagagents.store import CorruptObject, Store


def plan_resume(graph: Graph, store: Store) -> dict[str, str]:
    """Node -> 'cached' | 'compute' | 'maybe' for a rerun of `graph` against `store`."""
    memo: dict[int, Any] = {}
    digests: dict[str, str] = {}
    verdict: dict[str, str] = {}
    for name in nx.topological_sort(graph.nx):
        spec = graph[name]
        if any(verdict.get(d) != "cached" for d in spec.depends_on):
            verdict[name] = "maybe"
            continue
        key = checkpoint_key(spec, digests, memo)
        try:
            stored = store.get(key)
        except CorruptObject:
            stored = None
        if stored is None:
            verdict[name] = "compute"
        else:
            verdict[name] = "cached"
            digests[name] = stored.digest
    return verdict
