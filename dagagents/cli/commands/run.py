"""`dagagents run`: run a graph (or plan) with a live view, then a summary table."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from dagagents.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_WAITING,
    InputOption,
    InputsFileOption,
    app,
    console,
    load_target,
    real_console,
    styled,
    user_errors,
)
from dagagents.engine.cache_warming import CacheWarming
from dagagents.engine.executors.choice import executor_from_options
from dagagents.engine.limits import RateLimits, check_limit
from dagagents.engine.retry import DEFAULT_RETRY, RetryPolicy
from dagagents.engine.run import RunOptions  # noqa: F401 - loaded here, while start-up pauses the collector
from dagagents.engine.shared_limits import (
    DEFAULT_LEASE_TTL,
    DEFAULT_TIMEOUT,
    SharedLimits,
    resolve_limits,
)
from dagagents.errors import UserError
from dagagents.observe.runs import RunResult


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
    input_: InputOption = None,
    inputs_file: InputsFileOption = None,
    limits: Annotated[
        str | None,
        typer.Option(
            help="Share rate limits, backoff, concurrency (and --budget-key) with every "
            "process on this Redis: redis://HOST:PORT/DB (env DAGAGENTS_LIMITS_URL).",
            show_default=False,
        ),
    ] = None,
    limits_key: Annotated[
        str | None,
        typer.Option(help="Name of the shared limits (default: a hash of the API key)."),
    ] = None,
    budget_key: Annotated[
        str | None,
        typer.Option(help="With --max-cost and --limits: a budget shared by all who name it."),
    ] = None,
    limits_timeout: Annotated[
        float,
        typer.Option(help="Seconds new calls wait for a lost --limits store before the run stops."),
    ] = DEFAULT_TIMEOUT,
    lease_ttl: Annotated[
        float,
        typer.Option(help="Seconds a dead process's concurrency leases outlive it (--limits)."),
    ] = DEFAULT_LEASE_TTL,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="Send every agent call through the Message Batches API at half price "
            "(for work that can wait up to 24 h).",
        ),
    ] = False,
    batch_window: Annotated[
        float, typer.Option(help="--batch: submit once no call has joined for this many seconds.")
    ] = 2.0,
    batch_max: Annotated[
        int, typer.Option(help="--batch: submit at once at this many requests.")
    ] = 100_000,
    no_cache_warming: Annotated[
        bool,
        typer.Option(
            "--no-cache-warming",
            help="Let parallel calls that share a cacheable prefix start together (each writes it).",
        ),
    ] = False,
    usd_per_second: Annotated[
        float | None,
        typer.Option(
            help="Cache warming: what one second added to the run is worth against the cache "
            "writes waiting saves (default 0.01; 0: always wait).",
            show_default=False,
        ),
    ] = None,
    count_tokens: Annotated[
        bool,
        typer.Option(
            "--count-tokens", help="Count each prompt shape's first call exactly for --itpm."
        ),
    ] = False,
    ui: Annotated[
        bool, typer.Option("--ui", help="Watch it in the local web view (dagagents[ui]).")
    ] = False,
    ui_port: Annotated[int, typer.Option(help="Port of the web view (0: a free one).")] = 8765,
    ui_host: Annotated[
        str, typer.Option(help="Interface of the web view; beyond loopback it needs a token.")
    ] = "127.0.0.1",
    ui_linger: Annotated[
        float | None,
        typer.Option(
            help="Seconds the web view stays up after the run (default: until Ctrl-C "
            "on a terminal, else none)."
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
                "--limits-timeout": limits_timeout,
                "--lease-ttl": lease_ttl,
            }
        )
        if retries is not None and retries < 1:
            raise UserError(f"--retries must be at least 1 (the first attempt), got {retries}.")
        graph = load_target(target, workers=workers)
        if (input_ or inputs_file) and hasattr(graph, "bind"):
            graph = graph.bind(parse_inputs(graph, input_ or [], inputs_file))
        elif hasattr(graph, "bind"):
            graph = graph.bind({})
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
            "limits": shared_limits(
                limits,
                key=limits_key,
                budget_key=budget_key,
                timeout=limits_timeout,
                lease_ttl=lease_ttl,
            ),
            "batch": batch,
            "batch_window": batch_window,
            "batch_max": batch_max,
            "cache_warming": cache_warming_option(no_cache_warming, usd_per_second),
            "count_tokens": count_tokens,
            "executor": executor_from_options(
                executor,
                scheduler_address=scheduler_address,
                dask_workers=dask_workers,
                semaphore=dask_semaphore,
            ),
        }
        if not ui:
            result = run_with_view(graph, quiet=quiet, **options)
        else:
            from dagagents.cli.commands.ui import start_live_ui

            live, served = start_live_ui(graph, options, host=ui_host, port=ui_port)

            def announce(event: dict[str, Any]) -> None:
                live(event)
                if event["event"] == "run_start":
                    console.print(f"watching run: {served.run_url(event['run'])}", highlight=False)

            announce.wants_tokens = True  # type: ignore[attr-defined]
            try:
                result = run_with_view(graph, quiet=quiet, listener=announce, **options)
                linger = ui_linger
                if linger is None:
                    linger = float("inf") if sys.stdout.isatty() and sys.stdin.isatty() else 0.0
                if linger > 0:
                    console.print("the web view stays up; Ctrl-C to quit", highlight=False)
                    until = time.monotonic() + linger
                    with contextlib.suppress(KeyboardInterrupt):
                        while served.thread.is_alive() and time.monotonic() < until:
                            time.sleep(0.2)
            finally:
                served.stop()
    raise typer.Exit(exit_code(result))


def exit_code(result: RunResult) -> int:
    """0 all done, 1 something failed, 3 nothing failed but approvals wait (printed)."""
    if result.ok:
        return EXIT_OK
    failed = any(s in ("failed", "cancelled") for s in result.status.values())
    if result.waiting and not failed and not result.interrupted:
        for name in result.waiting:
            print(
                f"waiting: {name}: dagagents approve {result.run_id} {name} [--reject]",
                file=sys.stderr,
            )
        return EXIT_WAITING
    return EXIT_FAILED


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


def cache_warming_option(off: bool, usd_per_second: float | None) -> CacheWarming | bool | None:
    """`run`'s cache-warming flags as `Graph.run(cache_warming=...)` takes them (None: the
    provider's default)."""
    if usd_per_second is None:
        return False if off else None
    if off:
        raise UserError(
            "--usd-per-second weighs cache warming; it cannot go with --no-cache-warming."
        )
    if not usd_per_second >= 0:  # also refuses nan
        raise UserError(f"--usd-per-second must be 0 or more, got {usd_per_second!r}.")
    return CacheWarming(usd_per_second=usd_per_second)


