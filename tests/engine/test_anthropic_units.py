"""Unit tests of the pieces under the Anthropic path: buckets, AIMD, budget, retry, pricing."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest

from dagagents import Agent
from dagagents.engine.limits import (
    AdaptiveConcurrency,
    Limiter,
    RateLimits,
    TokenBucket,
    estimate_input_tokens,
)
from dagagents.engine.retry import RetryPolicy, deadline
from dagagents.errors import BudgetExceeded, ProviderError, UserError
from dagagents.observe.pricing import Pricing, cost_usd, default_pricing
from dagagents.providers.base import Request, Response, Usage, request_arrived

MODEL = "claude-sonnet-4-6"


def request(text: str = "hi", max_tokens: int = 100, model: str = MODEL) -> Request:
    return Request(model=model, messages=[{"role": "user", "content": text}], max_tokens=max_tokens)


# ----------------------------------------------------------------------------- buckets
async def test_bucket_serves_the_burst_then_refills_continuously() -> None:
    bucket = TokenBucket(600, capacity=10)  # 10 a second
    start = time.monotonic()
    for _ in range(10):
        assert await bucket.take(1) == 0.0
    for _ in range(5):
        await bucket.take(1)
    assert 0.45 <= time.monotonic() - start <= 1.5  # 5 tokens at 10/s; slack for a busy box


async def test_bucket_waiters_are_served_in_order() -> None:
    bucket = TokenBucket(1200, capacity=1)  # one token every 50 ms
    await bucket.take(1)
    order: list[int] = []

    async def taker(i: int) -> None:
        await bucket.take(1)
        order.append(i)

    await asyncio.gather(*(taker(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]


async def test_a_burst_from_a_full_bucket_refills_only_once_the_server_has_answered() -> None:
    """The server's bucket refills from the first request's arrival, not from our admission:
    after a take from a full bucket nothing accrues until a call admitted since is answered."""
    bucket = TokenBucket(600, capacity=10, hold=60.0)  # 10 a second once refilling
    before = time.monotonic()  # admitted before the hold began: its answer proves nothing
    assert bucket.try_take(10)
    admitted = time.monotonic()
    await asyncio.sleep(0.2)  # two tokens' worth of time
    assert not bucket.try_take(1) and bucket.level == 0  # held: nothing accrued
    bucket.arrived(before)
    await asyncio.sleep(0.05)
    assert not bucket.try_take(1) and bucket.level == 0  # still held
    bucket.arrived(admitted)  # the server has seen the burst: refill from now on
    assert await bucket.take(1) >= 0.0 and bucket.level < 1
    assert bucket.try_take(0) and not bucket._held_until  # a take from below the top holds nothing


async def test_the_simulated_model_has_the_request_at_once_so_the_hold_ends_before_its_answer() -> (
    None
):
    """The simulated provider reports its request arrived before it answers (no wire):
    a burst's refill starts then, as through the real SDK, not at the answer."""
    from dagagents.providers.simulated import SimulatedProvider

    limiter = Limiter(RateLimits(rpm=60))
    provider = SimulatedProvider(time_scale=0.01)
    req = request()
    bucket = limiter.for_model(req.model).requests
    assert bucket is not None
    order: list[tuple[str, bool]] = []
    async with limiter.slot(req) as slot:
        order.append(("admitted: held", bucket.holding))

        async def arrived() -> None:
            await slot.arrived()
            order.append(("arrived: held", bucket.holding))

        token = request_arrived.set(arrived)
        try:
            response = await provider.complete(req)
        finally:
            request_arrived.reset(token)
        order.append(("answered", True))
        slot.done(response)
    assert order == [("admitted: held", True), ("arrived: held", False), ("answered", True)]


async def test_the_hold_ends_by_itself_if_no_answer_comes() -> None:
    bucket = TokenBucket(6000, capacity=10, hold=0.05)
    assert bucket.try_take(10)
    assert await bucket.take(1) > 0  # waited out the hold, then one token's refill


async def test_request_bucket_keeps_one_token_of_headroom() -> None:
    limiter = Limiter(RateLimits(rpm=60))
    bucket = limiter.for_model(MODEL).requests
    assert bucket is not None and bucket.level == 59  # skew insurance against the server's bucket


async def test_input_estimate_is_reconciled_and_output_refunded() -> None:
    limiter = Limiter(RateLimits(itpm=100_000, otpm=50_000))
    m = limiter.for_model(MODEL)
    assert m.input is not None and m.output is not None
    in0, out0 = m.input.level, m.output.level
    req = request("x" * 4000, max_tokens=2000)
    async with limiter.slot(req) as slot:
        assert m.output.level == pytest.approx(out0 - 2000, abs=5)  # max_tokens reserved
        assert m.input.level == pytest.approx(in0 - slot.est_input, abs=5)
        usage = Usage(input_tokens=700, output_tokens=150, cache_read_input_tokens=90_000)
        slot.done(Response(content=[], usage=usage))
    # Charged what was used: 700 input (cache reads are free for ITPM) and 150 output.
    assert m.input.level == pytest.approx(in0 - 700, abs=60)  # (it refills meanwhile)
    assert m.output.level == pytest.approx(out0 - 150, abs=60)


