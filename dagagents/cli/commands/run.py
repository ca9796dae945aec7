"""`dagagents run`: run a graph (or plan) with a live view, then a summary table."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dagagents.cli.app import EXIT_FAILED, EXIT_OK, app, console, load_target, user_errors
from dagagents.progress import LiveProgress, summary_table
from dagagents.result import RunResult

RUN_OPTIONS_HOOKS: list[Any] = []  # callables(options: dict) -> dict, for extensions


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="Graph file (graphs/x.py[:attr]) or plan.json.")],
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Nodes at once.")] = 8,
    provider: Annotated[
        str | None, typer.Option(help="simulated | anthropic (default: anthropic if a key is set).")
    ] = None,
    store: Annotated[
        str, typer.Option(help="Checkpoint store: a directory or fsspec URL.")
    ] = ".dagagents",
    no_store: Annotated[bool, typer.Option("--no-store", help="Run without checkpoints.")] = False,
    fresh: Annotated[bool, typer.Option(help="Ignore existing checkpoints.")] = False,
    rerun: Annotated[
        list[str] | None, typer.Option(help="Recompute this node (repeatable).")
    ] = None,
    fail_fast: Annotated[
        bool, typer.Option(help="Cancel everything at the first failure.")
    ] = False,
    trace: Annotated[Path | None, typer.Option(help="Also write the JSONL trace here.")] = None,
    workers: Annotated[
        str | None, typer.Option(help="Workers module for plan files (graphs/workers.py).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view or table.")] = False,
) -> None:
    """Run a graph: ready nodes start at once under the concurrency limit; finished nodes
    are checkpointed so a rerun resumes."""
    with user_errors():
        graph = load_target(target, workers=workers)
        options: dict[str, Any] = {
            "concurrency": concurrency,
            "provider": provider,
            "store": None if no_store else store,
            "fresh": fresh,
            "rerun": rerun or [],
            "fail_fast": fail_fast,
            "trace": trace,
        }
        for hook in RUN_OPTIONS_HOOKS:
            options = hook(options)
        result = run_with_view(graph, quiet=quiet, **options)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def run_with_view(graph: Any, *, quiet: bool = False, **options: Any) -> RunResult:
    """Run with the live view on a terminal (plain start/finish lines otherwise)."""
    live = not quiet and console.is_terminal
    if not quiet and not live:
        console.print(f"running [bold]{graph.name}[/] ({len(graph)} nodes)", highlight=False)
    if live:
        view = LiveProgress(console, graph.name)
        with view:
            result = graph.run(listener=view, **options)
    else:
        result = graph.run(**options)
    if not quiet:
        console.print(summary_table(result))
        for name, error in result.errors.items():
            if result.status[name] == "failed":
                print(f"failed: {name}: {error}", file=sys.stderr)
    return result
