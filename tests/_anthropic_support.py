"""Helpers shared by the test_anthropic_* tests (real SDK, real HTTP on loopback)."""

from __future__ import annotations

from typing import Any

from dagagents.engine.limits import RateLimits
from dagagents.engine.retry import RetryPolicy
from dagagents.model.graph import Graph
from dagagents.providers.anthropic import AnthropicProvider
from dagagents.testing import FakeAnthropic

KEY = "sk-ant-test-Zq8xW4vT2mN7pL0kR5sY"
FAST_RETRY = RetryPolicy(initial=0.02, max_wait=0.2, seed=1)


def provider_for(api: FakeAnthropic, **kw: Any) -> AnthropicProvider:
    return AnthropicProvider(api_key=KEY, base_url=api.url, **kw)


def run_graph(
    g: Graph,
    *,
    provider: Any,
    concurrency: int = 8,
    rate_limits: RateLimits | None = None,
    max_cost_usd: float | None = None,
    retry: RetryPolicy | None = FAST_RETRY,
    store: Any = None,
    **options: Any,
) -> Any:
    """`g.run(...)` with the Anthropic-path options and a fast retry policy."""
    kwargs: dict[str, Any] = {"concurrency": concurrency, "provider": provider, "store": store}
    kwargs.update(rate_limits=rate_limits, max_cost_usd=max_cost_usd)
    if retry is not None:
        kwargs["retry"] = retry
    return g.run(**kwargs, **options)
