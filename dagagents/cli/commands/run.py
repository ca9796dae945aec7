"""`dagagents run`: run a graph (or plan) with a live view, then a summary table."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dagagents.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    app,
    console,
    load_target,
    styled,
    user_errors,
)
from dagagents.engine.executors.choice import executor_from_options
from dagagents.engine.limits import RateLimits, check_limit
from dagagents.engine.retry import DEFAULT_RETRY, RetryPolicy
from dagagents.errors import UserError
from dagagents.observe.progress import LiveProgress, PlainProgress, summary_table
from dagagents.observe.runs import RunResult

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
    executor: Annotated[
        str, typer.Option(help="Where node bodies run: local | dask | dask-local.")
    ] = "local",
    scheduler_address: Annotated[
        str | None, typer.Option(help="Dask scheduler for --executor dask (tcp://HOST:PORT).")
    ] = None,
    dask_workers: Annotated[
        int | None, typer.Option(help="Worker processes for --executor dask-local.")
    ] = None,
    dask_semaphore: Annotated[
        str | None, typer.Option(help="Dask semaphore name bounding all drivers that share it.")
    ] = None,
    rpm: Annotated[float | None, typer.Option(help="Requests per minute per model.")] = None,
    itpm: Annotated[float | None, typer.Option(help="Input tokens per minute per model.")] = None,
    otpm: Annotated[float | None, typer.Option(help="Output tokens per minute per model.")] = None,
    max_cost: Annotated[
        float | None, typer.Option(help="Budget in USD: no call starts that could exceed it.")
    ] = None,
    retries: Annotated[
        int | None, typer.Option(help="Attempts per API call, the first included.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds each API call may take before it is retried "
            "(default: grows with the agent's max_tokens)."
        ),
    ] = None,
) -> None:
    """Run a graph: ready nodes start at once under the concurrency limit; finished nodes
    are checkpointed so a rerun resumes."""
    with user_errors():
        check_limits(
            {
                "--rpm": rpm,
                "--itpm": itpm,
                "--otpm": otpm,
                "--max-cost": max_cost,
                "--timeout": timeout,
            }
        )
        if retries is not None and retries < 1:
            raise UserError(f"--retries must be at least 1 (the first attempt), got {retries}.")
        graph = load_target(target, workers=workers)
        options: dict[str, Any] = {
            "concurrency": concurrency,
            "provider": provider,
            "store": None if no_store else store,
            "fresh": fresh,
            "rerun": rerun or [],
            "fail_fast": fail_fast,
            "trace": trace,
            "rate_limits": RateLimits(rpm=rpm, itpm=itpm, otpm=otpm),
            "max_cost_usd": max_cost,
            "retry": retry_policy(retries, timeout),
            "executor": executor_from_options(
                executor,
                scheduler_address=scheduler_address,
                dask_workers=dask_workers,
                semaphore=dask_semaphore,
            ),
        }
        for hook in RUN_OPTIONS_HOOKS:
            options = hook(options)
        result = run_with_view(graph, quiet=quiet, **options)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def check_limits(flags: dict[str, float | None]) -> None:
    """Every limit flag is a positive finite number: `nan`, `inf`, 0 and negatives are refused
    by name before anything loads (`nan` would otherwise hang a bucket or void a budget)."""
    for flag, value in flags.items():
        check_limit(flag, value)


def retry_policy(retries: int | None, timeout: float | None) -> RetryPolicy | None:
    """The run's retry policy from `--retries` and `--timeout` (None: the default policy)."""
    if retries is None and timeout is None:
        return None
    changes: dict[str, Any] = {}
    if retries is not None:
        changes["max_attempts"] = retries
    if timeout is not None:
        changes["timeout"] = timeout
    return dataclasses.replace(DEFAULT_RETRY, **changes)


def run_with_view(
    graph: Any,
    *,
    quiet: bool = False,
    listener: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> RunResult:
    """Run with the live view on a terminal (plain start/finish lines otherwise);
    `listener` also sees every trace event."""
    live = not quiet and console.is_terminal
    if not quiet and not live:
        console.print(
            styled("running ", (graph.name, "bold"), f" ({len(graph)} nodes)"), highlight=False
        )
    if live:
        view = LiveProgress(console, graph.name)

        def both(event: dict[str, Any]) -> None:
            view(event)
            if listener is not None:
                listener(event)

        with view:
            result = graph.run(listener=both, **options)
    else:
        plain = None if quiet else PlainProgress(console)

        def lines(event: dict[str, Any]) -> None:
            if plain is not None:
                plain(event)
            if listener is not None:
                listener(event)

        result = graph.run(listener=lines, **options)
    for event in result.events:  # e.g. a corrupt checkpoint that was recomputed
        if event["event"] == "warning":
            print(f"warning: {event.get('node')}: {event['message']}", file=sys.stderr)
    if not quiet:
        console.print(summary_table(result))
    for name, error in result.errors.items():  # errors always print, even with -q
        if result.status[name] == "failed":
            print(f"failed: {name}: {error}", file=sys.stderr)
    return result