async def test_a_failed_call_gives_its_token_reservations_back() -> None:
    limiter = Limiter(RateLimits(itpm=100_000, otpm=50_000))
    m = limiter.for_model(MODEL)
    assert m.input is not None and m.output is not None
    in0, out0 = m.input.level, m.output.level
    with pytest.raises(ProviderError):
        async with limiter.slot(request(max_tokens=4000)):
            raise ProviderError("boom", status=500, retryable=True)
    assert m.input.level == pytest.approx(in0, abs=5)
    assert m.output.level == pytest.approx(out0, abs=5)


async def test_a_call_cancelled_while_queued_gives_back_only_what_it_took() -> None:
    limiter = Limiter(RateLimits(rpm=60, itpm=100_000))
    m = limiter.for_model(MODEL)
    assert m.requests is not None and m.input is not None
    m.requests.level = 0.0  # the next call must wait ~1 s for a request token
    m.input.level = in0 = 50_000.0
    waiter = asyncio.ensure_future(limiter.slot(request("x" * 40_000)).__aenter__())
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    m.input.give(0)  # refill to now
    assert m.input.level == pytest.approx(in0, abs=300)  # no credit for ~10k tokens never taken
    assert m.concurrency.in_flight == 0


def test_estimate_counts_system_tools_and_messages() -> None:
    small, _ = estimate_input_tokens(request("hello"))
    req = Request(
        model=MODEL,
        system="s" * 4000,
        tools=[{"name": "t", "description": "d" * 400, "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "m" * 8000}],
    )
    total, prefix = estimate_input_tokens(req)
    assert 3000 <= total <= 3300 and 1100 <= prefix <= 1150 and small <= 25


def test_headers_calibrate_missing_and_too_high_limits() -> None:
    limiter = Limiter(RateLimits(rpm=1000))
    m = limiter.for_model(MODEL)
    m.calibrate(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-input-tokens-limit": "30000",
            "anthropic-ratelimit-input-tokens-remaining": "12000",
        }
    )
    assert m.requests is not None and m.requests.capacity == 50  # lowered to the server's
    assert m.input is not None and m.input.capacity == 30000 and m.input.level <= 12000
    assert m.output is None  # nothing known, nothing invented


# ----------------------------------------------------------------------------- AIMD
async def test_aimd_halves_once_per_congestion_event_then_recovers() -> None:
    conc = AdaptiveConcurrency(16)
    epoch = await conc.acquire()
    assert conc.overload(epoch) and conc.limit == 8
    assert not conc.overload(epoch)  # a second report from the same window changes nothing
    conc.release()
    epoch = await conc.acquire()
    assert conc.overload(epoch) and conc.limit == 4
    conc.release()
    for _ in range(200):
        conc.success()
    assert conc.limit == 16


async def test_aimd_limit_is_enforced() -> None:
    conc = AdaptiveConcurrency(2)
    await conc.acquire()
    await conc.acquire()
    waiter = asyncio.ensure_future(conc.acquire())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    conc.release()
    await asyncio.wait_for(waiter, 1)
    assert conc.in_flight == 2


async def test_429_pauses_the_model_for_retry_after() -> None:
    limiter = Limiter(concurrency=4)
    with pytest.raises(ProviderError):
        async with limiter.slot(request()):
            raise ProviderError("slow down", status=429, retryable=True, retry_after=0.3)
    start = time.monotonic()
    async with limiter.slot(request()) as slot:
        slot.done(Response(content=[]))
    assert time.monotonic() - start >= 0.29
    assert limiter.for_model(MODEL).concurrency.limit == 2.5  # halved from 4, then +1/2


# ----------------------------------------------------------------------------- budget
async def test_budget_refuses_a_call_whose_worst_case_does_not_fit() -> None:
    limiter = Limiter(max_cost_usd=0.02)
    # worst case of one call: 1000 output tokens x $15/MTok = $0.015 (+ a little input)
    async with limiter.slot(request(max_tokens=1000)) as slot:
        with pytest.raises(BudgetExceeded, match=r"budget of \$0\.0200 reached"):
            async with limiter.slot(request(max_tokens=1000), node="second"):
                pass
        slot.done(Response(content=[], usage=Usage(input_tokens=10, output_tokens=10)))
    async with limiter.slot(request(max_tokens=1000)) as slot:  # fits now: little was spent
        slot.done(Response(content=[], usage=Usage(output_tokens=1000)))
    with pytest.raises(BudgetExceeded, match="node 'third'"):
        async with limiter.slot(request(max_tokens=1000), node="third"):
            pass
    assert limiter.spent_usd <= 0.02


async def test_budget_needs_a_price_for_the_model() -> None:
    limiter = Limiter(max_cost_usd=1.0)
    with pytest.raises(UserError, match="no price is known for model 'my-finetune'"):
        async with limiter.slot(request(model="my-finetune")):
            pass


# ----------------------------------------------------------------------------- retry
def test_retry_waits_what_the_server_asks_else_jittered_exponential() -> None:
    policy = RetryPolicy(initial=1.0, multiplier=2.0, max_wait=5.0)
    rng = random.Random(0)
    asked = ProviderError("429", status=429, retryable=True, retry_after=3.0)
    assert all(3.0 <= policy.wait_seconds(1, asked, rng) <= 3.35 for _ in range(50))
    plain = ProviderError("529", status=529, retryable=True)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 5.0)]:
        waits = [policy.wait_seconds(attempt, plain, rng) for _ in range(50)]
        assert all(base / 2 <= w <= base for w in waits) and len(set(waits)) > 1


