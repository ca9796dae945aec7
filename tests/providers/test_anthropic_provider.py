"""AnthropicProvider through the real `anthropic` SDK against the loopback fake Messages API."""

from __future__ import annotations

import time

import anthropic
import pytest
from _anthropic_support import KEY, provider_for
from pydantic import BaseModel

from dagagents.engine.invoke import output_schema
from dagagents.errors import ProviderError
from dagagents.providers.anthropic import AnthropicProvider, parse_retry_after
from dagagents.providers.base import Request
from dagagents.testing import FakeAnthropic, fake_anthropic_fixture, tool_call  # noqa: F401

MODEL = "claude-sonnet-4-6"


def req(text: str = "hello", **kw: object) -> Request:
    return Request(model=MODEL, messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


async def test_sends_bearer_key_and_returns_text_usage_and_headers(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.api_key = KEY
    fake_anthropic.reply("hi there")
    fake_anthropic.static_headers = {"anthropic-ratelimit-requests-limit": "50"}
    provider = provider_for(fake_anthropic)
    response = await provider.complete(req(max_tokens=64))
    await provider.aclose()
    assert response.text == "hi there"
    assert response.stop_reason == "end_turn"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.headers["anthropic-ratelimit-requests-limit"] == "50"
    seen = fake_anthropic.requests[-1]
    assert seen.auth == "bearer"  # SDK 2.x: Authorization: Bearer, not x-api-key
    assert seen.headers["authorization"] == "Bearer ***"  # the log is redacted
    assert seen.headers["x-stainless-retry-count"] == "0"
    assert seen.body is not None and seen.body["max_tokens"] == 64


async def test_env_vars_choose_key_and_base_url(
    fake_anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_anthropic.api_key = KEY
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_anthropic.url)
    provider = AnthropicProvider()
    assert KEY not in repr(provider)
    response = await provider.complete(req())
    await provider.aclose()
    assert response.text.startswith("fake reply to: hello")


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (403, False), (404, False), (500, True), (503, True), (529, True)],
)
async def test_status_errors_map_to_provider_errors(
    fake_anthropic: FakeAnthropic, status: int, retryable: bool
) -> None:
    fake_anthropic.fail(status, message=f"the api says {status}")
    provider = provider_for(fake_anthropic)
    with pytest.raises(ProviderError) as info:
        await provider.complete(req())
    await provider.aclose()
    err = info.value
    assert err.status == status and err.retryable is retryable
    assert f"the api says {status}" in str(err)
    assert len(fake_anthropic.requests) == 1  # the SDK itself never retried


async def test_429_carries_retry_after_seconds_or_ms(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail(429, retry_after=2)
    fake_anthropic.fail(429, retry_after=2, retry_after_ms=1500)
    provider = provider_for(fake_anthropic)
    errors = []
    for _ in range(2):
        with pytest.raises(ProviderError) as info:
            await provider.complete(req())
        errors.append(info.value)
    await provider.aclose()
    assert [e.retry_after for e in errors] == [2.0, 1.5]  # retry-after-ms wins when present
    assert all(e.retryable and e.status == 429 for e in errors)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("enforced_spend_limit_reached", "Monthly threshold crossed."),
        (None, "You have reached your specified workspace API spend limit."),
    ],
)
async def test_spend_limit_429_is_not_retryable(
    fake_anthropic: FakeAnthropic, code: str | None, message: str
) -> None:
    fake_anthropic.fail(429, retry_after=1, message=message, error_code=code)
    provider = provider_for(fake_anthropic)
    with pytest.raises(ProviderError) as info:
        await provider.complete(req())
    await provider.aclose()
    assert info.value.retryable is False and info.value.kind == "spend_limit"
    assert message in str(info.value)