def parse_inputs(graph: Any, pairs: list[str], path: Path | None) -> dict[str, Any]:
    """`--inputs file.json` then each `--input NAME=VALUE` (a value is JSON when the input
    declares a non-string type, else text). One sentence for a malformed one."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise UserError(f"--inputs file '{path}' cannot be read ({exc.strerror}).") from None
        except orjson.JSONDecodeError as exc:
            raise UserError(f"--inputs file '{path}' is not valid JSON ({exc}).") from None
        if not isinstance(loaded, dict):
            raise UserError(f"--inputs file '{path}' must hold a JSON object of name: value.")
        values.update(loaded)
    declared = graph.inputs() if hasattr(graph, "inputs") else {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UserError(f"--input '{pair}' must be NAME=VALUE.")
        spec = declared.get(name)
        value: Any = text
        if spec is not None and spec.type not in (None, str):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                value = text
        values[name] = value
    return values


def shared_limits(
    url: str | None,
    *,
    key: str | None = None,
    budget_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> SharedLimits | None:
    """--limits (or DAGAGENTS_LIMITS_URL) and its companions; the names need a URL."""
    found = resolve_limits(url)
    if found is None:
        for flag, value in (("--limits-key", key), ("--budget-key", budget_key)):
            if value is not None:
                raise UserError(f"{flag} needs --limits redis://... (or DAGAGENTS_LIMITS_URL).")
        return None
    return SharedLimits(
        found.url, key=key, budget_key=budget_key, timeout=timeout, lease_ttl=lease_ttl
    )


def run_with_view(
    graph: Any,
    *,
    quiet: bool = False,
    listener: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> RunResult:
    """Run with the live view on a terminal (plain start/finish lines otherwise);
    `listener` also sees every trace event. The views (and rich) load only when shown."""
    live = not quiet and console.is_terminal
    if not quiet and not live:
        console.print(
            styled("running ", (graph.name, "bold"), f" ({len(graph)} nodes)"), highlight=False
        )
    if live:
        from dagagents.observe.progress import LiveProgress

        view = LiveProgress(real_console(console), graph.name)

        def both(event: dict[str, Any]) -> None:
            view(event)
            if listener is not None:
                listener(event)

        with view:
            result = graph.run(listener=both, **options)
    else:
        plain = None
        if not quiet:
            from dagagents.observe.progress import PlainProgress

            plain = PlainProgress(real_console(console))

        def lines(event: dict[str, Any]) -> None:
            if plain is not None:
                plain(event)
            if listener is not None:
                listener(event)

        # Plain lines show no text: stream only if the caller's listener wants tokens.
        lines.wants_tokens = listener is not None and getattr(listener, "wants_tokens", True)  # type: ignore[attr-defined]
        result = graph.run(listener=lines, **options)
    for event in result.events:  # e.g. a corrupt checkpoint that was recomputed
        if event["event"] == "warning":
            where = f"{event['node']}: " if event.get("node") else ""  # run-wide: no node
            print(f"warning: {where}{event['message']}", file=sys.stderr)
    if not quiet:
        from dagagents.observe.progress import summary_table

        console.print(summary_table(result))
    for name, error in result.errors.items():  # errors always print, even with -q
        if result.status[name] == "failed":
            print(f"failed: {name}: {error}", file=sys.stderr)
    if result.store_problem:  # always said, -q or not: the outputs were not kept
        print(f"error: {result.store_problem}", file=sys.stderr)
    return result
