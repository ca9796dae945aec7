"""Calculate before committing: predicted wall time, cost and coordination overhead of a graph.

The blueprint's question, answered before anything is spent: does the time parallelism saves
outweigh the planner and synthesis calls it takes? Node durations and token counts come from
earlier runs of the same graph in the store when there are any, otherwise from the agent's
token budget and the simulated provider's latency model (time to first token + output tokens /
tokens per second). The wall time is predicted by replaying the scheduler's own policy —
critical-path list scheduling under the concurrency limit — over those durations.

Orchestrator graphs grow at run time: the estimate uses the subtasks of the previous run's
manifest when there is one and says plainly when it cannot see them yet.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from dagagents.engine.cache_warming import CacheWarming, should_wait
from dagagents.engine.checkpoints import PastRuns
from dagagents.engine.scheduler import EagerSorter, critical_path, remaining_path_lengths
from dagagents.model.graph import Graph
from dagagents.model.language import LoopRound, MapSplit
from dagagents.model.nodes import AgentTask, NodeSpec, describe_spec
from dagagents.observe.pricing import cost_usd, default_pricing
from dagagents.providers.base import Usage
from dagagents.providers.simulated import SimulatedProvider
from dagagents.store import Store

# `tags={"role": ...}` values that mark coordination work rather than the task itself.
COORDINATION_ROLES = frozenset(
    {"planner", "orchestrator", "plan", "synthesis", "synthesizer", "synthesis_step", "judge"}
)
STEP_SECONDS = 0.001
CHARS_PER_TOKEN = 4


@dataclass
class NodeEstimate:
    """One node's predicted duration, tokens and cost, and where the figures came from."""

    name: str
    kind: str
    agent: str | None
    model: str | None
    duration: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    # "history" (an earlier run) | "declared" (the node's `estimate=`) | "budget" (token-budget
    # model) | "step"
    source: str = "budget"
    role: str = "work"  # "work" | "planner" | "synthesis"
    depends_on: tuple[str, ...] = ()


@dataclass
class SharedPrefix:
    """Nodes whose first calls share one cacheable prefix (model, tools, system, documents)."""

    model: str
    agent: str
    nodes: list[str]
    tokens: int
    saving: float  # dollars: writes that become reads when the first response leads
    # Followers the critical-path rule sends at once (they write the prefix themselves), and
    # the most seconds waiting adds to the run (engine/cache_warming.py).
    released: list[str] = field(default_factory=list)
    delay: float = 0.0


def shared_prefixes(
    specs: Mapping[str, NodeSpec],
    times: Mapping[str, tuple[float, float]] | None = None,
    remaining: Mapping[str, float] | None = None,
    rule: CacheWarming | None = None,
) -> list[SharedPrefix]:
    """Groups of two or more agent nodes with the same cacheable prefix above the model's
    minimum: unwarmed, parallel ones each write it; warmed, one writes and the rest read.
    Given the predicted schedule (`times`: start, end) and remaining path lengths, the
    critical-path rule decides, as in a run, which followers would not wait."""
    pricing = default_pricing()
    groups: dict[tuple[Any, ...], list[str]] = {}
    meta: dict[tuple[Any, ...], tuple[str, str, int]] = {}
    for name, spec in specs.items():
        if not isinstance(spec, AgentTask):
            continue
        agent = spec.agent
        price = pricing.lookup(agent.model)
        if price is None:
            continue
        tools = [getattr(t, "__name__", repr(t)) for t in agent.tools]
        chars = len(agent.system) + sum(len(d) for d in agent.cache) + 200 * len(tools)
        tokens = chars // CHARS_PER_TOKEN
        if tokens < price.min_cache_tokens:
            continue
        key = (agent.model, agent.system, tuple(tools), agent.cache)
        groups.setdefault(key, []).append(name)
        meta[key] = (agent.model, agent.name, tokens)
    out = []
    for key, names in groups.items():
        if len(names) < 2:
            continue
        model, agent_name, tokens = meta[key]
        price = pricing.lookup(model)
        assert price is not None
        each = tokens * (price.cache_write - price.cache_read) / 1_000_000
        released, delay = _released(names, each, times, remaining, rule or CacheWarming())
        saving = (len(names) - 1 - len(released)) * each
        out.append(SharedPrefix(model, agent_name, sorted(names), tokens, saving, released, delay))
    return out


