"""`dagagents status` and `dagagents gc`: what the store holds and what a rerun would do."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from dagagents.cli.app import app, console, load_target, user_errors
from dagagents.progress import STYLE
from dagagents.store import Store
from dagagents.trace import nodes_from_trace


@app.command()
def status(
    run: Annotated[
        str | None, typer.Argument(help="Run id (or prefix); default: the latest.")
    ] = None,
    store: Annotated[str, typer.Option(help="Checkpoint store.")] = ".dagagents",
    graph: Annotated[
        str | None, typer.Option(help="Graph file: also show which nodes a rerun would compute.")
    ] = None,
) -> None:
    """A run's nodes with state, key prefix, duration and cost."""
    with user_errors():
        st = Store(store)
        manifest = st.read_manifest(run)
        would = None
        if graph is not None:
            from dagagents.resume import plan_resume

            would = plan_resume(load_target(graph), st)
    table = Table(
        title=f"run {manifest['run_id']} · {manifest['graph']} · {manifest['status']}",
        title_justify="left",
    )
    for col in ("node", "state", "key", "duration", "cost", "note"):
        table.add_column(col, justify="right" if col in ("duration", "cost") else "left")
    if would is not None:
        table.add_column("next run")
    total = 0.0
    nodes = manifest.get("nodes")
    if nodes is None:  # killed or still running: rebuild from the trace
        nodes = nodes_from_trace(st.read_trace(manifest["run_id"]))
    for name, node in nodes.items():
        s = node["status"]
        total += node.get("cost_usd") or 0.0 if s == "done" else 0.0
        row = [
            name,
            Text(s, style=STYLE.get(s, "")),
            (node.get("key") or "")[:12],
            f"{node['duration']:.2f}s" if node.get("duration") else "",
            f"${node['cost_usd']:.4f}" if node.get("cost_usd") else "",
            node.get("error") or (f"because {node['because']}" if node.get("because") else ""),
        ]
        if would is not None:
            row.append(would.get(name, "new"))
        table.add_row(*row)
    wall = manifest.get("wall")
    table.caption = (
        f"wall {wall:.2f}s · cost ${total:.4f}"
        if wall
        else "run did not finish (killed or still running)"
    )
    table.caption_justify = "left"
    console.print(table)
    if would is not None:
        todo = sorted(n for n, s in would.items() if s != "cached")
        console.print(f"a rerun would compute {len(todo)} node(s): {', '.join(todo) or 'none'}")


@app.command()
def gc(
    store: Annotated[str, typer.Option(help="Checkpoint store.")] = ".dagagents",
    keep_runs: Annotated[int, typer.Option(help="Keep the newest N runs.")] = 10,
) -> None:
    """Delete runs beyond the newest N and every object no kept run references."""
    with user_errors():
        removed, freed, runs = Store(store).gc(keep_runs=keep_runs)
    console.print(f"removed {removed} object(s) and {runs} run(s), freed {freed:,} bytes")
