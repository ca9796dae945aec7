"""One invocation of an agent: the request, the tool-use loop, structured output, usage.

The scheduler calls `invoke_agent` for each AgentTask node. Retries, rate limits and the cost
budget wrap every provider call made here, so they are counted once and traced in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagagents.agents import Agent
from dagagents.providers.base import Provider, Request, Response, Usage

Emit = Callable[..., None]


def _no_emit(event: str, **fields: Any) -> None:
    return None


@dataclass
class CallContext:
    """What an invocation needs from the run: the provider and the trace sink."""

    provider: Provider
    node: str
    emit: Emit = _no_emit
    # Filled in by the run: rate limiter, retry policy, pricing, budget (see limits/retry).
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentResult:
    """The node's output and what it cost to get it."""

    output: Any
    usage: Usage
    model: str
    calls: int = 1
    simulated: bool = False
    responses: list[Response] = field(default_factory=list)


async def invoke_agent(agent: Agent, prompt: str, ctx: CallContext) -> AgentResult:
    """Ask `agent` to answer `prompt`. Returns the text (or the parsed output model)."""
    request = Request(
        model=agent.model,
        system=agent.system or None,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=agent.max_tokens,
        temperature=agent.temperature,
        timeout=agent.timeout,
        node=ctx.node,
        agent=agent.name,
    )
    response = await ctx.provider.complete(request)
    output: Any = response.text
    if agent.output is not None:
        output = agent.output.model_validate_json(response.text)
    return AgentResult(
        output=output,
        usage=response.usage,
        model=response.model or agent.model,
        simulated=response.simulated,
        responses=[response],
    )
