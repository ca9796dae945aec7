"""`dagagents plan`: ask the planner once and write the validated plan to a file.

Also registers plan files as run/render/estimate targets: `dagagents run plan.json --workers
graphs/workers.py`. A malformed plan file (bad JSON, schema error, cycle, unknown worker) is a
user error: exit 2 and one sentence per problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from dagagents.cli.app import (
    EXIT_FAILED,
    app,
    console,
    err_console,
    styled,
    user_errors,
)
from dagagents.model.orchestrator import Orchestrator
from dagagents.model.plan import PLAN_NODE, Plan, load_team, save_plan


@app.command("plan")
def plan_command(
    task: Annotated[str, typer.Argument(help="What to plan, in plain words.")],
    workers: Annotated[
        str,
        typer.Option("--workers", "-w", help="Workers module (defines `workers = {name: Agent}`)."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Plan file to write.")] = Path(
        "plan.json"
    ),
    provider: Annotated[
        str | None, typer.Option(help="simulated | anthropic (default: anthropic if a key is set).")
    ] = None,
    store: Annotated[
        str, typer.Option(help="Checkpoint store (the same plan is reused for the same task).")
    ] = ".dagagents",
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not checkpoint.")] = False,
    fresh: Annotated[bool, typer.Option(help="Plan again even if this task was planned.")] = False,
    max_subtasks: Annotated[
        int | None, typer.Option(help="Most subtasks a plan may have (default 50).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
) -> None:
    """Plan TASK with the workers' planner (one call, plus one repair attempt if the plan is
    invalid) and write the validated plan; `dagagents run PLAN --workers ...` runs it."""
    with user_errors():
        team = load_team(workers)
        orchestrator = Orchestrator(
            team.workers,
            team.planner,
            team.synthesizer,
            max_subtasks=max_subtasks or team.max_subtasks,
        )
        graph = orchestrator.plan_graph(task, simulator=team.simulator)
        options: dict[str, Any] = {
            "concurrency": 1,
            "provider": provider,
            "store": None if no_store else store,
            "fresh": fresh,
        }
        result = graph.run(**options)
    record = result.records[PLAN_NODE]
    if record.status not in ("done", "cached"):
        err_console.print(
            styled(("planning failed:", "bold red"), f" {record.error or record.status}"),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_FAILED)
    plan: Plan = result.outputs[PLAN_NODE]
    with user_errors():
        save_plan(plan, output, task=task, workers=workers)
    if quiet:
        return
    console.print(plan_table(plan, title=f"plan for: {task}"))
    how = "from the store" if record.status == "cached" else f"{record.duration:.1f}s"
    sim = " (simulated)" if record.simulated else ""
    console.print(
        styled(
            "wrote ",
            (str(output), "bold"),
            f" ({len(plan.subtasks)} subtasks; planner {how}, "
            f"${record.cost_usd:.4f}{sim}). Run it with:\n"
            f"  dagagents run {output} --workers {workers}",
        ),
        highlight=False,
    )


def plan_table(plan: Plan, *, title: str = "plan") -> Table:
    """Subtasks with their worker, dependencies and task; the synthesis instructions below."""
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("subtask", style="bold")
    table.add_column("worker")
    table.add_column("after")
    table.add_column("task", overflow="fold", max_width=80)
    for s in plan.subtasks:
        table.add_row(s.id, s.worker, ", ".join(s.depends_on), s.task)
    table.caption = f"synthesis: {plan.synthesis_instructions}"
    table.caption_justify = "left"
    return table
