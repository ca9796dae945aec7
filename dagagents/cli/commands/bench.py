"""`dagagents bench`: parallel vs sequential wall time against the theoretical lower bound."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from dagagents.cli.app import (
    InputOption,
    InputsFileOption,
    app,
    console,
    load_target,
    safe_filename,
    user_errors,
)


@app.command("bench")
def bench_command(
    target: Annotated[str, typer.Argument(help="Graph file (graphs/x.py[:attr]) or plan.json.")],
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Nodes at once.")] = 8,
    repeat: Annotated[int, typer.Option("--repeat", "-r", help="Runs of each mode.")] = 1,
    workers: Annotated[
        str | None, typer.Option(help="Workers module for plan files (graphs/workers.py).")
    ] = None,
    from_run: Annotated[
        str | None,
        typer.Option(help="Replay this recorded run's node durations and outputs instead."),
    ] = None,
    store: Annotated[str, typer.Option(help="Store holding --from-run.")] = ".dagagents",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Timeline PNG (default bench-GRAPH.png).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write figures here.")
    ] = None,
    input_: InputOption = None,
    inputs_file: InputsFileOption = None,
) -> None:
    """Run a graph in parallel and one node at a time (simulated provider, or a recorded
    run's durations); print wall times, the lower bound, speedup and efficiency."""
    with user_errors():
        from dagagents.cli.commands.run import parse_inputs
        from dagagents.observe.bench import bench
        from dagagents.observe.timeline import timeline_png
        from dagagents.store import Store

        graph = load_target(target, workers=workers)
        if hasattr(graph, "bind"):
            graph = graph.bind(parse_inputs(graph, input_ or [], inputs_file))
        replay = (Store(store), from_run) if from_run else None
        report = bench(graph, concurrency=concurrency, repeat=repeat, replay=replay)
        png = output or safe_filename(graph.name, ".png", prefix="bench-")
        timeline_png(
            report.median_run(report.parallel),
            png,
            compare_with=report.median_run(report.sequential),
        )
        if json_out is not None:
            json_out.write_bytes(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2))
    table = Table(
        title=f"{graph.name} · {report.mode} · concurrency {concurrency} · median of {repeat}",
        title_justify="left",
        show_header=False,
    )
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("parallel wall", f"{report.parallel_wall:.3f}s"),
        ("sequential wall", f"{report.sequential_wall:.3f}s"),
        (
            "critical path (as it ran)",
            f"{report.realised_time:.3f}s  ({' -> '.join(report.realised_path)})",
        ),
        ("longest path (by node time)", f"{report.critical_time:.3f}s"),
        ("total work / concurrency", f"{report.total_work / concurrency:.3f}s"),
        ("lower bound", f"{report.lower_bound:.3f}s"),
        ("parallel wall / lower bound", f"{report.vs_lower_bound:.3f}x"),
        ("speedup (sequential / parallel)", f"{report.speedup:.2f}x"),
        ("parallel efficiency", f"{report.efficiency:.0%}  (node time / (wall x {concurrency}))"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(f"timeline: {png}", highlight=False)
