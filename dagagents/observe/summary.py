"""Where a run's time and money went, from its trace and manifest.

One normalised view of a finished run (`RunData`, built from a RunResult, a store run or a bare
JSONL trace file) and the figures users ask about (`summarize`): per agent calls, tokens, cost
and latency p50/p95; the slowest nodes; the critical path and its share of the wall time;
retries; failures and skips; tool calls per agent; messages along edges; parallel efficiency.
Renderers, the timeline, the HTML report and `estimate` all read `RunData`, so they agree.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx
import orjson

from dagagents.engine.scheduler import critical_path
from dagagents.errors import UserError
from dagagents.observe.runs import CONDITION_FALSE, NodeRecord, RunResult, fold_events
from dagagents.store import Store, manifest_problem, warn_once


@dataclass
class RunData:
    """A finished (or interrupted) run, whatever it was read from."""

    run_id: str
    graph: str
    status: str
    wall: float
    concurrency: int
    provider: str = ""
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    # `describe_spec` output by node when known (manifests have it; bare traces do not).
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------- building
    @classmethod
    def from_events(cls, events: Sequence[dict[str, Any]]) -> RunData:
        """Rebuild a run from its trace alone (edges from `message` and `expand` events)."""
        if not events:
            raise UserError("the trace is empty (no events).")
        start = next((e for e in events if e["event"] == "run_start"), {})
        end = next((e for e in reversed(events) if e["event"] == "run_end"), None)
        data = cls(
            run_id=str(events[0].get("run", "")),
            graph=str(start.get("graph", "")),
            status=str(end["status"]) if end else "interrupted",
            wall=float(end["wall"]) if end else float(events[-1].get("t", 0.0)),
            concurrency=int(start.get("concurrency") or 1),
            provider=str(start.get("provider") or ""),
            events=list(events),
        )
        data.nodes = fold_events(events)
        edges: dict[tuple[str, str], None] = {}
        for e in events:
            if e["event"] == "message":
                edges[(e["src"], e["dst"])] = None
            elif e["event"] == "expand":
                edges.update(dict.fromkeys((src, dst) for src, dst in e.get("edges", [])))
        data.edges = list(edges)
        return data

    @classmethod
    def from_manifest(
        cls, manifest: Mapping[str, Any], events: Sequence[dict[str, Any]] = ()
    ) -> RunData:
        """A store run: the manifest is authoritative for nodes and edges, the trace adds
        retries, tool calls and messages. A run still going (or killed) has only a manifest
        header, so its nodes come from the trace."""
        if "nodes" not in manifest:
            if not events:
                raise UserError(f"run '{manifest.get('run_id')}' has no trace events yet.")
            partial = cls.from_events(events)
            if partial.status == "interrupted" and manifest.get("status") == "running":
                partial.status = "running or killed"
            return partial
        data = cls(
            run_id=str(manifest.get("run_id", "")),
            graph=str(manifest.get("graph", "")),
            status=str(manifest.get("status", "")),
            wall=float(manifest.get("wall") or _last_t(events)),
            concurrency=int(manifest.get("concurrency") or 1),
            provider=str(manifest.get("provider") or ""),
            edges=[(str(a), str(b)) for a, b in manifest.get("edges", [])],
            specs=dict(manifest.get("specs", {})),
            events=list(events),
        )
        data.nodes = {
            str(name): NodeRecord.from_json(str(name), n)
            for name, n in manifest.get("nodes", {}).items()
        }
        data._count_from_events()
        return data

    @classmethod
    def from_result(cls, result: RunResult) -> RunData:
        """A RunResult from `Graph.run` (its events are the trace)."""
        end = next((e for e in reversed(result.events) if e["event"] == "run_end"), None)
        status = "interrupted" if result.interrupted else str(end["status"]) if end else "unknown"
        data = cls(
            run_id=result.run_id,
            graph=result.graph,
            status=status,
            wall=result.wall,
            concurrency=result.concurrency,
            provider=result.provider,
            edges=[(str(a), str(b)) for a, b in result.edges],
            events=list(result.events),
        )
        data.nodes = {name: replace(r) for name, r in result.records.items()}
        data._count_from_events()
        return data

    def _count_from_events(self) -> None:
        """Retries and tool calls, which only the trace records."""
        for name, folded in fold_events(self.events).items():
            record = self.nodes.get(name)
            if record is not None:
                record.retries, record.tool_calls = folded.retries, folded.tool_calls

    # ------------------------------------------------------------- queries
    @property
    def expansions(self) -> list[tuple[str, str]]:
        """(expander, added node) pairs: a node added at run time cannot start before the
        node whose output planned it finished, though no data edge says so. A node added
        while the expander's reply was still streaming (a streamed plan's subtask) could, so
        it makes no pair."""
        return [
            (e["node"], added)
            for e in self.events
            if e["event"] == "expand" and not e.get("streamed")
            for added in e.get("added", [])
        ]

    def dag(self) -> nx.DiGraph:
        """Data edges plus the implicit expander -> added-node edges: every real ordering."""
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        g.add_edges_from(self.edges)
        g.add_edges_from((a, b) for a, b in self.expansions if a in g and b in g)
        return g

    def start_order(self) -> list[NodeRecord]:
        """Nodes that started (or hit the cache), earliest first."""
        started = [n for n in self.nodes.values() if n.start is not None]
        return sorted(started, key=lambda n: (n.start, n.name))


def realised_critical_path(run: RunData) -> tuple[list[str], float]:
    """The chain that actually set the wall time, read from when nodes started and ended.

    From the node that finished last, step back to the dependency (or expander) that finished
    last before it started, and so on: each link is what that node was waiting for. Unlike the
    longest path by durations, this shows waits for a slot, retries and slow starts where they
    happened. Returns the chain (first to last) and the seconds its nodes ran."""
    timed = {
        name: n
        for name, n in run.nodes.items()
        if n.start is not None and n.end is not None and n.status != "skipped"
    }
    if not timed:
        return [], 0.0
    dag = run.dag()
    current = max(timed.values(), key=lambda n: (n.end, n.name))
    chain = [current]
    while True:
        before = [
            timed[p]
            for p in dag.predecessors(current.name)
            if p in timed and timed[p].end <= current.start + 1e-6  # type: ignore[operator]
        ]
        if not before:
            break
        current = max(before, key=lambda n: (n.end, n.name))
        chain.append(current)
    chain.reverse()
    return [n.name for n in chain], sum(n.duration for n in chain)


def load_run(target: str | None = None, store: str | os.PathLike[str] = ".dagagents") -> RunData:
    """A run from a trace file (JSONL; its folder's manifest.json is used when present),
    a run folder, or a run id (prefix, or `latest`) in `store`."""
    if target is not None and os.path.exists(target):
        path = Path(target)
        if path.is_dir():
            path = path / "trace.jsonl"
        events = read_events(path)
        manifest = _folder_manifest(path.parent / "manifest.json")
        if manifest is not None:
            return RunData.from_manifest(manifest, events)
        return RunData.from_events(events)
    if target is not None and _looks_like_a_file(target):
        raise UserError(f"trace file '{target}' does not exist.")
    st = Store(store, create=False)  # reading never creates a store
    manifest = st.read_manifest(target)
    return RunData.from_manifest(manifest, st.read_trace(manifest["run_id"]))


def _looks_like_a_file(target: str) -> bool:
    """A path, not a run id: run ids have neither separators nor a .jsonl/.json suffix."""
    return os.sep in target or "/" in target or target.endswith((".jsonl", ".json"))


def _folder_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest beside a trace file; a damaged one is warned about and left out (the
    trace alone still tells the run)."""
    if not path.is_file():
        return None
    try:
        manifest = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        manifest = None
        problem: str | None = "not JSON"
    else:
        problem = manifest_problem(manifest)
    if problem is not None:
        warn_once(f"manifest '{path}' is damaged ({problem}); skipped.")
        return None
    return dict(manifest)


def load_graph_run(store: Store, run: str, graph_name: str) -> RunData:
    """Run `run` of graph `graph_name`; `latest` means that graph's newest run in the store."""
    if run != "latest":
        manifest = store.read_manifest(run)
        if manifest.get("graph") != graph_name:
            raise UserError(
                f"run '{manifest['run_id']}' is of graph '{manifest.get('graph')}', "
                f"not '{graph_name}'."
            )
    else:
        found = next(store.recent_manifests(graph_name), None)
        if found is None:
            raise UserError(f"store '{store.url}' has no run of graph '{graph_name}' yet.")
        manifest = found
    return RunData.from_manifest(manifest, store.read_trace(manifest["run_id"]))


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The events of a JSONL trace; a damaged line is a one-sentence UserError, except a
    last line with no newline, which a kill cut short mid-write (the store's reader skips it
    too, so a run folder and its run id read the same)."""
    try:
        with open(path, "rb") as fh:
            lines = fh.read().split(b"\n")
    except FileNotFoundError:
        raise UserError(f"trace file '{path}' does not exist.") from None
    except OSError as exc:
        raise UserError(f"trace '{path}' cannot be read: {exc.strerror}.") from None
    torn = len(lines)  # the text after the last newline, if any, is an unfinished line
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            if number == torn:
                break
            raise UserError(f"trace '{path}' line {number} is not JSON.") from None
        if not isinstance(event, dict) or "event" not in event:
            raise UserError(f"trace '{path}' line {number} is not a trace event.")
        events.append(event)
    return events


# ------------------------------------------------------------------ figures
@dataclass
class AgentStats:
    """One agent's share of the run. Latency covers nodes that completed (not cached)."""

    agent: str
    models: list[str]
    nodes: int = 0
    calls: int = 0
    cached: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    time: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    retries: int = 0
    tools: dict[str, int] = field(default_factory=dict)


@dataclass
class Summary:
    """The answers to "which agent cost most, which stage was slowest, what was the critical
    path, which node failed and why"."""

    run_id: str
    graph: str
    status: str
    wall: float
    concurrency: int
    provider: str
    counts: dict[str, int]
    agents: list[AgentStats]
    slowest: list[NodeRecord]
    critical_path: list[str]
    critical_time: float
    node_time: float
    retries: list[dict[str, Any]]
    failures: list[tuple[str, str]]
    skipped: list[tuple[str, str]]
    cache_hits: int
    saved_cost: float
    messages: int
    undelivered: list[tuple[str, str]]
    cost: float
    input_tokens: int
    output_tokens: int
    # The chain that actually set the wall time (see `realised_critical_path`): what the
    # report and the charts highlight; `critical_path` is the longest chain by node time.
    realised_path: list[str] = field(default_factory=list)
    realised_time: float = 0.0
    # Maps (items, failed items), loops (rounds, how they ended), condition-false skips.
    structure: list[str] = field(default_factory=list)
    # What prompt caching and the Message Batches API saved (against uncached, standard price).
    saved_by_prompt_cache: float = 0.0
    saved_by_batch: float = 0.0
    batch_calls: int = 0
    # Cache warming's decisions, one line each (who led, who waited, who went at once).
    warming: list[str] = field(default_factory=list)

    @property
    def critical_share(self) -> float:
        """Fraction of the wall time the critical path accounts for (1.0 = no waiting)."""
        return self.critical_time / self.wall if self.wall > 0 else 0.0

    @property
    def realised_share(self) -> float:
        """Fraction of the wall time the nodes of the realised critical path were running."""
        return self.realised_time / self.wall if self.wall > 0 else 0.0

    @property
    def efficiency(self) -> float:
        """Parallel efficiency: node time / (wall x concurrency); 1.0 = every slot busy."""
        denominator = self.wall * self.concurrency
        return self.node_time / denominator if denominator > 0 else 0.0

    def most_expensive_agent(self) -> AgentStats | None:
        return max(self.agents, key=lambda a: a.cost, default=None)


def percentile(values: Iterable[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method); 0.0 for no values."""
    data = sorted(values)
    if not data:
        return 0.0
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize(run: RunData, top: int = 5) -> Summary:
    """Every figure of `dagagents trace summary`, computed from one RunData."""
    agents: dict[str, AgentStats] = {}
    latencies: dict[str, list[float]] = {}
    for n in run.nodes.values():
        if n.agent is None:
            continue
        stats = agents.setdefault(n.agent, AgentStats(n.agent, []))
        if n.model and n.model not in stats.models:
            stats.models.append(n.model)
        stats.retries += n.retries
        if n.status == "cached":
            stats.cached += 1
            continue
        if not n.ran:
            continue
        stats.nodes += 1
        stats.calls += n.calls
        stats.time += n.duration
        if n.status == "done":
            stats.input_tokens += n.usage.input_tokens
            stats.output_tokens += n.usage.output_tokens
            stats.cost += n.cost_usd
            latencies.setdefault(n.agent, []).append(n.duration)
        else:
            stats.failed += 1
    for e in run.events:
        if e["event"] == "tool_call" and e.get("node") in run.nodes:
            agent = run.nodes[e["node"]].agent
            if agent in agents:
                tools = agents[agent].tools
                tools[e.get("tool", "?")] = tools.get(e.get("tool", "?"), 0) + 1
    for name, values in latencies.items():
        agents[name].p50 = percentile(values, 50)
        agents[name].p95 = percentile(values, 95)

    ran = [n for n in run.nodes.values() if n.ran]
    durations = {n.name: n.duration for n in ran}
    path, path_time = critical_path(run.dag(), durations)
    realised, realised_time = realised_critical_path(run)
    done = [n for n in run.nodes.values() if n.status == "done"]
    messages = [e for e in run.events if e["event"] == "message"]
    delivered = {(e["src"], e["dst"]) for e in messages}
    undelivered = [
        (src, dst)
        for src, dst in run.edges
        if src in run.nodes
        and dst in run.nodes
        and run.nodes[src].status in ("done", "cached")
        and run.nodes[dst].status in ("skipped", "cancelled")
        and (src, dst) not in delivered
    ]
    return Summary(
        run_id=run.run_id,
        graph=run.graph,
        status=run.status,
        wall=run.wall,
        concurrency=run.concurrency,
        provider=run.provider,
        counts=dict(Counter(n.status for n in run.nodes.values())),
        agents=sorted(agents.values(), key=lambda a: (-a.cost, a.agent)),
        slowest=sorted(ran, key=lambda n: (-n.duration, n.name))[:top],
        critical_path=path,
        critical_time=path_time,
        realised_path=realised,
        realised_time=realised_time,
        node_time=sum(durations.values()),
        retries=[
            {k: e.get(k) for k in ("node", "attempt", "error", "wait", "t")}
            for e in run.events
            if e["event"] == "retry"
        ],
        failures=[(n.name, n.error or "") for n in run.nodes.values() if n.status == "failed"],
        skipped=[(n.name, n.because or "") for n in run.nodes.values() if n.status == "skipped"],
        cache_hits=sum(1 for n in run.nodes.values() if n.status == "cached"),
        saved_cost=sum(n.cost_usd for n in run.nodes.values() if n.status == "cached"),
        messages=len(messages),
        undelivered=undelivered,
        cost=sum(n.cost_usd for n in done),
        input_tokens=sum(n.usage.input_tokens for n in done),
        output_tokens=sum(n.usage.output_tokens for n in done),
        structure=structure_lines(run),
        saved_by_prompt_cache=sum(n.saved_cache_usd for n in done),
        saved_by_batch=sum(n.saved_batch_usd for n in done),
        batch_calls=sum(n.batch_calls for n in done),
        warming=warming_lines(run.events),
    )


def warming_lines(events: list[dict[str, Any]]) -> list[str]:
    """One line per `cache_warm` event: a leader whose followers read its prefix, a follower
    the critical-path rule sent at once, or one that stopped waiting."""
    lines = []
    for e in events:
        if e.get("event") != "cache_warm":
            continue
        node, tokens = e.get("node"), int(e.get("prefix_tokens") or 0)
        if e.get("released"):
            lines.append(
                f"{node} went at once ({e['released'].replace('_', ' ')}: slack "
                f"{float(e.get('slack') or 0):.2f}s, expected wait "
                f"{float(e.get('expected_wait') or 0):.2f}s, waiting would have saved "
                f"${float(e.get('saving_usd') or 0):.4f}) and wrote the prefix itself"
            )
        elif e.get("gave_up"):
            lines.append(
                f"{node} stopped waiting for {e.get('leader')} after "
                f"{float(e.get('wait') or 0):.2f}s and wrote the prefix itself"
            )
        else:
            followers = e.get("followers") or []
            lines.append(
                f"{node} wrote a ~{tokens:,}-token prefix; {len(followers)} call(s) waited "
                f"{float(e.get('wait') or 0):.2f}s and read it"
            )
    return lines


def structure_lines(run: RunData) -> list[str]:
    """One line per map and loop of the run, and one for condition-false skips."""
    maps: dict[str, list[NodeRecord]] = {}
    rounds: dict[str, list[int]] = {}
    for name, n in run.nodes.items():
        tags = (run.specs.get(name) or {}).get("tags") or {}
        if tags.get("map") == name:
            maps.setdefault(name, [])
        elif tags.get("map") and tags.get("index") is not None:
            maps.setdefault(tags["map"], []).append(n)
        is_round = tags.get("role") == "round" and tags.get("loop") and tags.get("round")
        if is_round and n.status in ("done", "cached"):
            rounds.setdefault(tags["loop"], []).append(int(tags["round"]))
    exhausted = {
        e.get("node"): e.get("message", "")
        for e in run.events
        if e["event"] == "warning" and "max_rounds" in str(e.get("message", ""))
    }
    lines: list[str] = []
    for name, items in maps.items():
        failed = [n.name for n in items if n.status == "failed"]
        status = run.nodes[name].status if name in run.nodes else "?"
        line = f"map {name}: {len(items)} item{'s' if len(items) != 1 else ''} ({status})"
        if failed:
            line += f"; failed: {', '.join(failed)}"
        lines.append(line)
    for loop, done in rounds.items():
        last = max(done)
        note = exhausted.get(f"{loop}[{last}]")
        how = "reached max_rounds without until holding" if note else "stopped"
        lines.append(f"loop {loop}: {len(done)} round{'s' if len(done) != 1 else ''}, {how}")
    skipped = [n.name for n in run.nodes.values() if n.because == CONDITION_FALSE]
    if skipped:
        lines.append(f"condition false (skipped at zero cost): {', '.join(skipped)}")
    return lines


def _last_t(events: Sequence[dict[str, Any]]) -> float:
    return float(events[-1].get("t", 0.0)) if events else 0.0
