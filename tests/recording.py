"""A simulated provider that keeps every request it answers (orchestrator and streamed-plan tests)."""

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
