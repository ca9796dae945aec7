"""What a rerun would do, without running anything: which checkpoints already answer which nodes.

A node whose inputs all come from checkpoints has a known key, so we can tell "cached" or
"compute". Below a node that must be computed the key depends on its new output, which early
cutoff may or may not match, so those nodes are "maybe".

Two sources: the graph itself (`plan_resume`, exact for its static nodes), or only a past run's
manifest (`plan_from_run`, when no graph file is at hand: assumes the graph is unchanged).
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from dagagents.engine.checkpoints import checkpoint_key
from dagagents.model.graph import Graph
from dagagents.observe.runs import fold_events
from dagagents.store import CorruptObject, Store, run_state

CACHED, COMPUTE, MAYBE = "cached", "compute", "maybe"


def plan_resume(graph: Graph, store: Store, rerun: set[str] | None = None) -> dict[str, str]:
    """Node -> 'cached' | 'compute' | 'maybe' for a rerun of `graph` against `store`."""
    memo: dict[int, Any] = {}
    digests: dict[str, str] = {}
    verdict: dict[str, str] = {}
    rerun = rerun or set()
    for name in nx.topological_sort(graph.nx):
        spec = graph[name]
        if any(verdict.get(d) != CACHED for d in spec.depends_on):
            verdict[name] = COMPUTE if name in rerun else MAYBE
            continue
        stored = None if name in rerun else _intact(store, checkpoint_key(spec, digests, memo))
        if stored is None:
            verdict[name] = COMPUTE
        else:
            verdict[name] = CACHED
            digests[name] = stored
    return verdict


def _intact(store: Store, key: str | None) -> str | None:
    """The digest of the object under `key` if it exists and verifies."""
    if not key:
        return None
    try:
        stored = store.get(key)
    except CorruptObject:
        return None
    return stored.digest if stored is not None else None


def run_nodes(store: Store, run_id: str, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each node's record from the manifest; for a run that did not finish (killed, or still
    going) the manifest is from its start, so the trace says what happened since."""
    nodes = {name: dict(node) for name, node in manifest.get("nodes", {}).items()}
    state = run_state(manifest)
    if state not in ("running", "killed"):
        return nodes
    for name, record in fold_events(store.read_trace(run_id)).items():
        folded = record.to_json()
        folded.pop("depends_on")  # the trace does not know edges; keep the manifest's
        nodes.setdefault(name, {"depends_on": []}).update(folded)
    if state == "killed":
        for node in nodes.values():
            if node.get("status") == "running":
                node.update(status="killed", error="in flight when the run was killed")
    return nodes


def plan_from_run(store: Store, nodes: dict[str, dict[str, Any]]) -> dict[str, str]:
    """What rerunning the same graph would do, judged from one run's node records: a node
    is cached if its recorded output is still intact in the store and so are its inputs."""
    g = nx.DiGraph()
    for name, node in nodes.items():
        g.add_node(name)
        for dep in node.get("depends_on") or ():
            g.add_edge(dep, name)
    verdict: dict[str, str] = {}
    for name in nx.topological_sort(g):
        node = nodes.get(name, {})
        intact = node.get("status") in ("done", "cached") and _intact(store, node.get("key"))
        deps_cached = all(verdict.get(d) == CACHED for d in g.predecessors(name))
        if not intact:
            verdict[name] = COMPUTE
        else:  # when its inputs are recomputed, early cutoff decides
            verdict[name] = CACHED if deps_cached else MAYBE
    return verdict
