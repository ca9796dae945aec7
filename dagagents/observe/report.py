"""One self-contained HTML file per run: the DAG, the timeline, cost and latency, failures.

Everything is inline (SVG for the diagram, a base64 PNG for the timeline, CSS in a <style>),
so the file opens offline, attaches to a ticket, and loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dagagents.errors import UserError
from dagagents.observe.outputs import NodeDetail
from dagagents.observe.render import diagram_from_run, svg_inline, to_mermaid
from dagagents.observe.summary import RunData, Summary, summarize

MAX_NODE_ROWS = 500
MAX_OUTPUTS = 200  # nodes whose output the report includes
OUTPUT_SHOWN = 3000  # characters shown before "the full text" fold
MAX_DIAGRAM_NODES = 400
STATUS_COLOUR = {
    "done": "#2e7d32",
    "cached": "#00838f",
    "failed": "#c62828",
    "skipped": "#b28704",
    "cancelled": "#8e24aa",
    "running": "#1565c0",
    "pending": "#757575",
}

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 24px auto; max-width: 1200px; padding: 0 16px; color: #1f2328; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px;
     border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.sub { color: #57606a; } .sim { background: #fff8c5; padding: 2px 6px; border-radius: 4px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 14px; min-width: 130px; }
.card b { display: block; font-size: 20px; } .card span { color: #57606a; font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0; width: 100%; }
th, td { border-bottom: 1px solid #eaeef2; padding: 4px 8px; text-align: left;
         vertical-align: top; } th { background: #f6f8fa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.diagram { overflow: auto; border: 1px solid #d0d7de; border-radius: 8px; padding: 8px; }
.diagram svg { max-width: 100%; height: auto; }
img.timeline { width: 100%; max-width: 1100px; border: 1px solid #d0d7de; border-radius: 8px; }
.status { font-weight: 600; } pre { background: #f6f8fa; padding: 8px; overflow: auto; }
.path { font-family: ui-monospace, Menlo, monospace; }
pre.output, pre.output-full, pre.prompt, pre.system { white-space: pre-wrap; }
details.node-output { border-bottom: 1px solid #eaeef2; padding: 4px 0; }
details summary { cursor: pointer; }
"""


