"""`dagagents limits`: what the processes sharing limits through Redis hold right now."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from dagagents.cli.app import app, console, styled, user_errors
from dagagents.engine.shared_limits import (
    ENV_URL,
    redact_url,
    reset_budget,
    resolve_limits,
    snapshot,
)
from dagagents.errors import UserError


@app.command("limits")
def limits_command(
    limits: Annotated[
        str | None,
        typer.Option(
            help="The shared limits store: redis://HOST:PORT/DB (env DAGAGENTS_LIMITS_URL).",
            show_default=False,
        ),
    ] = None,
    limits_key: Annotated[
        str | None, typer.Option(help="Only this limits key (default: every key).")
    ] = None,
    budget_key: Annotated[
        str | None, typer.Option(help="Only this budget (default: every budget).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
    reset_budget_name: Annotated[
        str | None,
        typer.Option(
            "--reset-budget",
            help="Forget this shared budget's spend (e.g. a new month), then show the state.",
        ),
    ] = None,
) -> None:
    """Show the shared limits: bucket levels per model, leases by host and pid, budgets."""
    with user_errors():
        config = resolve_limits(limits)
        if config is None:
            raise UserError(f"no limits store given: pass --limits redis://... or set {ENV_URL}.")
        if reset_budget_name is not None:
            if not asyncio.run(reset_budget(config, reset_budget_name)):
                raise UserError(f"no shared budget named '{reset_budget_name}' to reset.")
            if not as_json:
                console.print(f"budget '{reset_budget_name}' reset", highlight=False)
        state = asyncio.run(snapshot(config, limits_key, budget_key))
    if as_json:
        print(orjson.dumps(state, option=orjson.OPT_INDENT_2).decode())
        return
    console.print(styled("shared limits at ", (redact_url(config.url), "bold")), highlight=False)
    if not state["keys"] and not state["budgets"]:
        console.print("nothing shared yet: no process has used this store.")
        return
    if state["keys"]:
        console.print(_models_table(state["keys"]))
        for entry in state["keys"]:
            asked = entry.get("concurrency_asked") or {}
            if len(set(asked.values())) > 1:  # processes disagree: say which value applies
                who = ", ".join(f"{n} ({proc})" for proc, n in sorted(asked.items()))
                console.print(
                    f"key {entry['key']}: processes asked for --concurrency {who}; the "
                    f"smallest, {entry['concurrency']}, applies to every process on the key.",
                    highlight=False,
                )
    if state["budgets"]:
        console.print(_budgets_table(state["budgets"]))


def _models_table(keys: list[dict[str, Any]]) -> Table:
    table = Table(title="rate limits per key and model family", title_justify="left")
    for column in ("key", "model", "requests", "input tok", "output tok", "leases", "held by"):
        table.add_column(column, justify="right" if column in ("leases",) else "left")
    table.add_column("concurrency", justify="right")
    table.add_column("paused s", justify="right")
    table.add_column("calls / 429s", justify="right")
    for entry in keys:
        for m in entry["models"]:
            buckets = m["buckets"]
            cells = []
            for kind in ("requests", "input_tokens", "output_tokens"):
                b = buckets.get(kind)
                if b is None:
                    cells.append("-")
                    continue
                text = f"{b['level']:.1f}"
                if b.get("per_minute"):
                    text += f" of {b['per_minute']:g}/min"
                if "server_limit" in b:
                    text += f" (server says {b['server_limit']:g}/min)"
                cells.append(text)
            holders = ", ".join(f"{who} x{n}" for who, n in sorted(m["holders"].items()))
            limit, ceiling = m["concurrency_limit"], entry.get("concurrency")
            if limit is None:  # not reduced by 429s: the smallest --concurrency asked for
                shown = "-" if ceiling is None else str(ceiling)
            else:  # halved by 429s (AIMD), growing back towards the ceiling
                shown = f"{limit:.2f}" + ("" if ceiling is None else f" of {ceiling}")
            table.add_row(
                entry["key"],
                m["family"],
                *cells,
                str(m["leases"]),
                holders or "-",
                shown,
                f"{m['paused_for_s']:g}",
                f"{m['calls']} / {m['overloads']}",
            )
    return table


def _budgets_table(budgets: list[dict[str, Any]]) -> Table:
    table = Table(title="shared budgets", title_justify="left")
    # "lapsed": reservations of processes that died holding them, counted as spent at their
    # worst case (the API may have answered before the process died).
    for column in ("budget", "spent $", "reserved $", "max $", "refused calls", "lapsed"):
        table.add_column(column, justify="left" if column == "budget" else "right")
    for b in budgets:
        table.add_row(
            b["budget"],
            f"{b['spent_usd']:.6f}",
            f"{b['reserved_usd']:.6f}",
            "-" if b["max_usd"] is None else f"{b['max_usd']:.4f}",
            str(b["refused"]),
            f"{b['lapsed']} (${b['lapsed_usd']:.6f})" if b["lapsed"] else "-",
        )
    return table