def _released(
    names: list[str],
    each: float,
    times: Mapping[str, tuple[float, float]] | None,
    remaining: Mapping[str, float] | None,
    rule: CacheWarming,
) -> tuple[list[str], float]:
    """(followers the critical-path rule sends at once, seconds the rest delay the run) for
    one group, on the predicted schedule: the first to start leads, those starting before its
    response is expected to begin follow, each with its slack in the schedule."""
    if times is None or remaining is None:
        return [], 0.0
    wall = max((end for _, end in times.values()), default=0.0)
    order = sorted(names, key=lambda n: times[n][0])
    begins = times[order[0]][0] + rule.first_token
    followers = {}
    for n in order[1:]:
        if times[n][0] < begins:
            wait = begins - times[n][0]
            followers[n] = (wait, max(0.0, wall - (times[n][0] + remaining[n])))
    group = [(slack, each) for _, slack in followers.values()]
    released = sorted(
        n
        for n, (wait, slack) in followers.items()
        if not should_wait(wait, slack, group, rule.usd_per_second)
    )
    delay = max(
        (wait - slack for n, (wait, slack) in followers.items() if n not in released),
        default=0.0,
    )
    return released, max(0.0, delay)


@dataclass
class Estimate:
    """The prediction for one run of a graph under a concurrency limit."""

    graph: str
    concurrency: int
    nodes: dict[str, NodeEstimate]
    edges: list[tuple[str, str]]
    wall: float
    sequential: float
    critical_path: list[str]
    critical_time: float
    history_runs: list[str] = field(default_factory=list)
    # Nodes that expand the graph at run time whose subtasks this estimate cannot see.
    unseen_expansions: list[str] = field(default_factory=list)
    expanded_from: str | None = None  # the run whose manifest supplied the planned subtasks
    cached: list[str] = field(default_factory=list)  # already checkpointed in the store
    # What the estimate assumed where no earlier run shows it (a map's size, a loop's rounds).
    assumptions: list[str] = field(default_factory=list)
    # Agent calls sharing a cacheable prefix, and what cache warming saves on them.
    shared_prefixes: list[SharedPrefix] = field(default_factory=list)

    @property
    def warming_saves(self) -> float:
        return sum(p.saving for p in self.shared_prefixes)

    @property
    def batch_cost(self) -> float:
        """The same calls through the Message Batches API (`--batch`)."""
        pricing = default_pricing()
        total = 0.0
        for n in self.nodes.values():
            price = pricing.lookup(n.model) if n.model else None
            total += n.cost * (price.batch if price is not None else 1.0)
        return total

    @property
    def saved(self) -> float:
        """Seconds parallelism saves against running every node one after another."""
        return max(0.0, self.sequential - self.wall)

    @property
    def speedup(self) -> float:
        return self.sequential / self.wall if self.wall > 0 else 1.0

    @property
    def cost(self) -> float:
        return sum(n.cost for n in self.nodes.values())

    def cost_by_model(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for n in self.nodes.values():
            if n.model:
                out[n.model] = out.get(n.model, 0.0) + n.cost
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def tokens_by_model(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for n in self.nodes.values():
            if n.model:
                i, o = out.get(n.model, (0, 0))
                out[n.model] = (i + n.input_tokens, o + n.output_tokens)
        return out

    @property
    def coordination(self) -> list[NodeEstimate]:
        return [n for n in self.nodes.values() if n.role != "work"]

    @property
    def coordination_time(self) -> float:
        return sum(n.duration for n in self.coordination)

    @property
    def coordination_cost(self) -> float:
        return sum(n.cost for n in self.coordination)

    @property
    def from_history(self) -> int:
        return sum(1 for n in self.nodes.values() if n.source == "history")

    def recommendation(self) -> str:
        """A plain answer to "does the parallelism savings outweigh the coordination overhead?"."""
        coord = self.coordination
        if self.unseen_expansions:
            return (
                f"Not enough to go on: {', '.join(self.unseen_expansions)} plans its subtasks at "
                "run time and no earlier run shows them; run it once (the simulated provider "
                "costs nothing) and estimate again."
            )
        if self.sequential <= 0 or self.saved < 0.05 * self.sequential:
            return (
                "Parallelism saves almost nothing here: the nodes mostly depend on each other, "
                "so this is a pipeline. Keep it if you need its checkpoints; otherwise one agent "
                "with good tools is simpler and as fast."
            )
        if coord and self.coordination_time >= self.saved:
            return (
                f"Coordination costs more than parallelism saves: {len(coord)} planner/synthesis "
                f"call(s) take {self.coordination_time:.2f}s and ${self.coordination_cost:.4f}, "
                f"while running in parallel saves only {self.saved:.2f}s. Consider one agent "
                "with tools, or fewer, larger subtasks."
            )
        overhead = (
            f" against {self.coordination_time:.2f}s and ${self.coordination_cost:.4f} of "
            f"coordination ({len(coord)} planner/synthesis call(s))"
            if coord
            else " with no planner or synthesis overhead"
        )
        return (
            f"Parallelism pays: it saves {self.saved:.2f}s ({self.speedup:.1f}x faster than "
            f"sequential){overhead}."
        )


# ------------------------------------------------------------------ history
@dataclass
class History(PastRuns):
    """What earlier runs of one graph tell us: per node duration and usage, newest first
    (read as the runtime reads them, see `PastRuns`), and the newest expansion."""

    expanded: dict[str, Any] | None = None  # newest manifest whose graph grew at run time
    # (expander, added) from that run's trace: added nodes wait for the node that planned them.
    expansions: list[tuple[str, str]] = field(default_factory=list)


def read_history(
    store: Store | None, graph_name: str, static: set[str], lookback: int = 20
) -> History:
    """Per node the newest duration and usage among recent runs of the graph (see `PastRuns`).

    A cached node carries the duration its checkpoint recorded (in a manifest from before that
    was kept, older runs fill it in); the newest manifest with nodes the static graph lacks
    supplies an orchestrator's planned subtasks.
    """
    history = History()
    if store is None:
        return history
    for manifest in store.recent_manifests(graph_name, lookback=lookback, finished=True):
        run_id = manifest["run_id"]
        history.add(manifest)
        if history.expanded is None and set(manifest.get("nodes", {})) - static:
            history.expanded = manifest
            history.expansions = [
                (e["node"], added)
                for e in store.read_trace(run_id)
                if e.get("event") == "expand"
                for added in e.get("added", [])
            ]
    return history


# ------------------------------------------------------------------ budget model
def budget_estimate(
    spec: NodeSpec, simulator: SimulatedProvider, dep_output_tokens: int
) -> tuple[float, int, int]:
    """(seconds, input tokens, output tokens) from the agent's token budget alone."""
    if not isinstance(spec, AgentTask):
        return STEP_SECONDS, 0, 0
    cap = min(spec.agent.max_tokens, simulator.max_output_tokens)
    low = min(simulator.min_output_tokens, cap)
    out = (low + cap) // 2
    seconds = simulator.ttft + out / simulator.tokens_per_second
    text = len(spec.prompt) + len(spec.agent.system)
    return seconds, text // CHARS_PER_TOKEN + dep_output_tokens, out


def _role(spec: NodeSpec | None, described: Mapping[str, Any]) -> str:
    """ "planner" or "synthesis" only for nodes that say so: an Orchestrator's planner and
    synthesizer (and plan files' synthesis) carry `tags={"role": ...}`, as may a user's own
    node. A fan-in node or a node that expands the graph is ordinary work unless tagged: an
    aggregation step is part of the task, not coordination overhead."""
    tags = (spec.tags if spec is not None else described.get("tags")) or {}
    role = str(tags.get("role", "")).lower() if isinstance(tags, Mapping) else ""
    if role in COORDINATION_ROLES:
        return "synthesis" if role.startswith("synth") or role == "judge" else "planner"
    return "work"


ASSUMED_MAP_ITEMS = 3


def _assume_structure(
    specs: dict[str, NodeSpec],
    described: dict[str, dict[str, Any]],
    dag: nx.DiGraph,
    expanding: list[str],
    assumptions: list[str],
) -> list[str]:
    """With no earlier run to show them: a map gets ASSUMED_MAP_ITEMS items, a loop one
    round; each assumption is stated. Returns the expanding nodes still unseen."""
    still: list[str] = []
    for name in expanding:
        spec = specs[name]
        if isinstance(spec, MapSplit):
            for i in range(ASSUMED_MAP_ITEMS):
                item = spec.proto.model_copy(update={"name": f"{spec.map_name}[{i}]"})
                specs[item.name] = item
                described[item.name] = describe_spec(item)
                dag.add_edges_from((d, item.name) for d in (name, *item.depends_on))
                dag.add_edge(item.name, spec.map_name)
            assumptions.append(
                f"map '{spec.map_name}' assumed to have {ASSUMED_MAP_ITEMS} items "
                "(no earlier run shows its size)"
            )
        elif isinstance(spec, LoopRound):
            assumptions.append(
                f"loop '{spec.loop.name}' assumed to stop after round {spec.round} of at most "
                f"{spec.loop.max_rounds} (no earlier run shows how many it takes)"
            )
        else:
            still.append(name)
    return still


# ------------------------------------------------------------------ scheduling
def simulate_schedule(
    dag: nx.DiGraph, duration: Mapping[str, float], concurrency: int
) -> dict[str, tuple[float, float]]:
    """(start, end) per node when the real `EagerSorter` drives `concurrency` slots with zero
    overhead: the prediction follows exactly the policy (and tie-breaks) the scheduler uses."""
    sorter = EagerSorter(dag, remaining_path_lengths(dag, lambda n: duration.get(n, 0.0)))
    running: list[tuple[float, int, str]] = []  # (end, start order, node)
    times: dict[str, tuple[float, float]] = {}
    now = 0.0
    while sorter.is_active():
        while sorter.has_ready() and len(running) < concurrency:
            node = sorter.pop_ready()
            times[node] = (now, now + duration.get(node, 0.0))
            heapq.heappush(running, (times[node][1], len(times), node))
        now, _, node = heapq.heappop(running)
        sorter.done(node)
        while running and running[0][0] <= now:
            sorter.done(heapq.heappop(running)[2])
    return times


# ------------------------------------------------------------------ the estimate
def estimate(
    graph: Graph,
    *,
    concurrency: int = 8,
    store: Store | None = None,
    simulator: SimulatedProvider | None = None,
    warming: CacheWarming | None = None,
) -> Estimate:
    """Predict one fresh run of `graph` with `concurrency` slots (nothing is called);
    `warming` is the cache-warming rule the saving assumes (the default one)."""

    sim = simulator or (
        graph.simulator if isinstance(graph.simulator, SimulatedProvider) else SimulatedProvider()
    )
    specs: dict[str, NodeSpec] = dict(graph.specs)
    history = read_history(store, graph.name, set(specs))
    described: dict[str, dict[str, Any]] = {n: describe_spec(s) for n, s in specs.items()}
    dag = graph.nx.copy()
    expanding = [n for n, s in specs.items() if s.expand is not None]
    expanded_from = None
    if history.expanded is not None and expanding:  # only graphs that grow take planned nodes
        manifest = history.expanded
        expanded_from = str(manifest.get("run_id"))
        for name, desc in manifest.get("specs", {}).items():
            if name not in described:
                described[name] = dict(desc)
                dag.add_node(name)
        for node in manifest.get("nodes", {}):
            dag.add_node(node)
        dag.add_edges_from(
            (a, b)
            for a, b in [*manifest.get("edges", []), *history.expansions]
            if a in described and b in described
        )
    assumptions: list[str] = []
    if expanded_from is None:
        expanding = _assume_structure(specs, described, dag, expanding, assumptions)
    unseen = expanding if expanding and expanded_from is None else []

    order = list(nx.topological_sort(dag))
    nodes: dict[str, NodeEstimate] = {}
    for name in order:
        desc = described.get(name, {"kind": "node"})
        spec = specs.get(name)
        preds = list(dag.predecessors(name))
        dep_out = sum(nodes[p].output_tokens for p in preds if p in nodes)
        if spec is not None:
            seconds, tin, tout = budget_estimate(spec, sim, dep_out)
        elif desc.get("kind") == "agent":
            cap = min(int(desc.get("max_tokens") or 1024), sim.max_output_tokens)
            tout = (min(sim.min_output_tokens, cap) + cap) // 2
            seconds = sim.ttft + tout / sim.tokens_per_second
            tin = len(str(desc.get("prompt", ""))) // CHARS_PER_TOKEN + dep_out
        else:
            seconds, tin, tout = STEP_SECONDS, 0, 0
        source = "budget" if desc.get("kind") == "agent" else "step"
        if spec is not None and spec.estimate is not None:  # as the runtime's priorities
            seconds, source = spec.estimate, "declared"
        if name in history.durations:
            seconds, source = history.durations[name], "history"
            used = history.usage.get(name)
            if used:
                tin = (
                    int(used.get("input_tokens", 0))
                    + int(used.get("cache_read_input_tokens", 0))
                    + int(used.get("cache_creation_input_tokens", 0))
                )
                tout = int(used.get("output_tokens", 0))
        model = desc.get("model")
        agent = desc.get("agent")
        cost = 0.0
        if model and desc.get("kind") == "agent":
            usage = Usage(input_tokens=tin, output_tokens=tout)
            if source == "history" and history.usage.get(name):
                usage = Usage.model_validate(history.usage[name])
            cost = cost_usd(str(model), usage)
        nodes[name] = NodeEstimate(
            name=name,
            kind=str(desc.get("kind", "node")),
            agent=agent,
            model=model,
            duration=seconds,
            input_tokens=tin,
            output_tokens=tout,
            cost=cost,
            source=source,
            role=_role(spec, desc),
            depends_on=tuple(preds),
        )

    durations = {n: e.duration for n, e in nodes.items()}
    times = simulate_schedule(dag, durations, concurrency)
    remaining = remaining_path_lengths(dag, lambda n: durations.get(n, 0.0))
    wall = max((end for _, end in times.values()), default=0.0)

    path, path_time = critical_path(dag, durations)
    cached: list[str] = []
    if store is not None and not unseen:
        from dagagents.observe.resume import plan_resume

        cached = sorted(n for n, v in plan_resume(graph, store).items() if v == "cached")
    return Estimate(
        graph=graph.name,
        concurrency=concurrency,
        nodes=nodes,
        edges=list(dag.edges),
        wall=wall,
        sequential=sum(durations.values()),
        critical_path=path,
        critical_time=path_time,
        history_runs=history.runs,
        unseen_expansions=unseen,
        expanded_from=expanded_from,
        cached=cached,
        assumptions=assumptions,
        shared_prefixes=shared_prefixes(specs, times, remaining, warming),
    )
