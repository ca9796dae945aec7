"""A fake Anthropic Messages API on 127.0.0.1, for testing the real SDK path end to end.

It speaks the real wire format (JSON, and SSE when `"stream": true`), so `anthropic.AsyncAnthropic`
and dagagents' `AnthropicProvider` run unpatched against it over real HTTP. Faults are injected
the way the API produces them: 429 with `retry-after`/`retry-after-ms`, 529, 500, 400, slow and
dropped connections, plus an optional server-side token-bucket rate limiter (capacity N,
continuous refill) with `anthropic-ratelimit-*` headers. Every request is logged (auth headers
redacted) and the peak number in flight is tracked.

Cost features behave as the API's do: the prompt cache (`api.cache`, prompt_cache.py: readable
only once the writing response has begun, per-model minimums, 5 m / 1 h TTL refreshed on use,
usage split into input / cache write / cache read), the Message Batches API (`api.batches`,
batches.py: create, retrieve, list, JSONL results, cancel, delete, errored and expired results,
the 100,000-request / 256 MB limits), and `count_tokens` (exact, free, its own RPM limit via
`api.count_tokens_limit`). `api.usage_totals()` is the server's own accounting.

    from dagagents.testing import FakeAnthropic, tool_call

    with FakeAnthropic(latency=0.05) as api:
        api.reply("hello", pattern=r"greet")
        api.fail(429, times=1, retry_after=1)
        provider = AnthropicProvider(base_url=api.url, api_key="test-key")

In pytest, take the `fake_anthropic` fixture after either `pytest_plugins = ["dagagents.testing"]`
in your root conftest.py or `from dagagents.testing import fake_anthropic_fixture` in the test
module. From a shell: `python -m dagagents.testing --port 8080 --latency 0.5`.
The server runs an asyncio loop on its own thread, so it serves hundreds of concurrent
connections and never blocks the test's own event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from dagagents.providers.simulated import example_for_schema
from dagagents.testing.batches import BatchQueue
from dagagents.testing.prompt_cache import CacheDecision, PromptCache, estimate_tokens

Json = dict[str, Any]
ReplySpec = Any  # str | Reply | dict block | list of blocks | BaseModel | callable(request) -> ...
_ids = itertools.count(1)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_DEFAULT_MESSAGES = {
    400: "messages: at least one message is required",
    401: "invalid x-api-key",
    429: "This request would exceed your organization's rate limit. Please retry later.",
    500: "Internal server error",
    529: "Overloaded",
}
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


def _new_id(prefix: str) -> str:
    return f"{prefix}_fake{next(_ids):012d}"


# --------------------------------------------------------------------------- replies
@dataclass
class Reply:
    """A scripted response: content blocks, and optionally its stop reason, usage, latency."""

    content: list[Json]
    stop_reason: str | None = None
    usage: Json | None = None
    latency: float | None = None
    model: str | None = None


def text(value: str, **kw: Any) -> Reply:
    """A plain text reply."""
    return Reply([{"type": "text", "text": value}], **kw)


def tool_call(name: str, input: Json, *, say: str | None = None, id: str | None = None) -> Reply:
    """A reply that calls tool `name` with `input` (optionally with some text first)."""
    blocks: list[Json] = [{"type": "text", "text": say}] if say else []
    blocks.append({"type": "tool_use", "id": id or _new_id("toolu"), "name": name, "input": input})
    return Reply(blocks, stop_reason="tool_use")


def json_reply(value: Any) -> Reply:
    """A text reply holding `value` as JSON (a pydantic model or anything orjson encodes)."""
    if isinstance(value, BaseModel):
        return text(value.model_dump_json())
    return text(orjson.dumps(value).decode())


def _as_reply(spec: ReplySpec, request: Json) -> Reply:
    if callable(spec) and not isinstance(spec, Reply | BaseModel):
        spec = spec(request)
    if isinstance(spec, Reply):
        return spec
    if isinstance(spec, str):
        return text(spec)
    if isinstance(spec, BaseModel):
        return json_reply(spec)
    if isinstance(spec, dict) and "type" in spec:
        return Reply([spec])
    if isinstance(spec, list) and all(isinstance(b, dict) and "type" in b for b in spec):
        return Reply(list(spec))
    return json_reply(spec)


def last_user_text(request: Json) -> str:
    """The text of the last user message (tool results included), for matching rules."""
    for message in reversed(request.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        parts: list[str] = []
        for block in content or []:
            if block.get("type") == "text":
                parts.append(block.get("text", ""))
            elif block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, str):
                    parts.append(inner)
                elif isinstance(inner, list):
                    parts.extend(b.get("text", "") for b in inner if isinstance(b, dict))
        return "\n".join(parts)
    return ""


def tool_results(request: Json) -> list[Json]:
    """The tool_result blocks of the last user message (empty on a first turn)."""
    messages = request.get("messages") or []
    if not messages or not isinstance(messages[-1].get("content"), list):
        return []
    return [b for b in messages[-1]["content"] if b.get("type") == "tool_result"]


def _default_reply(request: Json) -> Reply:
    """Unscripted: honour a forced tool or an output schema, else echo the prompt briefly."""
    choice = request.get("tool_choice") or {}
    if choice.get("type") == "tool":
        tool = next(
            (t for t in request.get("tools") or [] if t.get("name") == choice.get("name")), None
        )
        if tool is not None:
            return tool_call(tool["name"], example_for_schema(tool.get("input_schema") or {}))
    fmt = (request.get("output_config") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        return json_reply(example_for_schema(fmt.get("schema") or {}))
    prompt = " ".join(last_user_text(request).split()[:12])
    return text(f"fake reply to: {prompt}")


# --------------------------------------------------------------------------- rules and faults
@dataclass
class _Match:
    model: str | None = None
    pattern: re.Pattern[str] | None = None
    when: Callable[[Json], bool] | None = None

    def __call__(self, request: Json) -> bool:
        if self.model is not None and not str(request.get("model", "")).startswith(self.model):
            return False
        if self.pattern is not None and not self.pattern.search(last_user_text(request)):
            return False
        return self.when is None or bool(self.when(request))


@dataclass
class Rule:
    """Scripted replies for matching requests; several replies are used in turn (last repeats)."""

    replies: list[ReplySpec]
    match: _Match
    times: int | None = None
    used: int = 0

    def next_reply(self, request: Json) -> Reply:
        spec = self.replies[min(self.used, len(self.replies) - 1)]
        self.used += 1
        return _as_reply(spec, request)


@dataclass
class Fault:
    """An injected failure: an HTTP error status, or `drop` / `drop_mid_stream` / `slow`."""

    kind: str  # "status" | "drop" | "drop_mid_stream" | "slow"
    match: _Match
    status: int = 500
    times: int | None = 1
    probability: float = 1.0
    retry_after: float | None = None
    retry_after_ms: float | None = None
    message: str | None = None
    error_type: str | None = None
    error_code: str | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    used: int = 0


class _Bucket:
    """Server-side token bucket: `capacity` tokens, refilled continuously at `per_minute`/60 s."""

    def __init__(self, per_minute: float, capacity: float | None = None) -> None:
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = float(capacity if capacity is not None else per_minute)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, n: float) -> float | None:
        """Take `n` (capped at capacity); None if taken, else seconds until it would fit."""
        self.refill()
        need = min(n, self.capacity)
        if self.level + 1e-9 >= need:
            self.level -= n
            return None
        return (need - self.level) / self.rate

    def give(self, n: float) -> None:
        self.refill()
        self.level = min(self.capacity, self.level + n)

    def headers(self, kind: str) -> dict[str, str]:
        self.refill()
        full_in = max(0.0, (self.capacity - self.level) / self.rate)
        reset = (datetime.now(UTC) + timedelta(seconds=full_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            f"anthropic-ratelimit-{kind}-limit": str(int(self.limit)),
            f"anthropic-ratelimit-{kind}-remaining": str(max(0, math.floor(self.level))),
            f"anthropic-ratelimit-{kind}-reset": reset,
        }


@dataclass
class RecordedRequest:
    """One request as the server saw it. Auth headers are redacted; `auth` says which was used."""

    method: str
    path: str
    headers: dict[str, str]
    body: Json | None
    auth: str | None
    started: float
    finished: float | None = None
    status: int | None = None
    outcome: str = "pending"  # "ok" | "error" | "dropped" | "pending"
    usage: Json | None = None  # the usage the server reported, for answered messages
    begun: float | None = None  # when the response began (first SSE event, or the JSON body)

    @property
    def model(self) -> str | None:
        return (self.body or {}).get("model")

    @property
    def stream(self) -> bool:
        return bool((self.body or {}).get("stream"))


_estimate_tokens = estimate_tokens


# --------------------------------------------------------------------------- the server
class FakeAnthropic:
    """The fake Messages API. Configure before or during a test; thread-safe enough for both.

    `latency` (seconds, or a callable of the request JSON) is the time to the whole response, or
    to the first event when streaming; `stream_delay` spaces the SSE events. `tokens_per_second`
    (a number, or a callable of the request JSON; None = instant) paces the output as a model
    writes it: each streamed delta follows the previous after its tokens / tokens_per_second,
    and a plain response arrives after all of them. `api_key`, when
    given, is required (401 otherwise), sent either as `Authorization: Bearer` or `x-api-key`.
    """

    def __init__(
        self,
        *,
        latency: float | Callable[[Json], float] = 0.0,
        stream_delay: float = 0.0,
        tokens_per_second: float | Callable[[Json], float | None] | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        min_cache_tokens: int | dict[str, int] | None = None,
        seed: int = 0,
        batch_delay: float = 0.0,
    ) -> None:
        self.latency = latency
        self.stream_delay = stream_delay
        self.tokens_per_second = tokens_per_second
        self.api_key = api_key
        self.host = host
        self.port = port
        # The prompt cache (see prompt_cache.py); `min_cache_tokens` None = the API's per-model
        # minimums, an int = one minimum for all models.
        self.cache = PromptCache(min_cache_tokens)
        # Message Batches (see batches.py): `batch_delay` seconds of processing per batch.
        self.batches = BatchQueue(self, delay=batch_delay)
        # Every message the server answered with usage (direct and in batches), in order.
        self.usage_log: list[Json] = []
        self.rules: list[Rule] = []
        self.faults: list[Fault] = []
        self.static_headers: dict[str, str] = {}
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._rng = random.Random(seed)
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------ configuration
    def reply(
        self,
        *replies: ReplySpec,
        model: str | None = None,
        pattern: str | None = None,
        when: Callable[[Json], bool] | None = None,
        times: int | None = None,
    ) -> Rule:
        """Script replies for requests matching `model` (prefix), `pattern` (regex over the last
        user message) and `when(request)`. Earlier rules win; an exhausted rule is skipped."""
        if not replies:
            raise ValueError("reply() needs at least one reply")
        rule = Rule(
            list(replies), _Match(model, re.compile(pattern) if pattern else None, when), times
        )
        self.rules.append(rule)
        return rule

    def fail(
        self,
        status: int = 500,
        *,
        times: int | None = 1,
        retry_after: float | None = None,
        retry_after_ms: float | None = None,
        message: str | None = None,
        error_type: str | None = None,
        error_code: str | None = None,
        probability: float = 1.0,
        headers: dict[str, str] | None = None,
        model: str | None = None,
        pattern: str | None = None,
        when: Callable[[Json], bool] | None = None,
        mid_stream: bool = False,
    ) -> Fault:
        """Answer the next `times` matching requests (None: all) with an HTTP error.

        `mid_stream=True` applies to streaming requests only: the response starts (200) and an
        SSE `error` event carries the error, as the API does when it overloads mid-answer.
        """
        fault = Fault(
            "status_mid_stream" if mid_stream else "status",
            _Match(model, re.compile(pattern) if pattern else None, when),
            status=status,
            times=times,
            probability=probability,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            message=message,
            error_type=error_type,
            error_code=error_code,
            headers=dict(headers or {}),
        )
        self.faults.append(fault)
        return fault

    def drop(self, *, times: int | None = 1, mid_stream: bool = False, **match: Any) -> Fault:
        """Close the connection without a response (or mid-way through an SSE stream)."""
        fault = Fault(
            "drop_mid_stream" if mid_stream else "drop", self._match(**match), times=times
        )
        self.faults.append(fault)
        return fault

    def slow(self, seconds: float, *, times: int | None = 1, **match: Any) -> Fault:
        """Hold the next `times` matching requests for `seconds` before answering normally."""
        fault = Fault("slow", self._match(**match), times=times, delay=seconds)
        self.faults.append(fault)
        return fault

    @staticmethod
    def _match(
        model: str | None = None,
        pattern: str | None = None,
        when: Callable[[Json], bool] | None = None,
    ) -> _Match:
        return _Match(model, re.compile(pattern) if pattern else None, when)

    def rate_limit(
        self,
        rpm: float | None = None,
        *,
        capacity: float | None = None,
        itpm: float | None = None,
        otpm: float | None = None,
        retry_after_ms: bool = False,
    ) -> None:
        """Enforce limits as the API does: token buckets refilled continuously, 429 when empty.

        Responses then carry `anthropic-ratelimit-{requests,input-tokens,output-tokens}-*`.
        A 429 says `retry-after` in whole seconds (and `retry-after-ms` if asked).
        """
        self._buckets = {}
        if rpm is not None:
            self._buckets["requests"] = _Bucket(rpm, capacity)
        if itpm is not None:
            self._buckets["input-tokens"] = _Bucket(itpm)
        if otpm is not None:
            self._buckets["output-tokens"] = _Bucket(otpm)
        self._retry_after_ms = retry_after_ms

    _retry_after_ms = False

    def reset_stats(self) -> None:
        self.requests.clear()
        self.usage_log.clear()
        self.max_in_flight = self.in_flight

    # ------------------------------------------------------------ inspection
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def statuses(self) -> Counter[int]:
        """How many responses of each HTTP status were sent (dropped connections count as 0)."""
        return Counter(r.status or 0 for r in self.requests if r.outcome != "pending")

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """Direct `POST /v1/messages` calls (not count_tokens, not batches)."""
        return [r for r in self.requests if r.path.split("?", 1)[0] == "/v1/messages"]

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FakeAnthropic:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="fake-anthropic", daemon=True)
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, self.host, self.port, backlog=2048), loop
        )
        self._server = fut.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        loop, server = self._loop, self._server

        async def shutdown() -> None:
            if server is not None:
                server.close()
            for w in list(self._writers):
                w.transport.abort()
            if server is not None:
                await server.wait_closed()
            # Batches still processing end with the server (not as tasks destroyed pending).
            processing = list(self.batches.processing)
            for task in processing:
                task.cancel()
            await asyncio.gather(*processing, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            loop.close()
            self._loop = self._thread = self._server = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ HTTP
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                parsed = await _read_request(reader)
                if parsed is None:
                    break
                method, path, headers, raw = parsed
                keep = await self._serve(method, path, headers, raw, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            if not writer.transport.is_closing():
                writer.close()

    async def _serve(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; returns whether the connection may be reused."""
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        auth, redacted = _redact_auth(headers)
        record = RecordedRequest(method, path, redacted, body, auth, time.monotonic())
        self.requests.append(record)
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._respond(record, headers, raw, writer)
        except ConnectionError:
            record.outcome = "dropped"
            return False
        finally:
            with self._lock:
                self.in_flight -= 1
            record.finished = time.monotonic()

    async def _route_elsewhere(
        self, record: RecordedRequest, path: str, writer: asyncio.StreamWriter
    ) -> bool | None:
        """Answer every request that is not a valid JSON POST to /v1/messages; None for those."""
        body = record.body
        if path == "/_fake/usage" and record.method == "GET":
            # Not an API route: the server's accounting, for a test or benchmark that runs the
            # server in another process (`python -m dagagents.testing`).
            return await self._send_json(
                writer,
                record,
                200,
                {
                    "totals": self.usage_totals(),
                    "log": self.usage_log,
                    "batches": len(self.batches.batches),
                },
            )
        if path.startswith("/v1/messages/batches"):
            return await self.batches.serve(record, path, writer)
        if record.method != "POST" or not path.startswith("/v1/messages"):
            return await self._error(
                writer, record, 404, "not_found_error", f"Not found: {record.path}"
            )
        if not isinstance(body, dict):
            return await self._error(
                writer, record, 400, "invalid_request_error", "request body is not valid JSON"
            )
        if path == "/v1/messages/count_tokens":
            return await self._count_tokens(writer, record, body)
        if path != "/v1/messages":
            return await self._error(
                writer, record, 404, "not_found_error", f"Not found: {record.path}"
            )
        return None

    async def _rate_limited(
        self, writer: asyncio.StreamWriter, record: RecordedRequest, kind: str, wait: float
    ) -> bool:
        retry = {"retry-after": str(max(1, math.ceil(wait)))}
        if self._retry_after_ms:
            retry["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        noun = {
            "requests": "requests",
            "input-tokens": "input tokens",
            "output-tokens": "output tokens",
        }[kind]
        limit = int(self._buckets[kind].limit)
        text_ = (
            f"This request would exceed your organization's rate limit of {limit} {noun} "
            "per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."
        )
        return await self._error(writer, record, 429, "rate_limit_error", text_, retry)

    async def _respond(
        self,
        record: RecordedRequest,
        headers: dict[str, str],
        raw: bytes,
        writer: asyncio.StreamWriter,
    ) -> bool:
        body = record.body
        if self.api_key is not None and not _auth_ok(headers, self.api_key):
            return await self._error(
                writer, record, 401, "authentication_error", "invalid x-api-key"
            )
        path = record.path.split("?", 1)[0]
        routed = await self._route_elsewhere(record, path, writer)
        if routed is not None:
            return routed
        assert isinstance(body, dict)  # _route_elsewhere answered every other body
        problem = _validate(body)
        if problem:
            return await self._error(writer, record, 400, "invalid_request_error", problem)

        fault = self._take_fault(body)
        if fault is not None:
            if fault.kind == "drop":
                record.outcome, record.status = "dropped", 0
                writer.transport.abort()
                return False
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
            elif fault.kind == "status":
                return await self._fault_response(writer, record, fault)

        # ITPM counts uncached input and cache writes, not cache reads (as the API does).
        limited = self._admit(body, self.cache.decide(body, commit=False).billed_input)
        if limited is not None:
            return await self._rate_limited(writer, record, *limited)

        message, decision, latency = self.make_message(body)
        if "output-tokens" in self._buckets:
            used = message["usage"]["output_tokens"]
            self._buckets["output-tokens"].give(int(body["max_tokens"]) - used)
        record.usage = message["usage"]
        extra = self._limit_headers()
        if body.get("stream"):
            mid = fault if fault is not None and fault.kind.endswith("mid_stream") else None
            return await self._send_stream(writer, record, message, latency, extra, mid, decision)
        latency += self._writing_time(body, message["usage"]["output_tokens"])
        if latency > 0:
            await asyncio.sleep(latency)
        record.begun = time.monotonic()
        self.cache.begun(decision)  # the response starts now: its prefix becomes readable
        if self.stream_delay > 0:  # the whole answer takes as long as streaming it would
            await asyncio.sleep(self.stream_delay * sum(1 for _ in _sse_events(message)))
        return await self._send_json(writer, record, 200, message, extra)

    def _tokens_per_second(self, body: Json) -> float | None:
        pace = self.tokens_per_second
        value = pace(body) if callable(pace) else pace
        return value if value and value > 0 else None

    def _writing_time(self, body: Json, output_tokens: int) -> float:
        """How long writing the reply takes at `tokens_per_second` (0 when unpaced)."""
        pace = self._tokens_per_second(body)
        return output_tokens / pace if pace else 0.0

    def make_message(self, body: Json) -> tuple[Json, CacheDecision, float]:
        """The answer to a valid request (scripted or default), its cache decision, its latency.

        The cache is consulted here, when the request is processed; its writes become readable
        only when the caller reports the response has begun (`self.cache.begun`)."""
        decision = self.cache.decide(body)
        reply = self._pick_reply(body)
        out_tokens = max(
            1, sum(_estimate_tokens(b.get("text") or b.get("input")) for b in reply.content)
        )
        out_tokens = min(out_tokens, int(body["max_tokens"]))
        usage: Json = {
            "input_tokens": decision.input_tokens,
            "output_tokens": out_tokens,
            "cache_creation_input_tokens": decision.cache_creation_input_tokens,
            "cache_read_input_tokens": decision.cache_read_input_tokens,
        }
        usage.update(reply.usage or {})
        stop = reply.stop_reason or (
            "tool_use" if any(b.get("type") == "tool_use" for b in reply.content) else "end_turn"
        )
        message = {
            "id": _new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": reply.model or body["model"],
            "content": reply.content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }
        latency = reply.latency
        if latency is None:
            latency = self.latency(body) if callable(self.latency) else self.latency
        with self._lock:
            self.usage_log.append({"model": body["model"], "usage": dict(usage)})
        return message, decision, latency

    async def _count_tokens(
        self, writer: asyncio.StreamWriter, record: RecordedRequest, body: Json
    ) -> bool:
        """`POST /v1/messages/count_tokens`: the exact input size, free, with its own RPM limit."""
        if "model" not in body or "messages" not in body:
            missing = "model" if "model" not in body else "messages"
            return await self._error(
                writer, record, 400, "invalid_request_error", f"{missing}: Field required"
            )
        bucket = self._count_bucket
        if bucket is not None:
            wait = bucket.take(1)
            if wait is not None:
                limit = int(bucket.limit)
                return await self._error(
                    writer,
                    record,
                    429,
                    "rate_limit_error",
                    f"This request would exceed your organization's rate limit of {limit} "
                    "token counting requests per minute.",
                    {"retry-after": str(max(1, math.ceil(wait)))},
                )
        return await self._send_json(
            writer, record, 200, {"input_tokens": self.cache.total_tokens(body)}
        )

    _count_bucket: _Bucket | None = None

    def count_tokens_limit(self, rpm: float | None) -> None:
        """Limit `count_tokens` to `rpm` requests per minute (its own limit, as the API has)."""
        self._count_bucket = _Bucket(rpm) if rpm else None

    def usage_totals(self, model: str | None = None) -> Json:
        """The server's accounting of every answered message (direct and batched): token sums,
        and how many messages wrote / read the prompt cache."""
        rows = [u for u in self.usage_log if model is None or u["model"].startswith(model)]
        out: Json = {
            k: sum(int(r["usage"].get(k, 0)) for r in rows)
            for k in (
                "input_tokens",
                "output_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
            )
        }
        out["messages"] = len(rows)
        out["cache_writes"] = sum(1 for r in rows if r["usage"]["cache_creation_input_tokens"])
        out["cache_reads"] = sum(1 for r in rows if r["usage"]["cache_read_input_tokens"])
        out["batched"] = sum(1 for r in rows if r.get("batch_id"))
        return out

    def _take_fault(self, body: Json) -> Fault | None:
        for fault in self.faults:
            if fault.times is not None and fault.used >= fault.times:
                continue
            if fault.kind.endswith("mid_stream") and not body.get("stream"):
                continue
            if not fault.match(body):
                continue
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                continue
            fault.used += 1
            return fault
        return None

    def _pick_reply(self, body: Json) -> Reply:
        for rule in self.rules:
            if rule.times is not None and rule.used >= rule.times:
                continue
            if rule.match(body):
                return rule.next_reply(body)
        return _default_reply(body)

    def _admit(self, body: Json, in_tokens: int) -> tuple[str, float] | None:
        """Charge the rate-limit buckets; (bucket, seconds to wait) if one is empty."""
        if not self._buckets:
            return None
        with self._lock:
            needs = {
                "requests": 1.0,
                "input-tokens": float(in_tokens),
                "output-tokens": float(body["max_tokens"]),
            }
            for kind, bucket in self._buckets.items():
                bucket.refill()
                need = min(needs[kind], bucket.capacity)
                if bucket.level + 1e-9 < need:
                    return kind, (need - bucket.level) / bucket.rate
            for kind, bucket in self._buckets.items():
                bucket.take(needs[kind])
        return None

    def _limit_headers(self) -> dict[str, str]:
        headers = dict(self.static_headers)
        for kind, bucket in self._buckets.items():
            headers.update(bucket.headers(kind))
        return headers

    async def _fault_response(
        self, writer: asyncio.StreamWriter, record: RecordedRequest, fault: Fault
    ) -> bool:
        extra = dict(fault.headers)
        if fault.retry_after is not None:
            extra["retry-after"] = f"{fault.retry_after:g}"
        if fault.retry_after_ms is not None:
            extra["retry-after-ms"] = f"{fault.retry_after_ms:g}"
        etype = fault.error_type or _ERROR_TYPES.get(fault.status, "api_error")
        message = fault.message or _DEFAULT_MESSAGES.get(fault.status, f"error {fault.status}")
        return await self._error(
            writer, record, fault.status, etype, message, extra, fault.error_code
        )

    async def _error(
        self,
        writer: asyncio.StreamWriter,
        record: RecordedRequest,
        status: int,
        etype: str,
        message: str,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> bool:
        error: Json = {"type": etype, "message": message}
        if code:
            error["details"] = {"error_code": code}
        body = {"type": "error", "error": error, "request_id": _new_id("req")}
        return await self._send_json(
            writer, record, status, body, {**self._limit_headers(), **(headers or {})}
        )

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        record: RecordedRequest,
        status: int,
        payload: Json,
        headers: dict[str, str] | None = None,
    ) -> bool:
        data = orjson.dumps(payload)
        head = {
            "content-type": "application/json",
            "content-length": str(len(data)),
            "request-id": payload.get("request_id") or _new_id("req"),
            **(headers or {}),
        }
        writer.write(_head(status, head) + data)
        await writer.drain()
        record.status = status
        record.outcome = "ok" if status < 400 else "error"
        return True

    async def _send_stream(
        self,
        writer: asyncio.StreamWriter,
        record: RecordedRequest,
        message: Json,
        latency: float,
        headers: dict[str, str],
        fault: Fault | None,
        decision: CacheDecision | None = None,
    ) -> bool:
        head = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "transfer-encoding": "chunked",
            "request-id": _new_id("req"),
            **headers,
        }
        writer.write(_head(200, head))
        await writer.drain()
        record.status = 200
        if latency > 0:
            await asyncio.sleep(latency)
        record.begun = time.monotonic()
        if decision is not None:
            self.cache.begun(decision)  # first event: the written prefix becomes readable
        pace = self._tokens_per_second(record.body or {})
        loop = asyncio.get_running_loop()
        due = loop.time()  # paced against the clock: small sleeps each oversleep a little
        for i, (event, data) in enumerate(_sse_events(message)):
            if fault is not None and i == 3:
                if fault.kind == "drop_mid_stream":
                    record.outcome, record.status = "dropped", 0
                    writer.transport.abort()
                    return False
                event, data = "error", _error_body(fault)
                record.status, record.outcome = fault.status, "error"
            chunk = f"event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            if event == "error":
                break
            if self.stream_delay > 0:
                await asyncio.sleep(self.stream_delay)
            if pace and event == "content_block_delta":  # the model writing its next tokens
                delta = data["delta"]
                piece = delta.get("text") or delta.get("partial_json") or ""
                due += len(piece) / 4 / pace  # estimate_tokens' rate
                await asyncio.sleep(max(0.0, due - loop.time()))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        if record.outcome == "pending":
            record.outcome = "ok"
        return True


