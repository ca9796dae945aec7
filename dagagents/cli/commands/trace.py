"""`dagagents trace summary|show`: where a run's time and money went, and what happened when."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from dagagents.cli.app import app, console, user_errors
from dagagents.observe.progress import STYLE
from dagagents.observe.summary import AgentStats, RunData, Summary, load_run, summarize

trace_app = typer.Typer(
    help="Read a run's trace: summary figures or the event timeline.", no_args_is_help=True
)
app.add_typer(trace_app, name="trace")

RunArg = Annotated[
    str | None,
    typer.Argument(help="Run id (or prefix, or 'latest'), a run folder, or a trace .jsonl file."),
]
StoreOpt = Annotated[str, typer.Option(help="Checkpoint store holding the runs.")]


@trace_app.command("summary")
def summary_command(
    run: RunArg = None,
    store: StoreOpt = ".dagagents",
    top: Annotated[int, typer.Option(help="How many of the slowest nodes to list.")] = 5,
) -> None:
    """Per agent calls, tokens, cost and latency; slowest nodes; critical path; retries;
    failures; parallel efficiency."""
    with user_errors():
        data = load_run(run, store)
    console.print(summary_renderable(summarize(data, top=top)))


@trace_app.command("show")
def show_command(
    run: RunArg = None,
    store: StoreOpt = ".dagagents",
    node: Annotated[str | None, typer.Option(help="Only events about this node.")] = None,
    event: Annotated[
        list[str] | None, typer.Option("--event", "-e", help="Only this event kind (repeatable).")
    ] = None,
) -> None:
    """Every event of a run in order: when each node became ready, started, retried, called
    a tool, received a message, finished or failed."""
    with user_errors():
        data = load_run(run, store)
    console.print(events_table(data, node=node, kinds=set(event or ())))


# ------------------------------------------------------------------ renderables
def _agent_notes(a: AgentStats) -> str:
    """The notes column of one agent's row: cached, failed, retries, tools."""
    notes = []
    if a.cached:
        notes.append(f"{a.cached} cached")
    if a.failed:
        notes.append(f"{a.failed} failed")
    if a.retries:
        notes.append(f"{a.retries} retr" + ("y" if a.retries == 1 else "ies"))
    if a.tools:
        notes.append("tools " + ", ".join(f"{t}x{c}" for t, c in sorted(a.tools.items())))
    return "; ".join(notes)


