"""Helpers shared by the test_anthropic_* tests (real SDK, real HTTP on loopback)."""

from __future__ import annotations

import inspect
from typing import Any

from dagagents.graph import Graph
from dagagents.limits import Limiter, RateLimits
from dagagents.providers.anthropic import AnthropicProvider
from dagagents.retry import RetryPolicy
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
    """`g.run(...)` with the Anthropic-path options.

    Uses the runtime's own `rate_limits=` / `max_cost_usd=` / `retry=` arguments when it has
    them, else hands a per-run `Limiter` and the policy over through `call_options`.
    """
    from dagagents import runtime

    params = inspect.signature(runtime.arun).parameters
    call_options: dict[str, Any] = dict(options.pop("call_options", {}) or {})
    kwargs: dict[str, Any] = {"concurrency": concurrency, "provider": provider, "store": store}
    if "rate_limits" in params and "max_cost_usd" in params:
        kwargs["rate_limits"] = rate_limits
        kwargs["max_cost_usd"] = max_cost_usd
    else:
        call_options["limiter"] = Limiter(
            rate_limits, concurrency=concurrency, max_cost_usd=max_cost_usd
        )
    if retry is not None:
        if "retry" in params:
            kwargs["retry"] = retry
        else:
            call_options["retry"] = retry
    kwargs["call_options"] = call_options
    return g.run(**kwargs, **options)
