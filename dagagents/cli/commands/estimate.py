"""`dagagents estimate GRAPH`: predicted wall time, cost and coordination overhead, before spending."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from dagagents.cli.app import app, console, load_target, user_errors
from dagagents.cli.commands.run import cache_warming_option
from dagagents.engine.cache_warming import CacheWarming
from dagagents.errors import UserError
from dagagents.observe.estimate import Estimate, SharedPrefix, estimate
from dagagents.store import Store


@app.command("estimate")
def estimate_command(
    target: Annotated[str, typer.Argument(help="Graph file (graphs/x.py[:attr]) or plan.json.")],
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Nodes at once, as for `run`.")
    ] = 8,
    store: Annotated[
        str, typer.Option(help="Checkpoint store whose earlier runs calibrate the estimate.")
    ] = ".dagagents",
    workers: Annotated[
        str | None, typer.Option(help="Workers module for plan files (graphs/workers.py).")
    ] = None,
    nodes: Annotated[bool, typer.Option("--nodes", help="Also list every node's figures.")] = False,
    usd_per_second: Annotated[
        float | None,
        typer.Option(
            help="Cache warming's worth of one second of delay, as for `run` (default 0.01).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Predict wall time (with the concurrency limit) vs sequential, cost per model, and whether
    parallelism saves more than the planner and synthesis calls cost. Calls nothing."""
    with user_errors():
        if concurrency < 1:
            raise UserError(f"--concurrency must be at least 1 (got {concurrency}).")
        warming = cache_warming_option(False, usd_per_second)
        graph = load_target(target, workers=workers)
        result = estimate(
            graph,
            concurrency=concurrency,
            store=Store.existing(store),
            warming=warming if isinstance(warming, CacheWarming) else None,
        )
    console.print(estimate_renderable(result, show_nodes=nodes))


def estimate_renderable(e: Estimate, *, show_nodes: bool = False) -> RenderableType:
    total = len(e.nodes)
    basis = (
        f"{e.from_history} of {total} node(s) timed from earlier runs "
        f"({', '.join(e.history_runs[:3])}{', …' if len(e.history_runs) > 3 else ''})"
        if e.from_history
        else f"no earlier runs of '{e.graph}' in the store: durations from token budgets"
    )
    head = Text(f"estimate for {e.graph} · {total} nodes · concurrency {e.concurrency}\n", "bold")
    head.append(basis, style="dim")
    if e.expanded_from:
        head.append(f"\nplanned subtasks taken from run {e.expanded_from}", style="dim")
    parts: list[RenderableType] = [head]

    times = Table(title="wall time", title_justify="left", show_header=False)
    times.add_column("what")
    times.add_column("seconds", justify="right")
    times.add_row(f"predicted, {e.concurrency} at once", f"{e.wall:.2f}s")
    times.add_row("sequential (one at a time)", f"{e.sequential:.2f}s")
    times.add_row("critical path (lower bound)", f"{e.critical_time:.2f}s")
    times.add_row("parallelism saves", f"{e.saved:.2f}s ({e.speedup:.1f}x)")
    parts.append(times)

    costs = Table(title="predicted cost per model", title_justify="left")
    for col in ("model", "calls", "tokens in / out", "cost"):
        costs.add_column(col, justify="left" if col == "model" else "right")
    tokens = e.tokens_by_model()
    calls: dict[str, int] = {}
    for n in e.nodes.values():
        if n.model:
            calls[n.model] = calls.get(n.model, 0) + 1
    for model, dollars in e.cost_by_model().items():
        tin, tout = tokens.get(model, (0, 0))
        costs.add_row(model, str(calls[model]), f"{tin:,} / {tout:,}", f"${dollars:.4f}")
    costs.add_row("total", str(sum(calls.values())), "", f"${e.cost:.4f}", style="bold")
    parts.append(costs)

    coord = e.coordination
    line = Text("coordination overhead: ", style="bold")
    if coord:
        line.append(
            f"{len(coord)} call(s) ({', '.join(f'{n.name} [{n.role}]' for n in coord)}) take "
            f"{e.coordination_time:.2f}s and ${e.coordination_cost:.4f} "
            f"({e.coordination_cost / e.cost:.0%} of the cost)"
            if e.cost
            else f"{len(coord)} call(s) take {e.coordination_time:.2f}s"
        )
    else:
        line.append("no planner or synthesis nodes")
    line.append(f"; parallelism saves {e.saved:.2f}s")
    parts.append(line)
    parts.extend(_shared_prefix_line(shared) for shared in e.shared_prefixes)
    if e.cost:
        parts.append(
            Text(
                f"batch mode (--batch, for work that can wait up to 24 h): "
                f"${e.batch_cost:.4f} instead of ${e.cost:.4f}"
            )
        )
    for assumption in e.assumptions:
        parts.append(Text(f"note: {assumption}.", style="yellow"))
    if e.unseen_expansions:
        parts.append(
            Text(
                f"note: {', '.join(e.unseen_expansions)} expands the graph at run time; the "
                "estimate cannot see the planned subtasks yet and covers only the nodes above.",
                style="yellow",
            )
        )
    if e.cached:
        parts.append(
            Text(
                f"note: {len(e.cached)} node(s) are already checkpointed in the store; a rerun "
                "without --fresh skips them (this estimate is for a fresh run).",
                style="dim",
            )
        )
    if show_nodes:
        table = Table(title="nodes", title_justify="left")
        for col in ("node", "role", "agent · model", "time", "tokens in / out", "cost", "from"):
            table.add_column(col, justify="right" if col in ("time", "cost") else "left")
        for n in e.nodes.values():
            table.add_row(
                n.name,
                n.role,
                f"{n.agent} · {n.model}" if n.agent else n.kind,
                f"{n.duration:.2f}s",
                f"{n.input_tokens:,} / {n.output_tokens:,}" if n.model else "",
                f"${n.cost:.4f}" if n.model else "",
                n.source,
            )
        parts.append(table)
    parts.append(Text.assemble(("recommendation: ", "bold green"), e.recommendation()))
    return Group(*parts)


def _shared_prefix_line(shared: SharedPrefix) -> Text:
    """What cache warming saves on one shared prefix, and who the critical-path rule sends
    at once (engine/cache_warming.py)."""
    reads = len(shared.nodes) - 1 - len(shared.released)
    line = Text(
        f"prompt cache: {len(shared.nodes)} calls of '{shared.agent}' ({shared.model}) "
        f"share a ~{shared.tokens:,}-token prefix; cache warming (on by default) writes "
        f"it once and reads it {'once' if reads == 1 else f'{reads} times'}, saving up to "
        f"${shared.saving:.4f}"
    )
    if shared.delay:
        line.append(f" for up to {shared.delay:.2f}s more wall time")
    if shared.released:
        line.append(
            f"; {', '.join(shared.released)} on the critical path would not wait (the "
            "wait would cost more than it saves) and write it too"
        )
    return line
