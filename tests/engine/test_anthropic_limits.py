"""Retries, rate limits, concurrency and the budget, end to end through the real SDK.

Every graph here runs `AnthropicProvider` (anthropic.AsyncAnthropic, SDK retries off) against
the loopback fake Messages API; nothing in the SDK is patched.
"""

from __future__ import annotations

import asyncio

import pytest
from _anthropic_support import provider_for, run_graph

from dagagents import Agent, Graph
from dagagents.engine.limits import Limiter, RateLimits, counted_by_server
from dagagents.errors import ProviderError
from dagagents.providers.base import Request, request_arrived
from dagagents.testing import FakeAnthropic, fake_anthropic_fixture, text  # noqa: F401

WORKER = Agent("worker", model="claude-sonnet-4-6", max_tokens=200)


def fan(n: int, agent: Agent = WORKER, name: str = "fan") -> Graph:
    g = Graph(name)
    for i in range(n):
        g.task(f"n{i}", agent, f"task number {i}")
    return g


def events(result, kind: str) -> list[dict]:
    return [e for e in result.events if e.get("event") == kind]


def test_429_with_retry_after_is_retried_no_sooner_and_succeeds(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.fail(429, retry_after=1)
    result = run_graph(fan(1), provider=provider_for(fake_anthropic))
    assert result.status == {"n0": "done"}
    first, second = fake_anthropic.requests
    assert first.status == 429 and second.status == 200
    assert first.finished is not None and second.started - first.finished >= 1.0
    (retry,) = events(result, "retry")
    assert retry["node"] == "n0" and retry["attempt"] == 1 and retry["wait"] >= 1.0
    assert "429" in retry["error"]


def test_529_overloaded_is_retried(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail(529, times=2)
    result = run_graph(fan(1), provider=provider_for(fake_anthropic))
    assert result.status == {"n0": "done"}
    assert [r.status for r in fake_anthropic.requests] == [529, 529, 200]
    assert [e["attempt"] for e in events(result, "retry")] == [1, 2]


def test_400_fails_the_node_at_once_skips_descendants_other_branch_finishes(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.fail(400, times=None, pattern="^bad", message="messages.0.content: too long")
    g = Graph("branches")
    g.task("bad", WORKER, "bad request here")
    g.task("after_bad", WORKER, "continue: {bad}", depends_on=["bad"])
    g.task("good", WORKER, "good request")
    g.task("after_good", WORKER, "continue: {good}", depends_on=["good"])
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert result.status == {
        "bad": "failed",
        "after_bad": "skipped",
        "good": "done",
        "after_good": "done",
    }
    error = result.errors["bad"]
    assert "'bad'" in error and "messages.0.content: too long" in error and "400" in error
    assert sum(1 for r in fake_anthropic.requests if r.status == 400) == 1  # never retried
    assert not events(result, "retry")


def test_concurrency_3_means_at_most_3_requests_in_flight(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.latency = 0.1
    result = run_graph(fan(12), provider=provider_for(fake_anthropic), concurrency=3)
    assert result.ok
    assert fake_anthropic.max_in_flight == 3


def test_client_limit_too_high_429s_are_absorbed_by_backoff(fake_anthropic: FakeAnthropic) -> None:
    # The server allows 600/min with a burst of 5; the client believes it may send 10,000/min.
    fake_anthropic.rate_limit(rpm=600, capacity=5)
    result = run_graph(
        fan(30),
        provider=provider_for(fake_anthropic),
        concurrency=30,
        rate_limits=RateLimits(rpm=10_000),
    )
    assert result.ok, result.errors
    statuses = fake_anthropic.statuses()
    assert statuses[429] > 0 and statuses[200] == 30
    assert events(result, "retry") and events(result, "concurrency_reduced")
    # Backoff slowed the client down: the 429s halved its concurrency (AIMD), and every retry
    # waited before the request went out again.
    limits = [e["limit"] for e in events(result, "concurrency_reduced")]
    assert limits[0] == 15  # the first 429 halved the 30 slots
    assert all(e["wait"] > 0 for e in events(result, "retry"))


def test_budget_stops_new_calls(fake_anthropic: FakeAnthropic) -> None:
    # Each call really costs $0.003 (1k input) + $0.015 (1k output) on claude-sonnet-4-6.
    fake_anthropic.reply(text("done", usage={"input_tokens": 1000, "output_tokens": 1000}))
    agent = Agent("w", model="claude-sonnet-4-6", max_tokens=1000)
    result = run_graph(
        fan(6, agent), provider=provider_for(fake_anthropic), concurrency=1, max_cost_usd=0.05
    )
    statuses = list(result.status.values())
    assert statuses.count("done") == 2
    assert len(fake_anthropic.requests) == 2  # refused calls never reached the API
    refused = [e for n, e in result.errors.items() if result.status[n] == "failed"]
    assert refused and all("budget" in e and "$0.0500" in e for e in refused)
    # Once the budget refuses a call, nothing new starts: the rest fail or are skipped.
    assert statuses.count("failed") + statuses.count("skipped") == 4
    assert all("budget" in result.errors[n] for n, st in result.status.items() if st == "skipped")
    assert result.cost_usd <= 0.05


@pytest.mark.slow
def test_rpm_120_token_bucket_150_calls_without_a_single_429(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.rate_limit(rpm=120, capacity=120)
    result = run_graph(
        fan(150),
        provider=provider_for(fake_anthropic),
        concurrency=50,
        rate_limits=RateLimits(rpm=120),
    )
    assert result.ok, result.errors
    assert fake_anthropic.statuses() == {200: 150}
    # The server's own bucket is the judge of pace (no 429 above); the client got there by
    # waiting for its bucket, not by luck: the calls beyond the burst carry `rate_limited`.
    waited = {e["node"] for e in events(result, "rate_limited") if e["limit"] == "rpm"}
    assert 0 < len(waited) <= 150 - 119


def test_per_agent_attempts_and_timeout(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail(500, times=None, pattern="^flaky")
    fake_anthropic.slow(3.0, pattern="^slow")
    g = Graph("overrides")
    g.task("flaky", Agent("f", retries=2), "flaky call")
    g.task("slow", Agent("s", timeout=0.5), "slow call")
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert result.status == {"flaky": "failed", "slow": "done"}
    assert "gave up after 2 attempts" in result.errors["flaky"]
    assert sum(1 for r in fake_anthropic.requests if r.status == 500) == 2
    (timeout,) = [e for e in events(result, "retry") if e["node"] == "slow"]
    assert timeout["kind"] == "timeout"


def test_spend_limit_fails_at_once_with_the_api_message(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail(
        429,
        times=None,
        retry_after=1,
        error_code="enforced_spend_limit_reached",
        message="Your organization has reached its monthly usage threshold.",
    )
    result = run_graph(fan(1), provider=provider_for(fake_anthropic))
    assert result.status == {"n0": "failed"}
    assert "monthly usage threshold" in result.errors["n0"]
    assert len(fake_anthropic.requests) == 1 and not events(result, "retry")


def test_connection_error_refunds_its_request_token(fake_anthropic: FakeAnthropic) -> None:
    # rpm=2 leaves one usable request token (one is headroom) and refills one every 30 s: the
    # retry after a dropped connection can only go at once if the drop gave its token back.
    fake_anthropic.rate_limit(2)
    fake_anthropic.drop(times=1)
    result = run_graph(fan(1), provider=provider_for(fake_anthropic), rate_limits=RateLimits(rpm=2))
    assert result.status == {"n0": "done"}
    assert [r.status for r in fake_anthropic.requests] == [0, 200]
    assert [e["attempt"] for e in events(result, "retry")] == [1]
    assert "connection" in events(result, "retry")[0]["error"]
    assert not [e for e in events(result, "rate_limited") if e["limit"] == "rpm"]


def test_a_failed_call_refunds_its_token_reservations_and_a_429_keeps_its_request() -> None:
    async def scenario() -> tuple[float, float]:
        limiter = Limiter(RateLimits(rpm=6, itpm=100_000, otpm=100_000))  # 1 request per 10 s
        request = Request(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=50)
        m = limiter.for_model("m")
        assert m.requests is not None and m.input is not None and m.output is not None
        before = (m.requests.level, m.input.level)
        slot = limiter.slot(request)
        await slot.__aenter__()
        assert m.requests.level < before[0] and m.input.level < before[1]
        slot.failed(ProviderError("rate limited", status=429, retryable=True))
        return m.requests.level - before[0], m.input.level - before[1]

    requests, tokens = asyncio.run(scenario())
    assert tokens >= 0  # the input reservation came back (and a little refill)
    assert requests < 0  # the 429 kept its request token (the client was ahead)
    assert counted_by_server(ProviderError("x", status=500))
    assert counted_by_server(ProviderError("x", status=429, retryable=True))
    assert not counted_by_server(ProviderError("x", kind="connection"))


@pytest.mark.parametrize("stream", [None, True, False])
def test_a_bursts_refill_starts_when_the_servers_headers_come_before_its_answer(
    fake_anthropic: FakeAnthropic, stream: bool | None
) -> None:
    """Through the real SDK: a call admitted during a burst's hold streams, so the server's
    response headers (sent once it has taken the request) come at once; our http client's
    response hook reports them and the held bucket refills from then, while the server is still
    writing the answer. With `stream=False` the headers come only with the answer."""
    fake_anthropic.latency = 1.0
    fake_anthropic.rate_limit(rpm=60)
    order: list[tuple[str, bool]] = []

    def answered() -> bool:
        return any(r.begun is not None for r in fake_anthropic.requests)

    async def scenario() -> None:
        limiter = Limiter(RateLimits(rpm=60))
        provider = provider_for(fake_anthropic, stream=stream)
        req = Request(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}], max_tokens=16
        )
        bucket = limiter.for_model(req.model).requests
        assert bucket is not None
        try:
            async with limiter.slot(req) as slot:
                order.append(("admitted: held", slot.holding and bucket.holding))

                async def arrived() -> None:
                    order.append(("headers: answered", answered()))
                    await slot.arrived()
                    order.append(("headers: held", bucket.holding))

                token = request_arrived.set(arrived)
                try:
                    response = await provider.complete(req)
                finally:
                    request_arrived.reset(token)
                order.append(("returned: answered", answered()))
                slot.done(response)
        finally:
            await provider.aclose()

    asyncio.run(scenario())
    assert order == [
        ("admitted: held", True),
        ("headers: answered", stream is False),  # a plain response: headers with the answer
        ("headers: held", False),
        ("returned: answered", True),
    ]
