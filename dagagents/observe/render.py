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
from dagagents.observe.palette import CRITICAL_COLOUR, FAILED_COLOUR
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
        if node.agent:
            lines.append(f"{node.agent} · {node.model}")
        elif node.kind != "agent":
            lines.append(node.kind)
        if node.detail:
            lines.append(node.detail)
        return lines


# ------------------------------------------------------------------ building
def diagram_from_graph(graph: Graph, run: RunData | None = None) -> Diagram:
    """A graph's diagram; with a run, its statuses (and the nodes its expansions added)."""
    from dagagents.engine.run import describe_spec

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
    )


# ------------------------------------------------------------------ formats
def to_mermaid(d: Diagram) -> str:
    """Mermaid flowchart text (renders on GitHub, in docs sites and mermaid.live)."""
    ids = {name: f"n{i}" for i, name in enumerate(d.nodes)}
    lines = ["flowchart LR"]
    title = d.name + (f" (run {d.run_id})" if d.run_id else "")
    lines.insert(0, f"---\ntitle: {_mermaid_text(title)}\n---")
    for name, node in d.nodes.items():
        text = "<br/>".join(_mermaid_text(t) for t in d.label(node))
        shape = ('["', '"]') if node.kind == "agent" else ('(["', '"])')
        lines.append(f"    {ids[name]}{shape[0]}{text}{shape[1]}")
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
    for status, fill in FILL.items():
        stroke = f"{FAILED_BORDER},stroke-width:2px" if status == "failed" else "#555"
        lines.append(f"    classDef {status} fill:{fill},stroke:{stroke},color:#000")
    lines.append(f"    classDef critical stroke:{CRITICAL},stroke-width:3px")
    by_status: dict[str, list[str]] = {}
    for name, node in d.nodes.items():
        if node.status:
            by_status.setdefault(node.status, []).append(ids[name])
    for status, members in by_status.items():
        if status in FILL:
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
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def to_dot(d: Diagram) -> graphviz.Digraph:
    """A graphviz Digraph; `.source` is the DOT text, `.pipe(format=...)` draws it."""
    title = d.name + (f"  ·  run {d.run_id}" if d.run_id else "")
    import graphviz

    dot = graphviz.Digraph(name=d.name, comment=f"dagagents graph {d.name}")
    dot.attr(rankdir="LR", label=title, labelloc="t", fontname="Helvetica", fontsize="14")
    dot.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11")
    dot.attr("edge", color="#666666", arrowsize="0.7")
    critical_nodes = set(d.critical)
    for name, node in d.nodes.items():
        attrs = {
            "label": "\\n".join(_dot_text(t) for t in d.label(node)),
            "fillcolor": FILL.get(node.status or "pending", "#ffffff"),
            "tooltip": _dot_text(f"{name}: {node.status or node.kind}"),
        }
        if node.kind != "agent":
            attrs["shape"] = "component" if node.kind == "step" else "box"
        if node.status in ("skipped", "cancelled"):
            attrs["style"] = "rounded,filled,dashed"
        if node.status == "failed":
            attrs.update(color=FAILED_BORDER, penwidth="2.5" if name in critical_nodes else "2")
        elif name in critical_nodes:
            attrs.update(color=CRITICAL, penwidth="2.5")
        dot.node(name, **attrs)
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
