"""DAG diagrams: Mermaid and DOT text (no system dependency), SVG/PNG through Graphviz `dot`.

Nodes are labelled with their agent and model; given a run they are filled by its status
(done, cached, failed, skipped, ...) and show duration and cost; the critical path (actual
durations for a run, predicted ones for a graph) is drawn in bold red.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dagagents.errors import UserError
from dagagents.model.graph import Graph
from dagagents.model.nodes import describe_spec
from dagagents.observe.palette import CRITICAL_COLOUR, FAILED_COLOUR
from dagagents.observe.runs import CONDITION_FALSE
from dagagents.observe.summary import RunData, realised_critical_path

if TYPE_CHECKING:  # graphviz is imported when a diagram is drawn, not on the run path
    import graphviz

FORMATS = ("mermaid", "dot", "svg", "png")
# Fill colours by status: the same meaning as the terminal's STYLE, in print-friendly tints.
FILL = {
    "done": "#c8e6c9",
    "cached": "#b2ebf2",
    "failed": "#ffcdd2",
    "skipped": "#fff3b0",
    "cancelled": "#e1bee7",
    "running": "#bbdefb",
    "pending": "#ffffff",
}
CRITICAL = CRITICAL_COLOUR  # near-black: red is for failures, in this view as in every other
FAILED_BORDER = FAILED_COLOUR
CONDITION_GREY = "#e0e0e0"  # skipped because a when= condition was false: nothing went wrong
DOT_MISSING = (
    "Graphviz's `dot` program is not installed, so {fmt} cannot be drawn; install it with "
    "`apt-get install graphviz` (macOS: `brew install graphviz`), or use -f mermaid or -f dot."
)


@dataclass
class DiagramNode:
    name: str
    kind: str = "node"
    agent: str | None = None
    model: str | None = None
    status: str | None = None  # None: no run given
    detail: str = ""  # e.g. "2.31s · $0.0123"
    role: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    because: str | None = None  # why a skipped node was skipped
    items: int | None = None  # a folded map: how many items it had (None: not known yet)


@dataclass
class Diagram:
    """What every format draws: nodes, edges, and the nodes and edges to highlight."""

    name: str
    nodes: dict[str, DiagramNode]
    edges: list[tuple[str, str]]
    critical: list[str] = field(default_factory=list)
    run_id: str | None = None
    # Dashed "planned" edges: expander -> the nodes its output added that have no data edge in.
    planned: list[tuple[str, str]] = field(default_factory=list)

    @property
    def critical_edges(self) -> set[tuple[str, str]]:
        return set(zip(self.critical, self.critical[1:], strict=False))

    def label(self, node: DiagramNode) -> list[str]:
        lines = [node.name]
        if node.kind == "map":
            lines[0] += f"  ×{node.items}" if node.items is not None else "  ×N"
        if node.agent:
            lines.append(f"{node.agent} · {node.model}")
        elif node.kind != "agent":
            lines.append(node.kind)
        if node.detail:
            lines.append(node.detail)
        if node.because == CONDITION_FALSE:
            lines.append(CONDITION_FALSE)
        return lines

    def clusters(self) -> dict[str, list[str]]:
        """Loop and subgraph clusters: a label (`loop refine`, `subgraph research`) -> members."""
        out: dict[str, list[str]] = {}
        for name, node in self.nodes.items():
            if node.tags.get("loop"):
                out.setdefault(f"loop {node.tags['loop']}", []).append(name)
            elif node.tags.get("subgraph"):
                out.setdefault(f"subgraph {node.tags['subgraph']}", []).append(name)
        return out


def fold_maps(d: Diagram) -> Diagram:
    """A map drawn as one stacked node: its splitter and items fold into the map node, which
    shows how many items it had; their edges become the map's."""
    folded: dict[str, str] = {}
    for name, node in d.nodes.items():
        owner = node.tags.get("map")
        if owner and name != owner and owner in d.nodes:
            folded[name] = owner
    if not folded:
        return d
    nodes = {n: node for n, node in d.nodes.items() if n not in folded}
    for owner in set(folded.values()):
        members = [d.nodes[n] for n, o in folded.items() if o == owner]
        items = [m for m in members if m.tags.get("index") is not None]
        split_done = any(m.name.endswith("[*]") and m.status in ("done", "cached") for m in members)
        nodes[owner].items = len(items) if items or split_done else None
        nodes[owner].kind = "map"
        if any(m.agent for m in items):
            nodes[owner].agent, nodes[owner].model = items[0].agent, items[0].model
    edges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for src, dst in d.edges:
        edge = (folded.get(src, src), folded.get(dst, dst))
        if edge[0] != edge[1] and edge not in seen:
            seen.add(edge)
            edges.append(edge)
    critical = [n for n in (folded.get(c, c) for c in d.critical)]
    critical = [n for i, n in enumerate(critical) if i == 0 or critical[i - 1] != n]
    planned = [
        (folded.get(a, a), folded.get(b, b))
        for a, b in d.planned
        if folded.get(a, a) != folded.get(b, b)
    ]
    return Diagram(
        name=d.name, nodes=nodes, edges=edges, critical=critical, run_id=d.run_id, planned=planned
    )


