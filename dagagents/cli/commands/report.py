"""`dagagents report RUN -o report.html`: one self-contained HTML page about a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dagagents.cli.app import app as cli_app
from dagagents.cli.app import console, user_errors
from dagagents.errors import UserError
from dagagents.observe.outputs import NodeDetail, run_details
from dagagents.observe.resume import run_nodes
from dagagents.observe.summary import load_run
from dagagents.store import Store


@cli_app.command("report")
def report_command(
    run: Annotated[
        str | None,
        typer.Argument(help="Run id (or prefix, or 'latest'), a run folder, or a trace .jsonl."),
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    store: Annotated[str, typer.Option(help="Checkpoint store holding the runs.")] = ".dagagents",
    compare: Annotated[
        str | None,
        typer.Option(help="Another run of the same graph (e.g. sequential) drawn below it."),
    ] = None,
) -> None:
    """Write an offline HTML report: DAG diagram, timeline, cost and latency per agent,
    slowest nodes, critical path, failures and retries."""
    with user_errors():
        data = load_run(run, store)
        other = load_run(compare, store) if compare else None
        from dagagents.observe.report import write_report  # not on the `run` path

        path = write_report(data, output, other, _details(store, data.run_id))
    console.print(f"wrote {path} (run {data.run_id}, {len(data.nodes)} nodes)", highlight=False)


def _details(store: str, run_id: str) -> dict[str, NodeDetail] | None:
    """Outputs and prompts of the run when its store is at hand (a bare trace has none)."""
    try:
        st = Store(store, create=False)
        manifest = st.read_manifest(run_id)
    except UserError:
        return None
    if manifest.get("run_id") != run_id:
        return None
    return run_details(st, run_nodes(st, run_id, manifest))
