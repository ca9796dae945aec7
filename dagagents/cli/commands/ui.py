"""`dagagents ui`: the live local web view of every run in a store (and `run --ui`'s helper)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dagagents.cli.app import app, console, styled, user_errors
from dagagents.engine.approvals import record_decision
from dagagents.errors import UserError
from dagagents.store import Store

if TYPE_CHECKING:
    from dagagents.model.graph import Graph
    from dagagents.observe.ui.feeds import LiveRun
    from dagagents.observe.ui.server import Running


DEFAULT_PORT = 8765


def _need_extra() -> None:
    try:
        import sse_starlette  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UserError("the web view needs the 'ui' extra: pip install 'dagagents[ui]'.") from None


def _announce(running: Running) -> None:
    console.print(styled("web view: ", (running.url, "bold")), highlight=False, soft_wrap=True)
    if running.token:
        console.print(
            f"serving on {running.host}: anyone who can reach it needs the token in that URL",
            highlight=False,
        )


@app.command("ui")
def ui_command(
    store: Annotated[str, typer.Option(help="Checkpoint store whose runs to show.")] = ".dagagents",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = DEFAULT_PORT,
    host: Annotated[
        str, typer.Option(help="Interface; anything but loopback requires a printed token.")
    ] = "127.0.0.1",
) -> None:
    """Serve a live page per run (DAG, timeline, limits, cost, outputs) on 127.0.0.1, fed by
    tailing each run's trace; finished runs replay. Ctrl-C stops it."""
    with user_errors():
        _need_extra()
        from dagagents.observe.ui.app import create_app
        from dagagents.observe.ui.server import access_token, serve_in_thread

        st = Store(store)
        token = access_token(host)

        def decide(run: str, node: str, ok: bool, value: Any, reason: str | None) -> None:
            record_decision(st, run, node, approved=ok, value=value, reason=reason)

        app_ = create_app(st, token=token, approve=decide)
        running = serve_in_thread(app_, host, port, token)
        _announce(running)
        try:
            while running.thread.is_alive():
                time.sleep(0.5)
        except KeyboardInterrupt:
            running.stop()


def start_live_ui(
    graph: Graph, options: dict[str, Any], *, host: str, port: int
) -> tuple[LiveRun, Running]:
    """Serve the web view for the run about to start (its store's other runs too)."""
    _need_extra()
    from dagagents.observe.ui.app import create_app
    from dagagents.observe.ui.feeds import LiveRun, WebApprovals
    from dagagents.observe.ui.server import access_token, serve_in_thread

    live = LiveRun(graph, max_cost_usd=options.get("max_cost_usd"))
    store = options.get("store")
    st = Store(store) if isinstance(store, str) else store if isinstance(store, Store) else None
    token = access_token(host)
    approvals = WebApprovals()
    options["approver"] = approvals  # this run's approval nodes wait for the page's buttons

    def decide(run: str, node: str, ok: bool, value: Any, reason: str | None) -> None:
        if run == live.run_id and approvals.waiting(node):
            approvals.decide(node, ok, value, reason)
        elif st is not None:  # an earlier run in the same store
            record_decision(st, run, node, approved=ok, value=value, reason=reason)
        else:
            raise UserError(f"node '{node}' is not waiting for approval.")

    app_ = create_app(st, live, token=token, approve=decide)
    # The run matters more than the port: a taken default port means a free one (printed).
    running = serve_in_thread(app_, host, port, token, any_port_if_taken=port == DEFAULT_PORT)
    _announce(running)
    return live, running
