"""`dagagents report RUN -o report.html`: one self-contained HTML page about a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dagagents.cli.app import app as cli_app
from dagagents.cli.app import console, user_errors
from dagagents.observe.summary import load_run


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
        from dagagents.observe.report import write_report

        path = write_report(data, output, other)
    console.print(f"wrote {path} (run {data.run_id}, {len(data.nodes)} nodes)", highlight=False)
