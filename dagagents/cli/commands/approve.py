"""`dagagents approve RUN NODE`: decide a waiting approval node; the next run continues."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from dagagents.cli.app import app, console, fail, user_errors
from dagagents.engine.approvals import record_decision


@app.command()
def approve(
    run: Annotated[str, typer.Argument(help="Run id (or prefix, or 'latest').")],
    node: Annotated[str, typer.Argument(help="The waiting approval node.")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject: the node fails.")] = False,
    value: Annotated[
        str | None,
        typer.Option(help="JSON the node outputs when approved (default: its input)."),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (shown where the node failed).")] = None,
    store: Annotated[str, typer.Option(help="Checkpoint store.")] = ".dagagents",
) -> None:
    """Record a decision in the store. Approved: the value flows on as the node's output;
    rejected: the node fails with the reason and its descendants skip. Rerun the graph
    (`dagagents run ...`) to continue from its checkpoints."""
    parsed: Any = None
    if value is not None:
        if reject:
            fail("--value goes with an approval, not with --reject.")
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            fail(f"--value is not JSON ({exc}); quote a string as '\"text\"'.")
    with user_errors():
        record_decision(
            store,
            run,
            node,
            approved=not reject,
            value=parsed,
            reason=reason or ("rejected" if reject else None),
        )
    what = "rejected" if reject else "approved"
    console.print(
        f"{what} '{node}'; rerun the graph to continue from its checkpoints.", highlight=False
    )
