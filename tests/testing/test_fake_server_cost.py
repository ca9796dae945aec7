"""The fake server's cost features through the real SDK: prompt-cache semantics, Message Batches,
count_tokens (its own rate limit)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anthropic
import pytest
from _anthropic_support import KEY

from dagagents.testing import FakeAnthropic, fake_anthropic_fixture  # noqa: F401

MODEL = "claude-sonnet-4-6"  # minimum cacheable length 2,048 tokens
LONG = [{"type": "text", "text": "Rule: be exact. " * 1600, "cache_control": {"type": "ephemeral"}}]


def client_for(api: FakeAnthropic) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=KEY, base_url=api.url, max_retries=0)


async def ask(client: anthropic.AsyncAnthropic, prompt: str, system: Any = LONG, **kw: Any) -> Any:
    message = await client.messages.create(
        model=kw.pop("model", MODEL),
        max_tokens=20,
        system=system,
        messages=[{"role": "user", "content": prompt}],
        **kw,
    )
    return message.usage


async def test_parallel_requests_each_write_the_cache_until_one_response_has_begun(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.latency = 0.3
    client = client_for(fake_anthropic)
    together = await asyncio.gather(*(ask(client, f"q{i}") for i in range(4)))
    later = await ask(client, "after")
    await client.close()
    prefix = together[0].cache_creation_input_tokens
    assert prefix > 6000
    assert [u.cache_creation_input_tokens for u in together] == [prefix] * 4
    assert all(u.cache_read_input_tokens == 0 for u in together)
    assert later.cache_read_input_tokens == prefix and later.cache_creation_input_tokens == 0
    totals = fake_anthropic.usage_totals()
    assert totals["cache_writes"] == 4 and totals["cache_reads"] == 1


async def test_a_streamed_response_makes_the_prefix_readable_at_its_first_event(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.stream_delay = 0.05  # a slow stream: ~2 s after the first event
    client = client_for(fake_anthropic)
    async with client.messages.stream(
        model=MODEL, max_tokens=400, system=LONG, messages=[{"role": "user", "content": "lead"}]
    ) as stream:
        async for _event in stream:
            break  # the response has begun; the leader is still streaming
        follower = await ask(client, "follow")
        await stream.get_final_message()
    await client.close()
    assert follower.cache_read_input_tokens > 6000 and follower.cache_creation_input_tokens == 0


async def test_below_the_minimum_nothing_is_cached_and_minimums_are_per_model(
    fake_anthropic: FakeAnthropic,
) -> None:
    short = [{"type": "text", "text": "x " * 3000, "cache_control": {"type": "ephemeral"}}]
    client = client_for(fake_anthropic)
    sonnet = [await ask(client, f"s{i}", system=short) for i in range(2)]  # 1,500 < 2,048
    opus = [await ask(client, f"o{i}", system=short, model="claude-opus-4-1") for i in range(2)]
    await client.close()
    assert all(u.cache_creation_input_tokens == u.cache_read_input_tokens == 0 for u in sonnet)
    assert opus[0].cache_creation_input_tokens > 0  # claude-opus-4-1's minimum is 1,024
    assert opus[1].cache_read_input_tokens == opus[0].cache_creation_input_tokens


async def test_entries_expire_after_their_ttl_and_reads_refresh_it(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.cache.ttl_scale = 0.002  # 5 minutes -> 0.6 s, 1 hour -> 7.2 s
    hour = [{**LONG[0], "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    client = client_for(fake_anthropic)
    first = await ask(client, "a")
    await asyncio.sleep(0.4)
    refreshed = await ask(client, "b")  # a read at 0.4 s keeps it for another 0.6 s
    await asyncio.sleep(0.4)
    still = await ask(client, "c")
    await asyncio.sleep(0.8)
    gone = await ask(client, "d")
    long_lived = [await ask(client, "e", system=hour)]
    await asyncio.sleep(0.8)
    long_lived.append(await ask(client, "f", system=hour))
    await client.close()
    assert first.cache_creation_input_tokens > 0
    assert refreshed.cache_read_input_tokens > 0 and still.cache_read_input_tokens > 0
    assert gone.cache_creation_input_tokens > 0 and gone.cache_read_input_tokens == 0
    assert long_lived[1].cache_read_input_tokens > 0


async def test_message_breakpoints_read_the_longest_cached_prefix(
    fake_anthropic: FakeAnthropic,
) -> None:
    document = {"type": "text", "text": "Clause. " * 3000, "cache_control": {"type": "ephemeral"}}
    client = client_for(fake_anthropic)

    async def on_doc(question: str) -> Any:
        message = await client.messages.create(
            model=MODEL,
            max_tokens=20,
            system=LONG,
            messages=[{"role": "user", "content": [document, {"type": "text", "text": question}]}],
        )
        return message.usage

    system_only = await ask(client, "warm the system prompt")
    with_doc = await on_doc("q1")
    again = await on_doc("q2")
    await client.close()
    assert with_doc.cache_read_input_tokens == system_only.cache_creation_input_tokens
    assert with_doc.cache_creation_input_tokens > 5000  # the document part only
    assert again.cache_read_input_tokens == (
        with_doc.cache_read_input_tokens + with_doc.cache_creation_input_tokens
    )


async def test_count_tokens_is_exact_free_of_side_effects_and_rate_limited(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.count_tokens_limit(2)
    client = client_for(fake_anthropic)
    counted = await client.messages.count_tokens(
        model=MODEL, system=LONG, messages=[{"role": "user", "content": "q"}]
    )
    usage = await ask(client, "q")
    await client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "q"}])
    with pytest.raises(anthropic.RateLimitError) as info:
        await client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "q"}])
    await client.close()
    assert usage.cache_creation_input_tokens > 0  # counting did not warm the cache
    total = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    assert counted.input_tokens == total
    assert "token counting" in str(info.value.api_message)


def batch_request(custom_id: str, prompt: str, **params: Any) -> dict[str, Any]:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 30,
        "messages": [{"role": "user", "content": prompt}],
    }
    return {"custom_id": custom_id, "params": {**body, **params}}


async def wait_ended(client: anthropic.AsyncAnthropic, batch_id: str) -> Any:
    while True:
        batch = await client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        await asyncio.sleep(0.05)


async def test_a_batch_processes_then_serves_results_by_custom_id(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.batches.delay = 0.3
    fake_anthropic.reply("the answer", pattern="^alpha")
    fake_anthropic.batches.fail("errored", custom_id="^b$", error_type="overloaded_error")
    fake_anthropic.batches.fail("expired", custom_id="^c$")
    client = client_for(fake_anthropic)
    created = await client.messages.batches.create(
        requests=[
            batch_request("a", "alpha"),
            batch_request("b", "beta"),
            batch_request("c", "gamma"),
        ]
    )
    assert created.processing_status == "in_progress" and created.results_url is None
    assert created.request_counts.processing == 3
    assert (created.expires_at - created.created_at).total_seconds() == 24 * 3600
    with pytest.raises(anthropic.AnthropicError, match="finished processing"):
        await client.messages.batches.results(created.id)
    started = time.monotonic()
    ended = await wait_ended(client, created.id)
    waited = time.monotonic() - started
    results = {r.custom_id: r.result async for r in await client.messages.batches.results(ended.id)}
    listed = await client.messages.batches.list()
    await client.close()
    assert waited > 0.1  # it took its processing time
    counts = ended.request_counts
    assert (counts.succeeded, counts.errored, counts.expired, counts.processing) == (1, 1, 1, 0)
    assert results["a"].type == "succeeded" and results["a"].message.content[0].text == "the answer"  # type: ignore[union-attr]
    assert results["b"].type == "errored" and results["b"].error.error.type == "overloaded_error"  # type: ignore[union-attr]
    assert results["c"].type == "expired"
    assert [b.id for b in listed.data] == [created.id]
    assert fake_anthropic.batches.requests_for("a") == [created.id]
    assert fake_anthropic.usage_totals()["batched"] == 1


async def test_batch_limits_and_validation(fake_anthropic: FakeAnthropic) -> None:
    client = client_for(fake_anthropic)
    fake_anthropic.batches.max_requests = 3  # the API's 100,000, made testable
    with pytest.raises(anthropic.BadRequestError, match="at most 3 requests"):
        await client.messages.batches.create(
            requests=[batch_request(f"r{i}", "x") for i in range(4)]
        )
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        await client.messages.batches.create(requests=[batch_request("bad id!", "x")])
    with pytest.raises(anthropic.BadRequestError, match="duplicate"):
        await client.messages.batches.create(requests=[batch_request("a", "x")] * 2)
    fake_anthropic.batches.max_bytes = 1000  # the API's 256 MB
    with pytest.raises(anthropic.APIStatusError) as info:
        await client.messages.batches.create(requests=[batch_request("big", "x" * 2000)])
    fake_anthropic.batches.max_bytes = 256 * 1024 * 1024
    bad = await client.messages.batches.create(
        requests=[{"custom_id": "nomodel", "params": {"max_tokens": 5, "messages": []}}]
    )
    ended = await wait_ended(client, bad.id)
    results = [r async for r in await client.messages.batches.results(ended.id)]
    await client.close()
    assert info.value.status_code == 413
    assert results[0].result.type == "errored"  # bad params error per request, as the API does
    assert fake_anthropic.batches.max_requests == 3 and len(fake_anthropic.batches.submitted) == 1


async def test_cancel_ends_a_batch_with_canceled_results_and_delete_needs_it_ended(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.batches.delay = 30
    client = client_for(fake_anthropic)
    batch = await client.messages.batches.create(requests=[batch_request("a", "x")])
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.batches.delete(batch.id)
    canceled = await client.messages.batches.cancel(batch.id)
    results = [r async for r in await client.messages.batches.results(batch.id)]
    deleted = await client.messages.batches.delete(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.batches.retrieve(batch.id)
    await client.close()
    assert canceled.cancel_initiated_at is not None
    assert canceled.request_counts.canceled == 1
    assert results[0].result.type == "canceled" and deleted.id == batch.id
