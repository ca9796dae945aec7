"""Runtime growth: a finished node's `expand` hook adds nodes and edges to the running graph.

`apply_expansion(run, source, expansion)` checks an expansion against the graph as it stands
and either refuses it in one sentence (GraphError; nothing changes) or hands the accepted
growth to `run.grow`, which brings the run's graph, records, sorter and trace along in one go.

An edge into a node that already exists delivers the source's output to it: a Step receives it
as a keyword argument (a parameter of that name, or `**kwargs`), an agent task as context after
its prompt. An edge into a node that has started, or into a Step that has nowhere to put the
output, is refused: a node never runs without an input it depends on.

A node whose reply streams may grow the run before it finishes: `ExpansionStream` feeds a
proposer each delta (a map's `MapStream`, which reads the reply incrementally) or the reply so
far (a plan's `stream_expand`) and grows the run by the new nodes it proposes (nodes only: edges into
existing nodes wait for the final answer). `streams_for` lists them for one agent node: its own
`AgentTask.stream_expand` (the Orchestrator's streamed plan: the node expands itself) and each
map over a list field of its structured output (the map's splitter expands, once the agent has
finished: `model/language.streamed_map`). Each stream names the node whose expansion it
anticipates (`source`) and how that expansion follows from the writer's output (`final`). When
the writer finishes, `stream_survivors` decides which streamed nodes that final expansion keeps;
the run retires the rest and the source's expansion adds only what is new (see
`_Run._end_stream`).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

import networkx as nx

from dagagents.errors import GraphError
from dagagents.model.graph import Graph, check_acyclic, validate_spec
from dagagents.model.language import MapSplit, streamed_map
from dagagents.model.nodes import (
    AgentTask,
    Expansion,
    NodeSpec,
    Step,
    step_params,
    takes_var_keyword,
)


@dataclass
class Growth:
    """An accepted expansion: new nodes, every new edge, and the existing (or new) nodes whose
    inputs grew (their specs, updated to receive the new inputs)."""

    source: str
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    updated: dict[str, NodeSpec] = field(default_factory=dict)
    # The grown edge set, already checked acyclic; None when the growth only adds nodes
    # below existing ones (no edge into an existing node, each new node's dependencies
    # existing or new before it): no cycle can form, and `run.grow` adds them in place
    # rather than to a copy of the whole graph (a streamed map's item, one at a time).
    graph: nx.DiGraph | None = None
    streamed: bool = False  # proposed while the source's reply was still streaming


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
    incoming: dict[str, dict[str, None]] = {}  # receiver -> its new sources, in edge order
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
        incoming.setdefault(dst, {})[src] = None
    for dst, srcs in incoming.items():  # one update per receiver, however many edges
        target = new.get(dst) or specs[dst]
        received = _receiving(where, target, list(srcs))
        if received is not target:
            growth.updated[dst] = received
    for name, spec in growth.updated.items():
        if name in new:
            new[name] = spec
    # new nodes over the graph's, never a copy of the graph's (one item at a time would
    # copy it once per item)
    combined: Mapping[str, NodeSpec] = ChainMap(new, specs)
    for spec in new.values():
        validate_spec(where, spec, combined)
    below = not expansion.edges
    earlier: set[str] = set()
    for spec in new.values():
        growth.edges.extend((dep, spec.name) for dep in spec.depends_on)
        below = below and all(dep in earlier or dep not in new for dep in spec.depends_on)
        earlier.add(spec.name)
    if below:
        return growth  # only sinks below the graph as it stands: acyclic by construction
    trial = graph.nx.copy()
    trial.add_nodes_from(new)
    growth.edges.extend((src, dst) for src, dst in expansion.edges if dst not in new)
    trial.add_edges_from(growth.edges)
    try:
        check_acyclic(where, trial)
    except GraphError as exc:
        raise GraphError(str(exc).rstrip(".") + " would be created; expansion rejected") from None
    growth.graph = trial
    return growth


def _receiving(where: str, target: NodeSpec, srcs: list[str]) -> NodeSpec:
    """`target` updated to receive the outputs of `srcs` (unchanged if it already does)."""
    had = set(target.depends_on)
    adding = [src for src in srcs if src not in had]
    if not adding:
        return target
    update: dict[str, Any] = {"depends_on": (*target.depends_on, *adding)}
    if isinstance(target, Step):
        named = {p.name for p in step_params(target.fn)}
        for src in adding:
            if src not in named and not takes_var_keyword(target.fn):
                raise GraphError(
                    f"{where} adds an edge from '{src}' into step '{target.name}', which has "
                    f"no parameter '{src}' and no **kwargs to receive its output; expansion "
                    "rejected"
                )
        update["params"] = (*target.params, *adding)
    return target.model_copy(update=update)


# For a proposer given the reply so far: only a delta holding one of these can complete an
# item of objects or strings (the next item begins, a list closes, the whole reply closes).
_STRUCTURE = frozenset('{}[]"')


@runtime_checkable
class DeltaReader(Protocol):
    """A proposer that reads the reply incrementally (`model/language.MapStream`): fed each
    delta, never the reply so far, so what one delta costs does not grow with the reply."""

    def feed(self, delta: str) -> Expansion | None: ...

    def restart(self) -> None: ...


class ExpansionStream:
    """Grows a run from a node's reply while it streams: `feed` each text delta, `restart`
    when a new reply begins (a retry, a repair). `propose(text)` returns the nodes that may
    start already; the new ones are checked like any expansion of `source` and grown at once,
    then `started()` lets the run start what became ready. A proposed node whose name exists
    already waits for the final answer, as does a proposal the checks refuse: the final
    expansion is checked as a whole.

    `source` is the node whose expansion the streamed nodes anticipate: the writer itself (a
    planner) or a node that expands later from the writer's output (a map's splitter).
    `final(output)` is that expansion, given the writer's finished output; `label` names it
    in the reason a retired node is skipped ("dropped from the final plan")."""

    def __init__(
        self,
        run: RunState,
        source: str,
        propose: Callable[[str], Expansion | None] | DeltaReader,
        started: Callable[[], object],
        *,
        final: Callable[[Any], Expansion | None] | None = None,
        label: str = "plan",
    ) -> None:
        self.run = run
        self.source = source
        self.propose = propose
        self.reader = propose if isinstance(propose, DeltaReader) else None
        self.started = started
        self.final = final
        self.label = label
        self.parts: list[str] = []
        # Every node this stream added, in the order added (dependencies first).
        self.added: dict[str, NodeSpec] = {}

    def restart(self) -> None:
        self.parts.clear()
        if self.reader is not None:
            self.reader.restart()

    def feed(self, delta: str) -> None:
        try:
            if self.reader is not None:
                expansion = self.reader.feed(delta)  # every delta: a number item too
            else:
                self.parts.append(delta)
                if not _STRUCTURE.intersection(delta):
                    return  # inside a string or a number: no object can have completed
                expansion = cast(Callable[[str], Any], self.propose)("".join(self.parts))
        except Exception:  # streaming only starts work early: the final answer decides
            return
        if not isinstance(expansion, Expansion) or not expansion.nodes:
            return
        specs = self.run.graph.specs
        new = [spec for spec in expansion.nodes if spec.name not in specs]
        if not new:
            return
        try:
            growth = check_expansion(
                self.run.graph, self.run.has_started, self.source, Expansion(nodes=new)
            )
        except GraphError:
            return  # not on its own: the final answer is checked as a whole
        growth.streamed = True
        self.run.grow(growth)
        self.added.update(growth.nodes)
        self.started()


def streams_for(
    run: RunState, spec: AgentTask, started: Callable[[], object]
) -> list[ExpansionStream]:
    """The streams that may grow the run while `spec`'s reply is written: its own
    `stream_expand` and each map whose `over` is a list field of its structured output (and
    whose splitter has not started: a resumed splitter expands from its checkpoint)."""
    streams: list[ExpansionStream] = []
    if spec.stream_expand is not None:
        streams.append(
            ExpansionStream(run, spec.name, spec.stream_expand, started, final=spec.expand)
        )
    if spec.agent.output is None:
        return streams
    graph = run.graph
    for name in graph.nx.successors(spec.name):
        split = graph.specs.get(name)
        if (
            isinstance(split, MapSplit)
            and split.depends_on[:1] == (spec.name,)
            and not run.has_started(name)
        ):
            mapped = streamed_map(split, spec)
            if mapped is not None:
                streams.append(
                    ExpansionStream(run, name, mapped, started, final=mapped.final, label="list")
                )
    return streams


def stream_survivors(
    streamed: Mapping[str, NodeSpec], final: Mapping[str, NodeSpec] | None
) -> tuple[set[str], list[str]]:
    """Which streamed nodes the final expansion keeps: those it contains unchanged whose
    streamed dependencies are kept too (a node fed by a changed one must run again). Returns
    (kept, a set: callers look names up in it; retired, in stream order). `final=None` (the
    node failed) keeps none."""
    kept: set[str] = set()
    retired: list[str] = []
    for name, spec in streamed.items():
        same = final is not None and final.get(name) == spec
        if same and all(dep in kept for dep in spec.depends_on if dep in streamed):
            kept.add(name)
        else:
            retired.append(name)
    return kept, retired