def test_retry_decides_by_the_error() -> None:
    policy = RetryPolicy(max_retry_after=60)
    assert policy.should_retry(ProviderError("x", status=529, retryable=True))
    assert not policy.should_retry(ProviderError("x", status=400))
    assert not policy.should_retry(ValueError("x"))
    assert not policy.should_retry(ProviderError("x", retryable=True, retry_after=3600))


async def test_retry_counts_attempts_traces_each_and_reraises() -> None:
    events: list[tuple[str, dict]] = []
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise ProviderError("overloaded", status=529, retryable=True, kind="overloaded_error")

    policy = RetryPolicy(max_attempts=3, initial=0.001, max_wait=0.01)
    with pytest.raises(ProviderError, match="overloaded"):
        await policy.call(flaky, node="n", emit=lambda e, **f: events.append((e, f)))
    assert calls == 3
    assert [f["attempt"] for _, f in events] == [1, 2]
    assert all(e == "retry" and f["node"] == "n" and f["status"] == 529 for e, f in events)


def test_agent_overrides_attempts_and_timeout() -> None:
    policy = RetryPolicy(max_attempts=8, timeout=None).for_agent(
        Agent("a", retries=2, timeout=30.0)
    )
    assert (policy.max_attempts, policy.timeout) == (2, 30.0)
    assert RetryPolicy().for_agent(Agent("b")) == RetryPolicy()


async def test_deadline_turns_a_hang_into_a_retryable_timeout() -> None:
    with pytest.raises(ProviderError) as info:
        async with deadline(0.05, "call"):
            await asyncio.sleep(1)
    assert info.value.retryable and info.value.kind == "timeout"


# ----------------------------------------------------------------------------- pricing
def test_prices_match_by_exact_id_or_dated_snapshot_only() -> None:
    pricing = default_pricing()
    opus46 = pricing.lookup("claude-opus-4-6")
    assert opus46 is not None and (opus46.input, opus46.output) == (5.0, 25.0)
    assert pricing.lookup("claude-opus-4-20250514") == pricing.lookup("claude-opus-4")
    assert pricing.lookup("claude-sonnet-4-5-20250929") == pricing.lookup("claude-sonnet-4-5")
    assert pricing.lookup("claude-haiku-4-5-20251001") == pricing.lookup("claude-haiku-4-5")
    assert pricing.lookup("claude-opus-4-9") is None  # never priced as claude-opus-4
    assert pricing.lookup("gpt-5") is None


def test_cost_prices_every_token_kind() -> None:
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_creation_input_tokens=1_000_000,
        cache_read_input_tokens=1_000_000,
    )
    assert cost_usd("claude-sonnet-4-6", usage) == pytest.approx(3 + 15 + 3.75 + 0.30)
    assert cost_usd("claude-haiku-4-5", usage) == pytest.approx(1 + 5 + 1.25 + 0.10)
    assert cost_usd("claude-opus-4-6", usage) == pytest.approx(5 + 25 + 6.25 + 0.50)
    assert cost_usd("unknown-model", usage) == 0.0


def test_pricing_overrides_from_env_and_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "env.json"
    env_file.write_text(
        json.dumps(
            {
                "models": {
                    "my-finetune": {"input": 2, "output": 8, "cache_write": 2.5, "cache_read": 0.2}
                }
            }
        )
    )
    arg_file = tmp_path / "arg.json"
    arg_file.write_text(json.dumps({"claude-sonnet-4-6": {"output": 12.0}}))
    monkeypatch.setenv("DAGAGENTS_PRICING", str(env_file))
    pricing = Pricing.load(arg_file)
    assert pricing.lookup("my-finetune").input == 2  # type: ignore[union-attr]
    sonnet = pricing.lookup("claude-sonnet-4-6")
    assert sonnet is not None and (sonnet.input, sonnet.output) == (3.0, 12.0)  # merged per field
    assert default_pricing().lookup("my-finetune") is not None  # the env file applies by default
    monkeypatch.delenv("DAGAGENTS_PRICING")
    assert default_pricing().lookup("my-finetune") is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        Pricing.load(bad)
    with pytest.raises(UserError, match="does not exist"):
        Pricing.load(tmp_path / "missing.json")
