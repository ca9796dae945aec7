"""The fake Messages API itself: wire format, scripting, faults, limits, concurrency, CLI."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import anthropic
import pytest
from _anthropic_support import KEY

from dagagents.testing import (
    FakeAnthropic,
    fake_anthropic_fixture,  # noqa: F401 (the `fake_anthropic` fixture)
    text,
    tool_call,
)

MODEL = "claude-haiku-4-5"


def client_for(api: FakeAnthropic) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=KEY, base_url=api.url, max_retries=0)


async def ask(client: anthropic.AsyncAnthropic, prompt: str, model: str = MODEL) -> str:
    message = await client.messages.create(
        model=model, max_tokens=50, messages=[{"role": "user", "content": prompt}]
    )
    return "".join(b.text for b in message.content if b.type == "text")


async def test_serves_many_concurrent_connections(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.latency = 0.3
    client = client_for(fake_anthropic)
    start = time.monotonic()
    answers = await asyncio.gather(*(ask(client, f"q{i}") for i in range(64)))
    wall = time.monotonic() - start
    await client.close()
    assert len(answers) == 64 and fake_anthropic.max_in_flight == 64
    assert wall < 4.0  # all 64 overlapped: one 0.3 s wave, not 64 of them (19 s)


async def test_scripting_by_model_pattern_sequence_and_times(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply("opus says hi", model="claude-opus")
    fake_anthropic.reply("first", "second", pattern=r"^count")
    fake_anthropic.reply("only once", pattern=r"^once", times=1)
    fake_anthropic.reply(lambda r: f"echo {len(r['messages'])}", pattern=r"^echo")
    client = client_for(fake_anthropic)
    got = [
        await ask(client, "hello", model="claude-opus-4-6"),
        await ask(client, "count"),
        await ask(client, "count"),
        await ask(client, "count"),
        await ask(client, "once"),
        await ask(client, "once"),
        await ask(client, "echo"),
    ]
    await client.close()
    assert got == [
        "opus says hi",
        "first",
        "second",
        "second",
        "only once",
        "fake reply to: once",
        "echo 1",
    ]


async def test_sse_stream_is_the_real_event_sequence(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply(tool_call("search", {"q": "tides"}, say="Searching now."))
    client = client_for(fake_anthropic)
    kinds: list[str] = []
    async with client.messages.stream(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "go"}]
    ) as stream:
        async for event in stream:
            kinds.append(event.type)
        final = await stream.get_final_message()
    await client.close()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop"} <= set(kinds)
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"q": "tides"}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 0


async def test_rate_limiter_and_headers(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.rate_limit(rpm=60, capacity=2)
    client = client_for(fake_anthropic)
    raw = await client.messages.with_raw_response.create(
        model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "a"}]
    )
    assert raw.headers["anthropic-ratelimit-requests-limit"] == "60"
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert raw.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    await ask(client, "b")
    with pytest.raises(anthropic.RateLimitError) as info:
        await ask(client, "c")
    await client.close()
    assert info.value.response.headers["retry-after"] == "1"
    assert "60 requests per minute" in str(info.value.api_message)
    assert fake_anthropic.statuses() == {200: 2, 429: 1}


async def test_auth_and_unknown_paths(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.api_key = KEY
    wrong = anthropic.AsyncAnthropic(api_key="nope", base_url=fake_anthropic.url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        await ask(wrong, "hi")
    await wrong.close()
    client = client_for(fake_anthropic)
    count = await client.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "x" * 400}]
    )
    with pytest.raises(anthropic.NotFoundError):
        await client.models.list()
    await client.close()
    assert count.input_tokens >= 100
    assert fake_anthropic.requests[0].auth == "bearer"
    assert fake_anthropic.requests[0].headers["authorization"] == "Bearer ***"


async def test_fault_probability_and_custom_usage(fake_anthropic: FakeAnthropic) -> None:
    fault = fake_anthropic.fail(500, times=None, probability=0.5)
    fake_anthropic.reply(text("x", usage={"output_tokens": 777}))
    client = client_for(fake_anthropic)
    outcomes = []
    for _ in range(40):
        try:
            message = await client.messages.create(
                model=MODEL, max_tokens=1000, messages=[{"role": "user", "content": "q"}]
            )
            outcomes.append(message.usage.output_tokens)
        except anthropic.InternalServerError:
            outcomes.append(500)
    await client.close()
    assert 5 < outcomes.count(500) < 35 and fault.used == outcomes.count(500)
    assert set(outcomes) == {500, 777}


def test_command_line_server() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagagents.testing", "--port", "0", "--fail", "529:1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        client = anthropic.Anthropic(api_key=KEY, base_url=url, max_retries=0)
        with pytest.raises(anthropic.OverloadedError):
            client.messages.create(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "a"}]
            )
        reply = client.messages.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "a"}]
        )
        client.close()
        assert reply.content[0].type == "text"
    finally:
        proc.terminate()
        proc.wait(10)