def report_html(
    run: RunData,
    compare_with: RunData | None = None,
    details: Mapping[str, NodeDetail] | None = None,
) -> str:
    """The report page as one HTML string; `details` (from the store) adds outputs and prompts."""
    s = summarize(run, top=10)
    e = html.escape
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    sim = ' <span class="sim">simulated provider</span>' if run.provider == "simulated" else ""
    counts = ", ".join(f"{v} {k}" for k, v in sorted(s.counts.items()))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(run.graph)} · run {e(run.run_id)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{e(run.graph)} · run {e(run.run_id)}</h1>",
        f'<div class="sub">status <span class="status" style="color:'
        f'{STATUS_COLOUR.get(run.status, "#1f2328")}">{e(run.status)}</span> · {e(counts)} · '
        f"concurrency {run.concurrency}{sim} · generated {generated}</div>",
        _cards(s),
        '<h2 id="dag">Graph</h2>',
        _diagram(run),
        '<h2 id="timeline">Timeline</h2>',
        _timeline(run, compare_with),
        '<h2 id="agents">Cost and latency per agent</h2>',
        _agents_table(s),
        '<h2 id="slowest">Slowest nodes and the critical path</h2>',
        f"<p>Critical path as it ran: the chain each of whose nodes waited for the one before"
        f" ({s.realised_time:.2f}s of work, {s.realised_share:.0%} of the wall time): "
        f'<span class="path">{e(" → ".join(s.realised_path) or "(none)")}</span>. '
        f"Longest chain by node time: {s.critical_time:.2f}s.</p>",
        _slowest_table(s),
        '<h2 id="failures">Failures, skips and retries</h2>',
        _failures(s),
        '<h2 id="messages">Messages and tool calls</h2>',
        _messages(s),
        '<h2 id="nodes">Every node</h2>',
        _nodes_table(run),
        *(['<h2 id="outputs">Outputs and prompts</h2>', _outputs(details)] if details else []),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(
    run: RunData,
    path: str | os.PathLike[str],
    compare_with: RunData | None = None,
    details: Mapping[str, NodeDetail] | None = None,
) -> Path:
    """Write the report for `run` to `path` (parent folders are created)."""
    out = Path(path)
    page = report_html(run, compare_with, details)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write report '{out}': {exc.strerror}.") from None
    return out


# ------------------------------------------------------------------ sections
def _cards(s: Summary) -> str:
    cards = [
        (f"{s.wall:.2f}s", "wall time"),
        (f"${s.cost:.4f}", "cost"),
        (f"{s.input_tokens:,} / {s.output_tokens:,}", "tokens in / out"),
        (f"{s.efficiency:.0%}", "parallel efficiency"),
        (f"{s.realised_share:.0%}", "critical path share"),
        (str(len(s.failures)), "failed nodes"),
        (str(len(s.retries)), "retries"),
        (str(s.cache_hits), "cache hits"),
    ]
    if s.saved_by_prompt_cache or s.batch_calls:
        cards += [
            (f"${s.saved_by_prompt_cache:.4f}", "saved by prompt caching"),
            (f"${s.saved_by_batch:.4f}", f"saved by batching ({s.batch_calls} calls)"),
        ]
    body = "".join(
        f'<div class="card"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>'
        for v, k in cards
    )
    return f'<div class="cards">{body}</div>'


def _diagram(run: RunData) -> str:
    if len(run.nodes) > MAX_DIAGRAM_NODES:  # Graphviz layout of thousands of nodes takes minutes
        return (
            f"<p>{len(run.nodes):,} nodes are too many to lay out here; draw them with "
            f"<code>dagagents render {html.escape(run.run_id)} -f svg -o dag.svg</code>.</p>"
        )
    diagram = diagram_from_run(run)
    try:
        return f'<div class="diagram">{svg_inline(diagram)}</div>'
    except UserError as exc:  # Graphviz missing: say so and keep the Mermaid text
        return f"<p>{html.escape(str(exc))}</p><pre>{html.escape(to_mermaid(diagram))}</pre>"


def _timeline(run: RunData, compare_with: RunData | None) -> str:
    from dagagents.observe.timeline import (
        timeline_png_bytes,
    )  # matplotlib: import only when drawing

    png = base64.b64encode(timeline_png_bytes(run, compare_with, dpi=100)).decode()
    alt = f"timeline of run {run.run_id}: one bar per node in start order"
    return f'<img class="timeline" alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Iterable[int] = ()
) -> str:
    nums = set(numeric)
    head = "".join(
        f"<th{' class=num' if i in nums else ''}>{html.escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = "".join(
            f"<td{' class=num' if i in nums else ''}>{cell}</td>" for i, cell in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return "<p>None.</p>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _status(status: str) -> str:
    colour = STATUS_COLOUR.get(status, "#1f2328")
    return f'<span class="status" style="color:{colour}">{html.escape(status)}</span>'


def _agents_table(s: Summary) -> str:
    e = html.escape
    rows = [
        (
            e(a.agent),
            e(", ".join(a.models)),
            str(a.nodes),
            str(a.calls),
            f"{a.input_tokens:,}",
            f"{a.output_tokens:,}",
            f"${a.cost:.4f}",
            f"{a.p50:.2f}s" if a.nodes > a.failed else "–",
            f"{a.p95:.2f}s" if a.nodes > a.failed else "–",
            f"{a.time:.2f}s",
            e(
                "; ".join(
                    x
                    for x in (
                        f"{a.cached} cached" if a.cached else "",
                        f"{a.failed} failed" if a.failed else "",
                        (f"{a.retries} retr" + ("y" if a.retries == 1 else "ies"))
                        if a.retries
                        else "",
                    )
                    if x
                )
            ),
        )
        for a in s.agents
    ]
    headers = (
        "agent",
        "model",
        "nodes",
        "calls",
        "tokens in",
        "tokens out",
        "cost",
        "p50",
        "p95",
        "total time",
        "notes",
    )
    return _table(headers, rows, numeric=range(2, 10))


def _slowest_table(s: Summary) -> str:
    e = html.escape
    on_path = set(s.realised_path)
    rows = [
        (
            e(n.name) + (" ★" if n.name in on_path else ""),
            e(f"{n.agent} · {n.model}" if n.agent else n.kind),
            _status(n.status),
            f"{n.duration:.2f}s",
            f"{n.duration / s.wall:.0%}" if s.wall else "",
        )
        for n in s.slowest
    ]
    return _table(
        ("node (★ on the critical path)", "agent · model", "status", "time", "share of wall"),
        rows,
        numeric=(3, 4),
    )


def _failures(s: Summary) -> str:
    e = html.escape
    rows = [(e(n), _status("failed"), e(err)) for n, err in s.failures]
    rows += [(e(n), _status("skipped"), e(f"because {why}")) for n, why in s.skipped]
    out = _table(("node", "status", "error / reason"), rows)
    if s.retries:
        retry_rows = [
            (
                e(str(r["node"])),
                str(r["attempt"]),
                f"{r.get('wait') or 0:.2f}s",
                f"{r.get('t') or 0:.2f}s",
                e(str(r["error"])),
            )
            for r in s.retries
        ]
        out += "<h3>Retries</h3>" + _table(
            ("node", "attempt", "wait", "at", "error"), retry_rows, numeric=(1, 2, 3)
        )
    return out


def _messages(s: Summary) -> str:
    e = html.escape
    text = f"<p>{s.messages} output(s) delivered along edges."
    if s.undelivered:
        text += (
            " Not delivered (destination skipped): "
            + ", ".join(e(f"{a} → {b}") for a, b in s.undelivered)
            + "."
        )
    text += "</p>"
    tool_rows = [
        (e(a.agent), e(tool), str(count))
        for a in s.agents
        for tool, count in sorted(a.tools.items())
    ]
    return text + (
        _table(("agent", "tool", "calls"), tool_rows, numeric=(2,))
        if tool_rows
        else "<p>No tool calls.</p>"
    )


def _nodes_table(run: RunData) -> str:
    e = html.escape
    nodes = run.start_order() + [n for n in run.nodes.values() if n.start is None]
    rows = [
        (
            e(n.name),
            _status(n.status),
            e(f"{n.agent} · {n.model}" if n.agent else n.kind),
            f"{n.start:.2f}s" if n.start is not None else "",
            f"{n.duration:.2f}s" if n.ran else "",
            f"{n.usage.input_tokens:,} / {n.usage.output_tokens:,}"
            if n.calls and n.status == "done"
            else "",
            f"${n.cost_usd:.4f}" if n.cost_usd and n.status == "done" else "",
            e(n.error or (f"because {n.because}" if n.because else "")),
        )
        for n in nodes[:MAX_NODE_ROWS]
    ]
    more = (
        f"<p>… and {len(nodes) - MAX_NODE_ROWS} more nodes.</p>"
        if len(nodes) > MAX_NODE_ROWS
        else ""
    )
    return (
        _table(
            ("node", "status", "agent · model", "start", "time", "tokens in / out", "cost", "note"),
            rows,
            numeric=(3, 4, 5, 6),
        )
        + more
    )


def _outputs(details: Mapping[str, NodeDetail]) -> str:
    """Each node's output, collapsed; long ones cut with the whole text one click away."""
    e = html.escape
    parts = []
    for d in list(details.values())[:MAX_OUTPUTS]:
        head = f"<b>{e(d.name)}</b> · {_status(d.status)} · {e(d.preview)}"
        body = []
        text = d.text
        if not d.has_output:
            body.append(f"<p>{e(d.note or 'no output')}</p>")
        elif len(text) <= OUTPUT_SHOWN:
            body.append(f'<pre class="output">{e(text)}</pre>')
        else:
            body.append(f'<pre class="output">{e(text[:OUTPUT_SHOWN])} …</pre>')
            body.append(
                f"<details><summary>the full text ({len(text):,} characters)</summary>"
                f'<pre class="output-full">{e(text)}</pre></details>'
            )
        if d.prompt is not None:
            body.append(
                "<details><summary>prompt</summary>"
                f'<pre class="system">{e(d.system or "(no system prompt)")}</pre>'
                f'<pre class="prompt">{e(d.prompt)}</pre></details>'
            )
        parts.append(
            f'<details class="node-output" id="out-{e(d.name)}"><summary>{head}</summary>'
            + "".join(body)
            + "</details>"
        )
    if len(details) > MAX_OUTPUTS:
        parts.append(f"<p>… and {len(details) - MAX_OUTPUTS} more nodes (dagagents show).</p>")
    return "\n".join(parts)