def _error_body(fault: Fault) -> Json:
    error: Json = {
        "type": fault.error_type or _ERROR_TYPES.get(fault.status, "api_error"),
        "message": fault.message or _DEFAULT_MESSAGES.get(fault.status, f"error {fault.status}"),
    }
    if fault.error_code:
        error["details"] = {"error_code": fault.error_code}
    return {"type": "error", "error": error, "request_id": _new_id("req")}


def _sse_events(message: Json) -> Iterator[tuple[str, Json]]:
    """A message as the API streams it: start, blocks with deltas, delta with usage, stop."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        if block.get("type") == "tool_use":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**block, "input": {}},
                },
            )
            partial = orjson.dumps(block.get("input") or {}).decode()
            # A few tokens per delta, as the API streams a tool's input.
            for piece in re.findall(r".{1,16}", partial, re.S) or [""]:
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
        else:
            value = block.get("text", "")
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in re.findall(r"\S+\s*|\s+", value) or [""]:
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _validate(body: Json) -> str | None:
    """The API's basic request checks, with its style of message."""
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if messages[0].get("role") != "user":
        return 'messages: first message must use the "user" role'
    return None


def _redact_auth(headers: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    auth = None
    out = dict(headers)
    if "authorization" in out:
        scheme = out["authorization"].split(" ", 1)[0]
        auth = scheme.lower()
        out["authorization"] = f"{scheme} ***"
    if "x-api-key" in out:
        auth = auth or "x-api-key"
        out["x-api-key"] = "***"
    return auth, out


def _auth_ok(headers: dict[str, str], key: str) -> bool:
    return headers.get("authorization") == f"Bearer {key}" or headers.get("x-api-key") == key


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error' if status >= 400 else 'OK')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    """One HTTP/1.1 request (Content-Length or chunked body); None at a clean EOF."""
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) < 2:
        return None
    method, path = parts[0], parts[1]
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(chunks)
    else:
        length = int(headers.get("content-length") or 0)
        body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