# ------------------------------------------------------------------ building
def diagram_from_graph(graph: Graph, run: RunData | None = None) -> Diagram:
    """A graph's diagram; with a run, its statuses (and the nodes its expansions added)."""

    specs = {name: describe_spec(spec) for name, spec in graph.specs.items()}
    if run is not None:
        merged = diagram_from_run(run)
        for name, desc in specs.items():
            if name not in merged.nodes:
                merged.nodes[name] = _node(name, desc, None)
                merged.nodes[name].status = "pending"
        for edge in graph.nx.edges:
            if edge not in merged.edges:
                merged.edges.append(edge)
        return merged
    from dagagents.observe.estimate import estimate

    predicted = estimate(graph, concurrency=1)
    path = predicted.critical_path if len(predicted.nodes) > 1 else []
    nodes = {name: _node(name, desc, None) for name, desc in specs.items()}
    for name, spec in graph.specs.items():
        if spec.expand is not None:  # an orchestrator's planner: its subtasks come later
            nodes[name].detail = "adds nodes at run time"
    return Diagram(name=graph.name, nodes=nodes, edges=list(graph.nx.edges), critical=path)


def diagram_from_run(run: RunData) -> Diagram:
    """A stored run's diagram: its manifest has every node (expanded ones too) and edge."""
    nodes: dict[str, DiagramNode] = {}
    for name, n in run.nodes.items():
        desc = dict(run.specs.get(name, {}))
        desc.setdefault("kind", n.kind)
        desc["agent"] = desc.get("agent") or n.agent
        desc["model"] = n.model or desc.get("model")
        node = _node(name, desc, n.status)
        node.because = n.because
        bits = []
        if n.status in ("done", "failed") and n.start is not None:
            bits.append(f"{n.duration:.2f}s")
        if n.status == "done" and n.cost_usd:
            bits.append(f"${n.cost_usd:.4f}")
        if n.retries:
            bits.append(f"{n.retries} retr{'y' if n.retries == 1 else 'ies'}")
        node.detail = " · ".join(bits)
        nodes[name] = node
    path, _ = realised_critical_path(run)  # what actually set the wall time
    has_input = {dst for _, dst in run.edges}
    planned = [(a, b) for a, b in run.expansions if b not in has_input and b in nodes]
    return Diagram(
        name=run.graph,
        nodes=nodes,
        edges=list(run.edges),
        critical=path,
        run_id=run.run_id,
        planned=planned,
    )


def _node(name: str, desc: Mapping[str, Any], status: str | None) -> DiagramNode:
    tags = desc.get("tags") or {}
    return DiagramNode(
        name=name,
        kind=str(desc.get("kind") or "node"),
        agent=desc.get("agent"),
        model=desc.get("model"),
        status=status,
        role=tags.get("role") if isinstance(tags, Mapping) else None,
        tags=dict(tags) if isinstance(tags, Mapping) else {},
    )


