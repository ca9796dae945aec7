"""`dagagents show [RUN] [NODE]`: read what an agent said (and, with --prompt, what it was asked)."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer
from rich.table import Table
from rich.text import Text

from dagagents.cli.app import app, console, fail, user_errors
from dagagents.errors import StoreError
from dagagents.model.graph import did_you_mean
from dagagents.observe.outputs import node_detail, run_details
from dagagents.observe.progress import STYLE
from dagagents.observe.resume import run_nodes
from dagagents.store import Store, run_state


@app.command()
def show(
    first: Annotated[
        str | None,
        typer.Argument(
            metavar="[RUN] [NODE]",
            help="Run id (or prefix, or 'latest'; default the latest) and/or a node name.",
        ),
    ] = None,
    second: Annotated[str | None, typer.Argument(hidden=True)] = None,
    prompt: Annotated[
        bool, typer.Option("--prompt", help="Also print the prompt and system prompt sent.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    store: Annotated[str, typer.Option(help="Checkpoint store.")] = ".dagagents",
) -> None:
    """A node's output (exact, from the store), or every node of a run with a one-line preview."""
    with user_errors():
        st = Store(store, create=False)
        run, node = _split(st, first, second)
        manifest = st.read_manifest(run)
        run_id = manifest["run_id"]
        nodes = run_nodes(st, run_id, manifest)
        if node is None:
            details = run_details(st, nodes)
            if as_json:
                payload = {
                    "run": run_id,
                    "graph": manifest.get("graph"),
                    "status": run_state(manifest),
                    "nodes": [d.to_json() for d in details.values()],
                }
                sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
                return
            table = Table(
                title=f"run {run_id} · {manifest.get('graph', '?')} · {run_state(manifest)}",
                title_justify="left",
            )
            for col in ("node", "state", "agent · model", "output"):
                table.add_column(col, overflow="ellipsis", no_wrap=col == "output")
            for d in details.values():
                table.add_row(
                    d.name,
                    Text(d.status, style=STYLE.get(d.status, "")),
                    f"{d.agent} · {d.model}" if d.agent else d.kind,
                    Text(d.preview, style="" if d.has_output else "dim"),
                )
            table.caption = f"dagagents show {run_id} NODE [--prompt] prints one output in full"
            table.caption_justify = "left"
            console.print(table)
            return
        if node not in nodes:
            fail(
                f"run '{run_id}' has no node '{node}'"
                f"{did_you_mean(node, nodes) or '; its nodes are: ' + ', '.join(list(nodes)[:20])}."
            )
        detail = node_detail(st, node, nodes[node])
    if as_json:
        sys.stdout.write(orjson.dumps(detail.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if prompt:
        if detail.prompt is None:
            what = "a step (no prompt)" if detail.kind == "step" else "recorded without its prompt"
            if not detail.has_output:
                what = f"without a stored output ({detail.note})"
            console.print(f"# {node}: {what}", highlight=False, style="dim")
        else:
            _section("system", detail.system or "(none)")
            _section("prompt", detail.prompt)
            _section("output", None)
    if not detail.has_output:
        fail(f"node '{node}' of run '{run_id}' has no output: {detail.note}.", code=1)
    sys.stdout.write(detail.text if detail.text.endswith("\n") else detail.text + "\n")


def _section(title: str, body: str | None) -> None:
    console.print(f"──── {title} ────", style="bold", highlight=False)
    if body is not None:
        sys.stdout.flush()
        console.file.flush()
        sys.stdout.write(body if body.endswith("\n") else body + "\n")


def _split(st: Store, first: str | None, second: str | None) -> tuple[str | None, str | None]:
    """RUN NODE, or one argument that is a run when it names one and a node otherwise."""
    if second is not None:
        return first, second
    if first is None or first == "latest":
        return None, None
    try:
        st.resolve_run(first)
    except StoreError:
        return None, first
    return first, None