# --------------------------------------------------------------------------- secrets
def find_secret(secret: str, *places: Any) -> list[str]:
    """Where `secret` occurs: each place is a string, bytes, a file or directory (searched
    recursively), or any object (its repr). Returns descriptions of the hits (empty = clean)."""
    if not secret:
        raise ValueError("find_secret needs a non-empty secret")
    needle = secret.encode()
    hits: list[str] = []
    for place in places:
        if isinstance(place, Path | os.PathLike) or (
            isinstance(place, str) and os.path.exists(place)
        ):
            path = Path(place)
            files: Iterable[Path] = path.rglob("*") if path.is_dir() else [path]
            for f in files:
                if f.is_file() and needle in f.read_bytes():
                    hits.append(str(f))
        elif isinstance(place, bytes):
            if needle in place:
                hits.append("<bytes>")
        elif isinstance(place, str):
            if secret in place:
                hits.append(f"<string {place[:40]!r}...>")
        elif secret in repr(place):
            hits.append(f"<{type(place).__name__} object>")
    return hits


def assert_no_secret(secret: str, *places: Any) -> None:
    """Fail (AssertionError) if `secret` appears in any of `places` (see `find_secret`)."""
    hits = find_secret(secret, *places)
    assert not hits, f"secret found in: {', '.join(hits)}"


