"""A simulated provider that keeps every request it answers, and where events fall in a run's
trace (orchestrator, streamed-plan and streamed-map tests)."""

from __future__ import annotations

from typing import Any

from dagagents import SimulatedProvider
from dagagents.providers.base import Request, Response


class Recording(SimulatedProvider):
    """A SimulatedProvider that keeps every request it answers, streamed ones included."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.requests: list[Request] = []

    async def complete(self, request: Request, **options: Any) -> Response:
        self.requests.append(request)
        return await super().complete(request, **options)

    def by_node(self, node: str) -> list[Request]:
        return [r for r in self.requests if r.node == node]

    def prompts(self, node: str) -> list[str]:
        return [r.messages[0]["content"] for r in self.by_node(node)]


def order(result: Any) -> list[tuple[str, Any]]:
    """The run's trace as (event, node) pairs, in order."""
    return [(e["event"], e.get("node")) for e in result.events]


def position(result: Any, event: str, node: str) -> int:
    """Where `node`'s `event` falls in the run's trace."""
    return order(result).index((event, node))


def streamed_expands(result: Any) -> list[dict[str, Any]]:
    """The growths made while a reply was still streaming."""
    return [e for e in result.events if e["event"] == "expand" and e.get("streamed")]
