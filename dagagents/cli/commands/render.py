"""`dagagents render GRAPH|PLAN|RUN`: the DAG as Mermaid, DOT, SVG or PNG."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dagagents.cli.app import (
    TARGET_LOADERS,
    app,
    console,
    load_target,
    safe_filename,
    user_errors,
)
from dagagents.errors import StoreError, UserError
from dagagents.observe.render import (
    FORMATS,
    Diagram,
    diagram_from_graph,
    diagram_from_run,
    render_bytes,
)
from dagagents.observe.summary import load_graph_run, load_run
from dagagents.store import Store

SUFFIX_FORMATS = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".md": "mermaid",
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
    ".png": "png",
}


@app.command("render")
def render_command(
    target: Annotated[
        str,
        typer.Argument(
            help="Graph file (graphs/x.py[:attr]), plan.json, or a run id in the store "
            "('latest' for the newest run)."
        ),
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="mermaid | dot | svg | png (default: from -o, else mermaid)."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(help="Colour a graph file by this run's statuses (a run id or 'latest')."),
    ] = None,
    store: Annotated[str, typer.Option(help="Checkpoint store holding the runs.")] = ".dagagents",
    workers: Annotated[
        str | None, typer.Option(help="Workers module for plan files (graphs/workers.py).")
    ] = None,
) -> None:
    """Draw the DAG: nodes labelled with agent and model, coloured by a run's status, the
    critical path in bold black, failures in red. Mermaid and DOT need nothing installed; SVG/PNG need Graphviz."""
    with user_errors():
        chosen = (
            fmt or (SUFFIX_FORMATS.get(output.suffix.lower()) if output else None) or "mermaid"
        ).lower()
        if chosen not in FORMATS:
            raise UserError(f"--format '{chosen}' is not one of: {', '.join(FORMATS)}.")
        diagram = resolve_diagram(target, run=run, store=store, workers=workers)
        data = render_bytes(diagram, chosen)
        if output is None and chosen == "png":
            output = safe_filename(diagram.name, ".png")
        if output is None:
            sys.stdout.write(data.decode())
            return
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_bytes(data)
        except OSError as exc:
            raise UserError(f"cannot write '{output}': {exc.strerror}.") from None
    console.print(f"wrote {output} ({chosen}, {len(diagram.nodes)} nodes)", highlight=False)


def is_graph_target(target: str) -> bool:
    path = Path(target.split(":", 1)[0])
    return path.suffix in TARGET_LOADERS or path.exists()


def resolve_diagram(
    target: str, *, run: str | None, store: str, workers: str | None = None
) -> Diagram:
    """A graph or plan file (optionally with one of its runs), or a run id in the store."""
    if is_graph_target(target):
        graph = load_target(target, workers=workers)
        data = load_graph_run(Store(store, create=False), run, graph.name) if run else None
        return diagram_from_graph(graph, data)
    if run is not None:
        raise UserError(f"--run is for graph files; '{target}' is not one (a run id?).")
    try:
        data = load_run(target, store)
    except StoreError as exc:
        raise UserError(
            f"'{target}' is neither a graph file (.py, .json) nor a run in the store "
            f"({str(exc).rstrip('.')})."
        ) from None
    return diagram_from_run(data)