async def test_dropped_connection_and_timeout_are_retryable(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.drop()
    provider = provider_for(fake_anthropic, timeout=0.3)
    with pytest.raises(ProviderError) as dropped:
        await provider.complete(req())
    fake_anthropic.slow(2.0)
    with pytest.raises(ProviderError) as slow:
        await provider.complete(req())
    await provider.aclose()
    assert dropped.value.retryable and dropped.value.kind == "connection"
    assert slow.value.retryable and slow.value.kind == "timeout"


async def test_streaming_matches_plain_response(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply(tool_call("lookup", {"q": "tides", "n": 3}, say="Let me check."))
    plain = provider_for(fake_anthropic, stream=False)
    streamed = provider_for(fake_anthropic, stream=True)
    a = await plain.complete(req())
    b = await streamed.complete(req())
    await plain.aclose()
    await streamed.aclose()
    assert fake_anthropic.requests[-1].stream and not fake_anthropic.requests[-2].stream
    strip = [{k: v for k, v in blk.items() if k != "id"} for blk in a.content]
    assert strip == [{k: v for k, v in blk.items() if k != "id"} for blk in b.content]
    assert b.stop_reason == "tool_use" and b.usage == a.usage


async def test_stream_dropped_mid_way_is_retryable(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.drop(mid_stream=True)
    provider = provider_for(fake_anthropic, stream=True)
    with pytest.raises(ProviderError) as info:
        await provider.complete(req("a fairly long prompt to stream back in several pieces"))
    await provider.aclose()
    assert info.value.retryable


async def test_error_event_mid_stream_keeps_its_meaning(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail(529, mid_stream=True)
    fake_anthropic.fail(400, mid_stream=True, message="bad block")
    provider = provider_for(fake_anthropic, stream=True)
    errors = []
    for _ in range(2):
        with pytest.raises(ProviderError) as info:
            await provider.complete(req("a long enough prompt to stream in pieces"))
        errors.append(info.value)
    ok = await provider.complete(req())
    await provider.aclose()
    assert [(e.status, e.retryable) for e in errors] == [(529, True), (400, False)]
    assert "bad block" in str(errors[1]) and ok.text
    assert [r.status for r in fake_anthropic.requests] == [529, 400, 200]


async def test_large_max_tokens_streams_automatically(fake_anthropic: FakeAnthropic) -> None:
    provider = provider_for(fake_anthropic)
    await provider.complete(req(max_tokens=64_000))
    await provider.complete(req(max_tokens=1_000))
    await provider.aclose()
    assert [r.stream for r in fake_anthropic.requests] == [True, False]


class Weather(BaseModel):
    city: str
    celsius: float
    tags: list[str]


async def test_output_config_is_what_messages_parse_sends(fake_anthropic: FakeAnthropic) -> None:
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=fake_anthropic.url, max_retries=0)
    parsed = await client.messages.parse(
        model=MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": "weather?"}],
        output_format=Weather,
    )
    await client.close()
    assert isinstance(parsed.parsed_output, Weather)  # the fake answers the schema by default
    provider = provider_for(fake_anthropic)
    await provider.complete(req("weather?", max_tokens=100, output_schema=output_schema(Weather)))
    await provider.aclose()
    sdk_body, our_body = (r.body or {} for r in fake_anthropic.requests)
    assert our_body["output_config"] == sdk_body["output_config"]
    assert our_body["output_config"]["format"]["type"] == "json_schema"


async def test_sampling_params_go_in_the_body(fake_anthropic: FakeAnthropic) -> None:
    provider = provider_for(fake_anthropic)
    await provider.complete(req(temperature=0.2, params={"top_k": 5, "stop_sequences": ["END"]}))
    await provider.complete(req())
    await provider.aclose()
    first, second = (r.body or {} for r in fake_anthropic.requests)
    assert (first["temperature"], first["top_k"], first["stop_sequences"]) == (0.2, 5, ["END"])
    assert "temperature" not in second  # never sent unless set (newer models reject it)


def test_provider_survives_a_new_event_loop(fake_anthropic: FakeAnthropic) -> None:
    """`Graph.run` makes a fresh loop per run; one provider object must serve them all."""
    import asyncio

    provider = provider_for(fake_anthropic)
    for _ in range(3):
        assert asyncio.run(provider.complete(req())).text


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    assert parse_retry_after({}) is None
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (parse_retry_after({"retry-after": http_date}) or 0) <= 31
