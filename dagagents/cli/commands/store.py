"""`dagagents status` and `dagagents gc`: what the store holds and what a rerun would do."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from dagagents.cli.app import EXIT_FAILED, app, console, fail, load_target, user_errors
from dagagents.errors import StoreUnwritable
from dagagents.observe.progress import STYLE
from dagagents.observe.resume import CACHED, COMPUTE, MAYBE, plan_from_run, plan_resume, run_nodes
from dagagents.store import Store, run_state

NEXT_STYLE = {CACHED: "cyan", COMPUTE: "bold", MAYBE: "yellow", "new": "bold"}


@app.command()
def status(
    run: Annotated[
        str | None, typer.Argument(help="Run id (or prefix); default: the latest.")
    ] = None,
    store: Annotated[str, typer.Option(help="Checkpoint store.")] = ".dagagents",
    graph: Annotated[
        str | None,
        typer.Option(help="Graph file: judge the next run from it (exact, sees edits)."),
    ] = None,
) -> None:
    """A run's nodes with state, key prefix, duration and cost, and what a rerun would compute.

    Without --graph the next run is judged from the run's own records and the store, assuming
    the graph is unchanged."""
    with user_errors():
        st = Store(store, create=False)
        manifest = st.read_manifest(run)
        run_id = manifest["run_id"]
        state = run_state(manifest)
        nodes = run_nodes(st, run_id, manifest)
        if graph is not None:
            g = load_target(graph)
            would = plan_resume(g, st)
            for name in g.specs:
                nodes.setdefault(name, {"status": "not run"})
        else:
            would = plan_from_run(st, nodes)
    console.print(_table(manifest, state, nodes, would))
    _print_next(would, state, complete=graph is not None or state not in ("running", "killed"))


def _table(
    manifest: dict[str, Any], state: str, nodes: dict[str, dict[str, Any]], would: dict[str, str]
) -> Table:
    table = Table(
        title=f"run {manifest['run_id']} · {manifest.get('graph', '?')} · {state}",
        title_justify="left",
    )
    for col in ("node", "state", "key", "duration", "cost", "note", "next run"):
        table.add_column(col, justify="right" if col in ("duration", "cost") else "left")
    total = 0.0
    for name, node in nodes.items():
        s = node.get("status", "pending")
        if s == "done":
            total += node.get("cost_usd") or 0.0
        nxt = would.get(name, "new")
        table.add_row(
            name,
            Text(s, style=STYLE.get(s, "")),
            (node.get("key") or "")[:12],
            f"{node['duration']:.2f}s" if node.get("duration") else "",
            f"${node['cost_usd']:.4f}" if s == "done" and node.get("cost_usd") else "",
            _note(node),
            Text(nxt, style=NEXT_STYLE.get(nxt, "")),
        )
    wall = manifest.get("wall")
    if state == "killed":
        table.caption = f"run was killed · cost so far ${total:.4f}"
    elif state == "running":
        table.caption = f"still running · cost so far ${total:.4f}"
    else:
        table.caption = f"wall {wall or 0.0:.2f}s · cost ${total:.4f}"
    table.caption_justify = "left"
    return table


def _note(node: dict[str, Any]) -> str:
    if node.get("error"):
        return str(node["error"])
    if node.get("because"):
        return f"because {node['because']}"
    if node.get("status") == "cached" and node.get("cost_usd"):
        return f"saved ${node['cost_usd']:.4f}"
    return ""


def _print_next(would: dict[str, str], state: str, *, complete: bool) -> None:
    todo = sorted(n for n, s in would.items() if s == COMPUTE)
    maybe = sorted(n for n, s in would.items() if s == MAYBE)
    cached = sum(1 for s in would.values() if s == CACHED)
    console.print(
        f"a rerun would compute {len(todo)} node(s): {', '.join(todo) or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
    if maybe:
        console.print(
            f"and {len(maybe)} below them only if their inputs change: {', '.join(maybe)}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"{cached} node(s) would come from checkpoints", highlight=False)
    if not complete:
        console.print(
            f"the run is {state}: nodes it never started are not listed "
            "(pass --graph FILE to judge every node)",
            highlight=False,
        )


@app.command()
def gc(
    store: Annotated[str, typer.Option(help="Checkpoint store.")] = ".dagagents",
    keep_runs: Annotated[int, typer.Option(help="Keep the newest N runs.")] = 10,
) -> None:
    """Delete runs beyond the newest N and every object no kept run references.

    A run holding Message Batches nobody collected (a killed `--batch` run) is kept until a
    rerun collects them, or until the API's 29 days of keeping results are over."""
    with user_errors():
        try:
            result = Store(store, create=False).gc(keep_runs=keep_runs)
        except StoreUnwritable as exc:
            fail(f"{exc}: gc removed nothing.", code=EXIT_FAILED)
    console.print(
        f"removed {result.objects_removed} object(s) and {result.runs_removed} run(s), "
        f"freed {result.bytes_freed:,} bytes; kept {result.objects_kept} object(s)",
        highlight=False,
    )
    if result.runs_spared:
        console.print(
            f"kept {result.runs_spared} older run(s) whose Message Batches were never "
            "collected: their next run collects the results instead of paying again",
            highlight=False,
        )
