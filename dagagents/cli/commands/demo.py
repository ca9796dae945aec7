"""`dagagents demo`: the offline tour `make demo` runs.

An orchestrator plans a market report, the plan compiles into the DAG, workers run in parallel
with live progress, the synthesizer writes the report; then the diagram, the timeline and the
HTML run report land in one folder, named at the end.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dagagents.cli.app import (
    EXIT_FAILED,
    EXIT_OK,
    app,
    console,
    load_target,
    styled,
    user_errors,
)
from dagagents.cli.commands.run import run_with_view
from dagagents.observe.runs import RunResult


class _PlanView:
    """Print what the planner adds: one line per subtask added while the plan is still being
    written (a streamed plan), then the whole planned DAG once the plan is complete."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, str, str]] = {}  # subtask -> (who, deps, when)

    def __call__(self, event: dict[str, Any]) -> None:
        if event["event"] != "expand":
            return
        deps: dict[str, list[str]] = {name: [] for name in event["added"]}
        for src, dst in event["edges"]:
            if dst in deps:
                deps[dst].append(src)
        agents, models = event.get("agents", {}), event.get("models", {})
        streamed = bool(event.get("streamed"))
        for name in event["added"]:
            who = f"{agents[name]} · {models[name]}" if agents.get(name) else "step"
            when = "while planning" if streamed else "with the whole plan"
            self.rows[name] = (who, ", ".join(deps[name]) or "—", when)
            if streamed:
                console.print(
                    styled(
                        f"{event['t']:6.2f}s  ",
                        (event["node"], "bold"),
                        " is still writing; subtask ",
                        (name, "bold"),
                        f" ({who}) added, to start as soon as its inputs exist",
                    ),
                    highlight=False,
                )
        if streamed:
            return
        table = Table(title=f"Planned DAG (from node '{event['node']}')", title_justify="left")
        for col in ("subtask", "worker · model", "depends on", "added"):
            table.add_column(col)
        for name, (who, after, when) in self.rows.items():
            table.add_row(name, who, after, when)
        console.print(table)


def _write_artifacts(result: RunResult, out: Path) -> dict[str, Path]:
    """Diagram (SVG, PNG, Mermaid), timeline PNG, HTML report and trace for one run."""
    from dagagents.observe.render import diagram_from_run, render_bytes
    from dagagents.observe.report import write_report
    from dagagents.observe.summary import load_run
    from dagagents.observe.timeline import timeline_png

    assert result.store is not None
    run = load_run(result.run_id, store=result.store)
    diagram = diagram_from_run(run)
    files: dict[str, Path] = {}
    for fmt, suffix in (("mermaid", "mmd"), ("svg", "svg"), ("png", "png")):
        path = out / f"dag.{suffix}"
        path.write_bytes(render_bytes(diagram, fmt))
        files[f"diagram ({fmt})"] = path
    files["timeline"] = timeline_png(run, out / "timeline.png")
    files["report"] = write_report(run, out / "report.html")
    trace = Path(result.store) / "runs" / result.run_id / "trace.jsonl"
    if trace.is_file():
        files["trace"] = Path(shutil.copyfile(trace, out / "trace.jsonl"))
    return files


@app.command()
def demo(
    graph: Annotated[str, typer.Argument(help="The orchestrator graph to run.")] = (
        "graphs/market_report.py"
    ),
    out: Annotated[Path, typer.Option(help="Folder for the diagram and the report.")] = Path(
        "demo-output"
    ),
    concurrency: Annotated[int, typer.Option("--concurrency", "-c")] = 4,
    provider: Annotated[str | None, typer.Option(help="simulated | anthropic.")] = None,
    resume: Annotated[
        bool, typer.Option(help="Reuse the demo's checkpoints instead of running fresh.")
    ] = False,
) -> None:
    """Plan -> parallel workers -> synthesis, offline by default; writes diagram and report."""
    with user_errors():
        target = load_target(graph)
        out.mkdir(parents=True, exist_ok=True)
        store = out / "store"
        console.rule(styled(("dagagents demo", "bold")))
        console.print(
            styled(
                "graph ",
                (target.name, "bold"),
                f" from {graph}: a planner node plans the work at run "
                "time; its subtasks run in parallel as soon as their inputs exist.\n"
                "No ANTHROPIC_API_KEY needed: answers come from the simulated provider (offline).",
            )
            if provider != "anthropic"
            else styled("graph ", (target.name, "bold"), " on the Anthropic API."),
            highlight=False,
        )
        options: dict[str, Any] = {
            "concurrency": concurrency,
            "provider": provider,
            "store": store,
            "fresh": not resume,
        }
        result = run_with_view(target, listener=_PlanView(), **options)
        final = result.outputs.get("synthesis")
        if final is not None:
            from rich.markdown import Markdown  # ~40 ms to import; only the demo's end needs it
            from rich.panel import Panel

            console.print(Panel(Markdown(str(final)), title="synthesis", border_style="green"))
        files = _write_artifacts(result, out)
    table = Table(title=f"written to {out.resolve()}", title_justify="left", show_header=False)
    for what, path in files.items():
        table.add_row(what, str(path))
    console.print(table)
    console.print(
        styled(
            "next: ",
            (f"dagagents run {graph}", "bold"),
            " twice (the second run is all cache hits), ",
            (f"dagagents trace summary --store {store}", "bold"),
            ", ",
            (f"dagagents estimate {graph} --store {store}", "bold"),
        ),
        highlight=False,
        soft_wrap=True,  # commands stay on one line, ready to paste
    )
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)