# --------------------------------------------------------------------------- pytest
try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pytest = None  # type: ignore[assignment]

if pytest is not None:
    # Registered as `fake_anthropic`; the function's own name differs so that importing it
    # into a test module (`from dagagents.testing import fake_anthropic_fixture`) does not
    # clash with test parameters named `fake_anthropic` (flake8/ruff F811).
    @pytest.fixture(name="fake_anthropic")
    def fake_anthropic_fixture() -> Iterator[FakeAnthropic]:
        """A started `FakeAnthropic` on a free loopback port, stopped after the test."""
        server = FakeAnthropic().start()
        try:
            yield server
        finally:
            server.stop()


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> None:
    """`python -m dagagents.testing --port N`: serve until interrupted; prints the URL."""
    parser = argparse.ArgumentParser(prog="python -m dagagents.testing", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per response")
    parser.add_argument(
        "--stream-delay", type=float, default=0.0, help="seconds between SSE events"
    )
    parser.add_argument(
        "--tokens-per-second",
        type=float,
        default=None,
        help="pace of the output, as a model writes it (default: instant)",
    )
    parser.add_argument(
        "--batch-delay", type=float, default=0.0, help="seconds a message batch takes"
    )
    parser.add_argument("--api-key", default=None, help="require this key (else any is accepted)")
    parser.add_argument("--rpm", type=float, default=None, help="enforce requests per minute")
    parser.add_argument("--capacity", type=float, default=None, help="request bucket capacity")
    parser.add_argument("--itpm", type=float, default=None)
    parser.add_argument("--otpm", type=float, default=None)
    parser.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="STATUS[:TIMES[:RETRY_AFTER]]",
        help="inject errors, e.g. 429:3:1 (three 429s with retry-after 1) or 529:0 (always)",
    )
    args = parser.parse_args(argv)
    server = FakeAnthropic(
        latency=args.latency,
        stream_delay=args.stream_delay,
        tokens_per_second=args.tokens_per_second,
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        batch_delay=args.batch_delay,
    )
    if args.rpm or args.itpm or args.otpm:
        server.rate_limit(args.rpm, capacity=args.capacity, itpm=args.itpm, otpm=args.otpm)
    for spec in args.fail:
        status, times, retry = ([*spec.split(":"), "", ""])[:3]
        server.fail(
            int(status),
            times=int(times) or None if times else 1,
            retry_after=float(retry) if retry else None,
        )
    server.start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