# ------------------------------------------------------------------ formats
def to_mermaid(d: Diagram) -> str:
    """Mermaid flowchart text (renders on GitHub, in docs sites and mermaid.live)."""
    d = fold_maps(d)
    ids = {name: f"n{i}" for i, name in enumerate(d.nodes)}
    lines = ["flowchart LR"]
    title = d.name + (f" (run {d.run_id})" if d.run_id else "")
    lines.insert(0, f"---\ntitle: {_mermaid_text(title)}\n---")
    clustered = d.clusters()
    in_cluster = {n for members in clustered.values() for n in members}

    def node_line(name: str, node: DiagramNode, indent: str) -> str:
        text = "<br/>".join(_mermaid_text(t) for t in d.label(node))
        if node.kind == "map":
            shape = ('[["', '"]]')  # a stacked (subroutine) box: one node per item inside
        elif node.kind == "agent":
            shape = ('["', '"]')
        else:
            shape = ('(["', '"])')
        return f"{indent}{ids[name]}{shape[0]}{text}{shape[1]}"

    for name, node in d.nodes.items():
        if name not in in_cluster:
            lines.append(node_line(name, node, "    "))
    for index, (label, members) in enumerate(clustered.items()):
        lines.append(f'    subgraph c{index} ["{_mermaid_text(label)}"]')
        lines.extend(node_line(n, d.nodes[n], "        ") for n in members)
        lines.append("    end")
    links, critical_links = _mermaid_links(d, ids)
    lines.extend(links)
    lines.extend(_mermaid_styles(d, ids, critical_links))
    return "\n".join(lines) + "\n"


def _mermaid_links(d: Diagram, ids: dict[str, str]) -> tuple[list[str], list[int]]:
    """The flowchart's links (edges, then planned ones) and the indices of critical ones."""
    lines: list[str] = []
    critical = d.critical_edges
    critical_links: list[int] = []
    for index, (src, dst) in enumerate(e for e in d.edges if e[0] in ids and e[1] in ids):
        lines.append(f"    {ids[src]} --> {ids[dst]}")
        if (src, dst) in critical:
            critical_links.append(index)
    link = sum(1 for e in d.edges if e[0] in ids and e[1] in ids)
    for src, dst in d.planned:
        if src in ids and dst in ids:
            lines.append(f"    {ids[src]} -. plans .-> {ids[dst]}")
            if (src, dst) in critical:
                critical_links.append(link)
            link += 1
    return lines, critical_links


def _mermaid_styles(d: Diagram, ids: dict[str, str], critical_links: list[int]) -> list[str]:
    """Class definitions, each node's class by status, and the critical path's styles."""
    lines: list[str] = []
    for status, fill in FILL.items():
        stroke = f"{FAILED_BORDER},stroke-width:2px" if status == "failed" else "#555"
        lines.append(f"    classDef {status} fill:{fill},stroke:{stroke},color:#000")
    lines.append(f"    classDef conditionfalse fill:{CONDITION_GREY},stroke:#999,color:#666")
    lines.append(f"    classDef critical stroke:{CRITICAL},stroke-width:3px")
    by_status: dict[str, list[str]] = {}
    for name, node in d.nodes.items():
        if node.because == CONDITION_FALSE:
            by_status.setdefault("conditionfalse", []).append(ids[name])
        elif node.status:
            by_status.setdefault(node.status, []).append(ids[name])
    for status, members in by_status.items():
        if status in FILL or status == "conditionfalse":
            lines.append(f"    class {','.join(members)} {status}")
    # A failed node keeps its red border even on the critical path (the path's edges still
    # show the chain), so "failed" and "critical" never look alike.
    crit_nodes = [ids[n] for n in d.critical if n in ids and d.nodes[n].status != "failed"]
    if crit_nodes:
        lines.append(f"    class {','.join(crit_nodes)} critical")
    if critical_links:
        lines.append(
            f"    linkStyle {','.join(map(str, critical_links))} stroke:{CRITICAL},stroke-width:3px"
        )
    return lines


