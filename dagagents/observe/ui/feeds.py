"""Where the web view's events come from: a live in-process run, or a run's trace on disk.

Both answer `since(cursor) -> (events, cursor, finished)`, so one SSE loop serves either. The
live feed's listener only appends to a list (one cheap call per event, on the run's thread);
the server thread reads from it in batches, so a watched run is barely slowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

import orjson

from dagagents.errors import UserError
from dagagents.model.graph import Graph
from dagagents.model.nodes import AgentTask, NodeSpec
from dagagents.store import Store, run_state

if TYPE_CHECKING:
    from dagagents.engine.approvals import ApprovalRequest, Decision

Event = dict[str, Any]


def spec_info(spec: NodeSpec) -> dict[str, Any]:
    """What the page draws for a node before it runs."""
    info: dict[str, Any] = {"kind": spec.kind, "depends_on": list(spec.depends_on)}
    if isinstance(spec, AgentTask):
        info.update(agent=spec.agent.name, model=spec.agent.model)
    return info


class LiveRun:
    """A tracer listener that keeps one in-process run's events (token deltas included) for
    the pages watching it."""

    wants_tokens = True

    def __init__(self, graph: Graph, max_cost_usd: float | None = None) -> None:
        self.graph_name = graph.name
        self.specs = {name: spec_info(spec) for name, spec in graph.specs.items()}
        self.max_cost_usd = max_cost_usd
        self.events: list[Event] = []
        self.run_id: str | None = None
        self.finished = False
        self.started = time.time()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        kind = event["event"]
        if kind == "run_start":
            self.run_id = event["run"]
        elif kind == "run_end":
            self.finished = True

    def since(self, cursor: int) -> tuple[list[Event], int, bool]:
        end = len(self.events)
        return self.events[cursor:end], end, self.finished and end == len(self.events)

    def graph(self) -> dict[str, Any]:
        return {"graph": self.graph_name, "nodes": self.specs, "max_cost_usd": self.max_cost_usd}


class TraceFeed:
    """Tails one run's `trace.jsonl`: new complete lines on each call; finished once the run
    has ended (its `run_end` line) or its process is gone."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.path = store.trace_path(run_id)
        self.offset = 0
        self.partial = b""
        self.ended = False
        self._checked = 0.0

    def _read(self) -> bytes:
        if self.store.is_local:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self.offset)
                    data = fh.read()
            except FileNotFoundError:
                return b""
        else:
            data = (self.store.fs.read(self.path) or b"")[self.offset :]
        self.offset += len(data)
        return data

    def since(self, cursor: int) -> tuple[list[Event], int, bool]:
        data = self.partial + self._read()
        lines = data.split(b"\n")
        self.partial = lines.pop()  # an incomplete last line waits for the rest
        events = []
        for line in lines:
            if line.strip():
                with contextlib.suppress(orjson.JSONDecodeError):
                    events.append(orjson.loads(line))
        if any(e.get("event") == "run_end" for e in events):
            self.ended = True
        now = time.monotonic()
        if not self.ended and not events and now - self._checked > 1.0:
            self._checked = now
            with contextlib.suppress(Exception):
                if run_state(self.store.read_manifest(self.run_id)) != "running":
                    self.ended = True
        return events, cursor + len(events), self.ended


def store_graph(store: Store, run_id: str) -> dict[str, Any]:
    """A stored run's nodes as far as its manifest knows them (all, once it has finished)."""
    manifest = store.read_manifest(run_id)
    specs = manifest.get("specs") or {}
    nodes = {
        name: {
            "kind": spec.get("kind"),
            "agent": spec.get("agent"),
            "model": spec.get("model"),
            "depends_on": spec.get("depends_on", []),
        }
        for name, spec in specs.items()
    }
    return {"graph": manifest.get("graph"), "nodes": nodes, "max_cost_usd": None}


def run_list(store: Store | None, live: LiveRun | None, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first: id, graph, status, started, wall and cost of each run."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    if live is not None and live.run_id is not None:
        seen.add(live.run_id)
        end = next((e for e in reversed(live.events) if e["event"] == "run_end"), None)
        out.append(
            {
                "run": live.run_id,
                "graph": live.graph_name,
                "status": end["status"] if end else "running",
                "started": live.started,
                "wall": end["wall"] if end else None,
                "cost": end["cost"] if end else None,
            }
        )
    if store is None:
        return out
    for run_id in reversed(store.list_runs()[-limit:]):
        if run_id in seen:
            continue
        try:
            manifest = store.read_manifest(run_id)
        except Exception:
            continue
        nodes = manifest.get("nodes") or {}
        out.append(
            {
                "run": run_id,
                "graph": manifest.get("graph"),
                "status": run_state(manifest),
                "started": manifest.get("started"),
                "wall": manifest.get("wall"),
                "cost": sum(
                    float(n.get("cost_usd") or 0.0)
                    for n in nodes.values()
                    if n.get("status") == "done"
                )
                if nodes
                else None,
            }
        )
    return out


class WebApprovals:
    """An `approver=` for a run watched in the web view: each approval node waits for the
    page's Approve/Reject button. `decide` is called from the server's thread."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[Decision]]] = {}
        self._lock = threading.Lock()

    async def __call__(self, request: ApprovalRequest) -> Decision:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision] = loop.create_future()
        with self._lock:
            self._pending[request.node] = (loop, future)
        try:
            return await future
        finally:
            with self._lock:
                self._pending.pop(request.node, None)

    def waiting(self, node: str) -> bool:
        with self._lock:
            return node in self._pending

    def decide(self, node: str, approved: bool, value: Any, reason: str | None) -> None:
        with self._lock:
            entry = self._pending.pop(node, None)
        if entry is None:
            raise UserError(f"node '{node}' is not waiting for approval.")
        from dagagents.engine.approvals import Decision

        loop, future = entry
        decision = Decision(approved=approved, value=value, reason=reason)

        def resolve() -> None:
            if not future.done():
                future.set_result(decision)

        loop.call_soon_threadsafe(resolve)
