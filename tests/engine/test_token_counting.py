"""Pre-flight count_tokens through the real SDK against the fake server."""

from __future__ import annotations

from _anthropic_support import provider_for, run_graph

from dagagents import Agent, Graph, RateLimits
from dagagents.testing import FakeAnthropic, fake_anthropic_fixture  # noqa: F401


def shapes() -> Graph:
    # Text the 4-characters-a-token estimate gets wrong: the fake tokenizer counts JSON bytes.
    code = Agent("coder", model="claude-haiku-4-5", system='def f(x):\n\t"é" ' * 60)
    prose = Agent("writer", model="claude-haiku-4-5", system="Ünïcödé prose. " * 80)
    g = Graph("shapes")
    for i in range(3):
        g.task(f"code{i}", code, f"Refactor step {i}.")
        g.task(f"prose{i}", prose, f"Write paragraph {i}.")
    return g


def test_first_call_of_each_shape_reserves_exactly_what_the_api_counts(
    fake_anthropic: FakeAnthropic,
) -> None:
    result = run_graph(
        shapes(),
        provider=provider_for(fake_anthropic),
        concurrency=1,
        rate_limits=RateLimits(itpm=1_000_000),
        count_tokens=True,
    )
    assert result.ok, result.errors
    counts = [r for r in fake_anthropic.requests if r.path == "/v1/messages/count_tokens"]
    assert len(counts) == 2  # one per prompt shape, not one per call
    served = {
        (r.body or {})["messages"][0]["content"]: sum((r.usage or {}).values())
        - r.usage["output_tokens"]  # type: ignore[index]
        for r in fake_anthropic.message_requests
    }
    counted = {e["node"]: e for e in result.events if e["event"] == "token_count"}
    assert sorted(counted) == ["code0", "prose0"]
    calls = {e["node"]: e for e in result.events if e["event"] == "llm_call"}
    for node, prompt in (("code0", "Refactor step 0."), ("prose0", "Write paragraph 0.")):
        assert counted[node]["tokens"] == served[prompt]
        assert counted[node]["estimate"] != served[prompt]  # the estimate alone was off
        assert calls[node]["reserved_input"] == served[prompt]  # and the exact count was used
    # Repeats use the estimate scaled by the first call's correction: close, not asked again.
    for node, prompt in (("code2", "Refactor step 2."), ("prose2", "Write paragraph 2.")):
        assert abs(calls[node]["reserved_input"] - served[prompt]) <= 0.05 * served[prompt]


def test_the_endpoints_own_rate_limit_is_respected(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.count_tokens_limit(1)  # one count a minute, then 429 with retry-after
    g = shapes()
    result = run_graph(g, provider=provider_for(fake_anthropic), concurrency=1, count_tokens=True)
    assert result.ok, result.errors  # calls went on with the estimate
    counts = [r for r in fake_anthropic.requests if r.path == "/v1/messages/count_tokens"]
    assert [r.status for r in counts] == [200, 429]  # then paused for the retry-after
    assert len([e for e in result.events if e["event"] == "token_count"]) == 1


def test_offline_the_option_warns_once_and_the_run_goes_on() -> None:
    from dagagents import SimulatedProvider

    quick = SimulatedProvider(time_scale=0.05)
    result = shapes().run(provider=quick, store=None, count_tokens=True)
    assert result.ok
    warnings = [e for e in result.events if e["event"] == "warning"]
    assert len(warnings) == 1 and "needs the Anthropic provider" in warnings[0]["message"]