def _mermaid_text(text: str) -> str:
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def to_dot(d: Diagram) -> graphviz.Digraph:
    """A graphviz Digraph; `.source` is the DOT text, `.pipe(format=...)` draws it."""
    d = fold_maps(d)
    title = d.name + (f"  ·  run {d.run_id}" if d.run_id else "")
    import graphviz

    dot = graphviz.Digraph(name=d.name, comment=f"dagagents graph {d.name}")
    dot.attr(rankdir="LR", label=title, labelloc="t", fontname="Helvetica", fontsize="14")
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11")
    dot.attr("edge", color="#666666", arrowsize="0.7")
    critical_nodes = set(d.critical)
    cluster_of = {n: label for label, members in d.clusters().items() for n in members}
    clusters = {
        label: graphviz.Digraph(name=f"cluster_{i}")
        for i, label in enumerate(dict.fromkeys(cluster_of.values()))
    }
    for label, sub in clusters.items():
        sub.attr(label=_dot_text(label), style="rounded,dashed", color="#888888")
    for name, node in d.nodes.items():
        attrs = {
            "label": "\\n".join(_dot_text(t) for t in d.label(node)),
            "fillcolor": FILL.get(node.status or "pending", "#ffffff"),
            "tooltip": _dot_text(f"{name}: {node.status or node.kind}"),
        }
        if node.kind == "map":
            attrs["shape"] = "box3d"  # stacked: one node per item inside
        elif node.kind != "agent":
            attrs["shape"] = "component" if node.kind == "step" else "box"
        if node.status in ("skipped", "cancelled"):
            attrs["style"] = "rounded,filled,dashed"
        if node.because == CONDITION_FALSE:
            attrs.update(fillcolor=CONDITION_GREY, fontcolor="#666666", color="#999999")
        if node.status == "failed":
            attrs.update(color=FAILED_BORDER, penwidth="2.5" if name in critical_nodes else "2")
        elif name in critical_nodes:
            attrs.update(color=CRITICAL, penwidth="2.5")
        (clusters[cluster_of[name]] if name in cluster_of else dot).node(name, **attrs)
    for sub in clusters.values():
        dot.subgraph(sub)
    critical = d.critical_edges
    for src, dst in d.edges:
        if src not in d.nodes or dst not in d.nodes:
            continue
        if (src, dst) in critical:
            dot.edge(src, dst, color=CRITICAL, penwidth="2.5")
        else:
            dot.edge(src, dst)
    for src, dst in d.planned:
        if src in d.nodes and dst in d.nodes:
            hot = (src, dst) in critical
            dot.edge(
                src,
                dst,
                style="dashed",
                color=CRITICAL if hot else "#999999",
                penwidth="2.5" if hot else "1",
                tooltip=f"{src} planned {dst}",
            )
    return dot


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render_bytes(d: Diagram, fmt: str) -> bytes:
    """The diagram in `fmt` (mermaid, dot, svg or png, any case) as bytes."""
    fmt = fmt.lower()
    if fmt == "mermaid":
        return to_mermaid(d).encode()
    if fmt == "dot":
        return to_dot(d).source.encode()
    if fmt in ("svg", "png"):
        import graphviz

        dot = to_dot(d)
        if fmt == "png":
            dot.attr(dpi="150")  # crisp in READMEs and reports
        try:
            return bytes(dot.pipe(format=fmt))
        except graphviz.ExecutableNotFound:
            raise UserError(DOT_MISSING.format(fmt=fmt.upper())) from None
        except graphviz.CalledProcessError as exc:
            stderr = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
            raise UserError(
                f"Graphviz failed to draw graph '{d.name}': {stderr[-1] if stderr else exc}."
            ) from None
    raise UserError(f"unknown format '{fmt}' (expected one of: {', '.join(FORMATS)}).")


def svg_inline(d: Diagram) -> str:
    """SVG text without the XML prolog and DOCTYPE, ready to embed in HTML."""
    svg = render_bytes(d, "svg").decode()
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
