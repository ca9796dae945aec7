"""The Starlette app: pages, JSON endpoints and one SSE stream per watching page.

Endpoints: `/` (run list) and `/run/{id}` (one run) serve the same static page; `/api/runs`,
`/api/runs/{id}/graph`, `/api/runs/{id}/events` (SSE: JSON arrays of trace events),
`/api/runs/{id}/nodes/{node}` (output and prompt from the store). With a `token` every request
must carry it (`?token=`, then a cookie), for when the view is served beyond loopback.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dagagents.errors import UserError
from dagagents.observe.outputs import node_detail
from dagagents.observe.resume import run_nodes
from dagagents.observe.runs import fold_events
from dagagents.observe.ui.feeds import LiveRun, TraceFeed, run_list, store_graph
from dagagents.store import Store

STATIC = resources.files("dagagents.observe.ui") / "static"
POLL = 0.15  # seconds between reads of a feed while a page watches it
COOKIE = "dagagents_ui_token"

Approve = Callable[[str, str, bool, Any, str | None], Awaitable[None] | None]


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, default=str), status_code=status, media_type="application/json"
    )


async def _stream(feed: LiveRun | TraceFeed) -> AsyncIterator[dict[str, str]]:
    """A run's events as server-sent events, polled until the run ends."""
    cursor = 0
    while True:
        batch, cursor, finished = feed.since(cursor)
        if batch:
            yield {"event": "events", "data": orjson.dumps(batch, default=str).decode()}
        if finished:
            yield {"event": "end", "data": "{}"}
            return
        await asyncio.sleep(POLL)


def _node_records(store: Store | None, live: LiveRun | None, run_id: str) -> dict[str, Any]:
    """The node records of run `run_id` as JSON (UserError when there is no such run)."""
    if live is not None and live.run_id == run_id:
        return {n: r.to_json() for n, r in fold_events(live.events).items()}
    if store is None:
        raise UserError(f"no run '{run_id}' here")
    resolved = store.resolve_run(run_id)
    return run_nodes(store, resolved, store.read_manifest(resolved))


def _run_graph(store: Store | None, live: LiveRun | None, run_id: str) -> Response:
    """The graph of run `run_id` as JSON (404 when there is no such run)."""
    if live is not None and live.run_id == run_id:
        return _json(live.graph())
    if store is None:
        return _json({"error": f"no run '{run_id}' here"}, 404)
    try:
        return _json(store_graph(store, run_id))
    except UserError as exc:
        return _json({"error": str(exc)}, 404)


async def _decide(approve: Approve | None, request: Request) -> Response:
    """Record the approval decision a POST carries for a waiting node."""
    run_id, name = request.path_params["run"], request.path_params["node"]
    if approve is None:
        return _json({"error": "approvals are not available here"}, 404)
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        return _json({"error": "the request body is not JSON"}, 400)
    approved = request.path_params["decision"] == "approve"
    try:
        done = approve(run_id, name, approved, body.get("value"), body.get("reason"))
        if done is not None:
            await done
    except UserError as exc:
        return _json({"error": str(exc)}, 409)
    return _json({"ok": True, "node": name, "approved": approved})


def create_app(
    store: Store | None = None,
    live: LiveRun | None = None,
    *,
    token: str | None = None,
    approve: Approve | None = None,
) -> Starlette:
    """The web view over `store` (every run in it) and/or one in-process `live` run.

    `approve(run, node, approved, value, reason)` records a decision for a waiting node."""

    def feed_for(run_id: str) -> LiveRun | TraceFeed:
        if live is not None and live.run_id == run_id:
            return live
        if store is None:
            raise UserError(f"no run '{run_id}' here.")
        return TraceFeed(store, store.resolve_run(run_id))

    async def page(request: Request) -> Response:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    async def runs(request: Request) -> Response:
        return _json({"runs": run_list(store, live)})

    async def graph(request: Request) -> Response:
        return _run_graph(store, live, request.path_params["run"])

    async def events(request: Request) -> Response:
        run_id = request.path_params["run"]
        try:
            feed = feed_for(run_id)
        except UserError as exc:
            return _json({"error": str(exc)}, 404)
        return EventSourceResponse(_stream(feed), ping=10)

    async def node(request: Request) -> Response:
        run_id, name = request.path_params["run"], request.path_params["node"]
        try:
            records = _node_records(store, live, run_id)
        except UserError as exc:
            return _json({"error": str(exc)}, 404)
        record = records.get(name)
        if record is None:
            return _json({"node": name, "status": "pending", "output": None, "note": "not run"})
        detail = node_detail(store, name, record)
        out = detail.to_json()
        out["text"] = detail.text if detail.has_output else None
        return _json(out)

    async def decide(request: Request) -> Response:
        return await _decide(approve, request)

    routes = [
        Route("/", page),
        Route("/run/{run}", page),
        Route("/api/runs", runs),
        Route("/api/runs/{run}/graph", graph),
        Route("/api/runs/{run}/events", events),
        Route("/api/runs/{run}/nodes/{node:path}", node),
        Route("/api/runs/{run}/{decision:str}/{node:path}", decide, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard, token=token)])


class Guard:
    """Pure ASGI middleware (SSE passes straight through): the token when one is set, and
    headers that keep the page to its own origin."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        from_query = request.query_params.get("token")
        if self.token is not None:
            given = from_query or request.cookies.get(COOKIE) or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                denied = PlainTextResponse("this view needs its token (?token=...)", 403)
                await denied(scope, receive, send)
                return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["content-security-policy"] = (
                    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
                )
                headers["cache-control"] = "no-store"
                headers["x-content-type-options"] = "nosniff"
                if self.token is not None and from_query:
                    headers.append(
                        "set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                    )
            await send(message)

        await self.app(scope, receive, with_headers)


__all__ = ["Approve", "create_app"]
