"""Runtime growth: a finished node's `expand` hook adds nodes and edges to the running graph.

`apply_expansion(run, source, expansion)` checks an expansion against the graph as it stands
and either refuses it in one sentence (GraphError; nothing changes) or hands the accepted
growth to `run.grow`, which brings the run's graph, records, sorter and trace along in one go.

An edge into a node that already exists delivers the source's output to it: a Step receives it
as a keyword argument (a parameter of that name, or `**kwargs`), an agent task as context after
its prompt. An edge into a node that has started, or into a Step that has nowhere to put the
output, is refused: a node never runs without an input it depends on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import networkx as nx

from dagagents.errors import GraphError
from dagagents.model.graph import Graph, check_acyclic, validate_spec
from dagagents.model.nodes import Expansion, NodeSpec, Step, step_params, takes_var_keyword


@dataclass
class Growth:
    """An accepted expansion: new nodes, every new edge, and the existing (or new) nodes whose
    inputs grew (their specs, updated to receive the new inputs)."""

    source: str
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    updated: dict[str, NodeSpec] = field(default_factory=dict)
    graph: nx.DiGraph | None = None  # the grown edge set, already checked acyclic


class RunState(Protocol):
    """What expansion may see of a run, and the one way it may change it."""

    @property
    def graph(self) -> Graph: ...

    def has_started(self, name: str) -> bool:
        """True once a node was handed out (running, finished, failed or skipped)."""
        ...

    def grow(self, growth: Growth) -> None:
        """Apply an accepted growth to the run's graph, records, sorter and trace."""
        ...


def apply_expansion(run: RunState, source: str, expansion: Any) -> None:
    """Check `source`'s expansion and grow the run by it, or raise GraphError (run unchanged)."""
    if expansion is None:
        return
    if not isinstance(expansion, Expansion):
        raise GraphError(
            f"expand of node '{source}' must return an Expansion, not {type(expansion).__name__}"
        )
    run.grow(check_expansion(run.graph, run.has_started, source, expansion))


def check_expansion(
    graph: Graph, has_started: Callable[[str], bool], source: str, expansion: Expansion
) -> Growth:
    """The growth `expansion` asks for, checked: names, edges, receivers, acyclicity."""
    where = f"expansion from node '{source}'"
    specs = graph.specs
    growth = Growth(source, nodes={spec.name: spec for spec in expansion.nodes})
    new = growth.nodes
    for name in new:
        if name in specs:
            raise GraphError(f"{where} adds node '{name}', which already exists")
    for src, dst in expansion.edges:
        if src not in new and src not in specs:
            raise GraphError(f"{where} adds an edge from unknown node '{src}'")
        if dst in specs and has_started(dst):
            raise GraphError(f"{where} adds an edge into '{dst}', which has already started")
        if dst not in new and dst not in specs:
            raise GraphError(f"{where} adds an edge to unknown node '{dst}'")
        target = growth.updated.get(dst) or new.get(dst) or specs[dst]
        received = _receiving(where, target, src)
        if received is not target:
            growth.updated[dst] = received
    for name, spec in growth.updated.items():
        if name in new:
            new[name] = spec
    combined: Mapping[str, NodeSpec] = {**specs, **new}
    for spec in new.values():
        validate_spec(where, spec, combined)
    trial = graph.nx.copy()
    for spec in new.values():
        trial.add_node(spec.name)
        growth.edges.extend((dep, spec.name) for dep in spec.depends_on)
    growth.edges.extend((src, dst) for src, dst in expansion.edges if dst not in new)
    trial.add_edges_from(growth.edges)
    try:
        check_acyclic(where, trial)
    except GraphError as exc:
        raise GraphError(str(exc).rstrip(".") + " would be created; expansion rejected") from None
    growth.graph = trial
    return growth


def _receiving(where: str, target: NodeSpec, src: str) -> NodeSpec:
    """`target` updated to receive `src`'s output (unchanged if it already does)."""
    if src in target.depends_on:
        return target
    update: dict[str, Any] = {"depends_on": (*target.depends_on, src)}
    if isinstance(target, Step):
        named = {p.name for p in step_params(target.fn)}
        if src not in named and not takes_var_keyword(target.fn):
            raise GraphError(
                f"{where} adds an edge from '{src}' into step '{target.name}', which has no "
                f"parameter '{src}' and no **kwargs to receive its output; expansion rejected"
            )
        update["params"] = (*target.params, src)
    return target.model_copy(update=update)