def summary_renderable(s: Summary) -> RenderableType:
    """The summary as rich tables (also used after `dagagents run` by extensions)."""
    parts: list[RenderableType] = []
    sim = " (simulated provider)" if s.provider == "simulated" else ""
    counts = ", ".join(f"{v} {k}" for k, v in sorted(s.counts.items()))
    head = Text(f"run {s.run_id} · {s.graph} · {s.status}{sim}\n", style="bold")
    head.append(
        f"{counts} · wall {s.wall:.2f}s · cost ${s.cost:.4f} · tokens "
        f"{s.input_tokens:,} in / {s.output_tokens:,} out · concurrency {s.concurrency}\n",
        style="",
    )
    head.append(
        f"parallel efficiency {s.efficiency:.0%} (node time {s.node_time:.2f}s / "
        f"(wall {s.wall:.2f}s x {s.concurrency} slots))",
        style="",
    )
    if s.cache_hits:
        head.append(f" · {s.cache_hits} cache hit(s) saved ${s.saved_cost:.4f}")
    if s.saved_by_prompt_cache or s.batch_calls:
        head.append(
            f"\nprompt caching saved ${s.saved_by_prompt_cache:.4f} · batching saved "
            f"${s.saved_by_batch:.4f} ({s.batch_calls} batch calls)"
        )
    for line in s.warming:
        head.append(f"\ncache warming: {line}")
    parts.append(head)

    agents = Table(title="per agent (most expensive first)", title_justify="left")
    for col in ("agent", "model", "nodes", "calls", "tokens in / out", "cost", "p50", "p95"):
        agents.add_column(col, justify="left" if col in ("agent", "model") else "right")
    agents.add_column("notes")
    for a in s.agents:
        agents.add_row(
            a.agent,
            ", ".join(a.models),
            str(a.nodes),
            str(a.calls),
            f"{a.input_tokens:,} / {a.output_tokens:,}",
            f"${a.cost:.4f}",
            f"{a.p50:.2f}s" if a.nodes > a.failed else "–",
            f"{a.p95:.2f}s" if a.nodes > a.failed else "–",
            _agent_notes(a),
        )
    parts.append(agents)

    slow = Table(title=f"slowest {len(s.slowest)} node(s)", title_justify="left")
    for col in ("node", "agent · model", "status", "time", "share of wall"):
        slow.add_column(col, justify="right" if col in ("time", "share of wall") else "left")
    for n in s.slowest:
        slow.add_row(
            n.name,
            f"{n.agent} · {n.model}" if n.agent else n.kind,
            Text(n.status, style=STYLE.get(n.status, "")),
            f"{n.duration:.2f}s",
            f"{n.duration / s.wall:.0%}" if s.wall else "",
        )
    parts.append(slow)

    parts.append(
        Text.assemble(
            ("critical path ", "bold"),
            f"({s.critical_time:.2f}s, {s.critical_share:.0%} of the wall time): ",
            " -> ".join(s.critical_path) or "(none)",
        )
    )
    parts.append(
        Text(
            f"messages delivered along edges: {s.messages}"
            + (
                "; undelivered (destination skipped): "
                + ", ".join(f"{a}->{b}" for a, b in s.undelivered)
                if s.undelivered
                else ""
            )
        )
    )
    if s.retries:
        retries = Table(title=f"retries ({len(s.retries)})", title_justify="left")
        for col in ("node", "attempt", "wait", "error"):
            retries.add_column(col, overflow="fold")
        for r in s.retries:
            retries.add_row(
                str(r["node"]), str(r["attempt"]), f"{r.get('wait') or 0:.2f}s", str(r["error"])
            )
        parts.append(retries)
    if s.structure:
        parts.append(Text("maps, loops, conditions\n  " + "\n  ".join(s.structure)))
    if s.failures or s.skipped:
        fails = Table(title="failures and skips", title_justify="left")
        fails.add_column("node")
        fails.add_column("status")
        fails.add_column("why", overflow="fold")
        for name, error in s.failures:
            fails.add_row(name, Text("failed", style=STYLE["failed"]), error)
        for name, because in s.skipped:
            fails.add_row(name, Text("skipped", style=STYLE["skipped"]), f"because {because}")
        parts.append(fails)
    return Group(*parts)


_SKIP_FIELDS = {"v", "event", "run", "ts", "t", "node", "src", "dst"}


def events_table(data: RunData, *, node: str | None = None, kinds: set[str]) -> Table:
    """The trace as a table: time, event, node, and the event's other fields."""
    table = Table(title=f"run {data.run_id} · {data.graph} · events", title_justify="left")
    table.add_column("t", justify="right")
    table.add_column("event")
    table.add_column("node")
    table.add_column("details", overflow="fold")
    for e in data.events:
        if kinds and e["event"] not in kinds:
            continue
        subject = e.get("node") or (f"{e['src']} -> {e['dst']}" if "src" in e else "")
        if node is not None and node not in (e.get("node"), e.get("src"), e.get("dst")):
            continue
        details = ", ".join(
            f"{k}={_short(v)}" for k, v in e.items() if k not in _SKIP_FIELDS and v is not None
        )
        style = {
            "node_error": STYLE["failed"],
            "node_skipped": STYLE["skipped"],
            "cache_hit": STYLE["cached"],
            "node_complete": STYLE["done"],
            "retry": "yellow",
        }.get(e["event"], "")
        table.add_row(f"{e.get('t', 0.0):.3f}", Text(e["event"], style=style), subject, details)
    return table


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and len(value) == 64 and value.isalnum():
        return value[:12]  # a checkpoint key
    if isinstance(value, dict):
        text = ", ".join(f"{k}={v}" for k, v in value.items() if v)
        text = "{" + text + "}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
