"""`AnthropicProvider`: the real Messages API through `anthropic.AsyncAnthropic` (SDK 2.x).

The SDK's retries are off (`max_retries=0`): dagagents' retry policy decides and traces every
retry. Every SDK failure becomes a `ProviderError` whose `retryable`, `status` and
`retry_after` the policy reads without knowing this backend. Responses are read raw (one
`orjson` parse, no model objects) so the content blocks go straight back into the next turn,
and the `anthropic-ratelimit-*` headers reach the limiter. No error message or header we keep
can carry the API key: messages are built from the API's error body, and the key is scrubbed
from them anyway.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anthropic
import httpx2
import orjson

from dagagents.errors import ProviderError, UserError
from dagagents.providers.base import (
    ANTHROPIC_CAPABILITIES,
    Request,
    Response,
    Usage,
    key_digest,
    request_arrived,
    response_begun,
)

# Above this many output tokens the SDK insists on streaming (10 minutes at its rate estimate).
_STREAM_ABOVE_MAX_TOKENS = 21_000
_KEEP_HEADERS = ("request-id", "retry-after", "retry-after-ms", "x-should-retry")
_SPEND_CODES = {"enforced_spend_limit_reached", "contract_spend_limit_reached"}
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_SPEND_WORDS = ("spend limit", "usage limit", "credit balance", "billing")
# Seconds per call when neither the agent, the run nor the provider names a timeout: the
# connection plus a slow generation of every requested token (~20 tokens/s), capped at the
# SDK's own ten minutes. A hung server then costs a minute or two per attempt, not ten.
_TIMEOUT_BASE_S = 30.0
_TIMEOUT_TOKENS_PER_S = 20.0
_TIMEOUT_CAP_S = 600.0


def default_call_timeout(max_tokens: int) -> float:
    """A per-call timeout that grows with the output asked for (see `_TIMEOUT_*`)."""
    return min(_TIMEOUT_CAP_S, _TIMEOUT_BASE_S + max(0, max_tokens) / _TIMEOUT_TOKENS_PER_S)


class AnthropicAPIError(ProviderError):
    """A failed Messages API call; carries the response headers for limit calibration."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        kind: str = "api_error",
        headers: dict[str, str] | None = None,
        request_id: str | None = None,
        api_message: str | None = None,
    ) -> None:
        super().__init__(
            message, status=status, retryable=retryable, retry_after=retry_after, kind=kind
        )
        self.headers = headers or {}
        self.request_id = request_id
        self.api_message = api_message


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms`, else `retry-after` (secs or date)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The response headers worth keeping: rate-limit ones, retry hints, the request id."""
    return {
        k.lower(): v
        for k, v in headers.items()
        if k.lower().startswith("anthropic-ratelimit-") or k.lower() in _KEEP_HEADERS
    }


def _clean_block(block: dict[str, Any]) -> dict[str, Any]:
    """A response content block as a valid request block (drop null fields)."""
    return {k: v for k, v in block.items() if v is not None}


class _ClientPool:
    """SDK clients of one event loop; each call goes to the least busy one.

    httpcore's pool scans (and probes the socket of) every idle connection on each request,
    so one pool with 50 connections costs ~1 ms of CPU per call. Spreading connections over a
    few pools keeps that scan short. A new client is made only when every existing one has
    `per_client` calls in flight, so light use still shares one pool and its warm connections.
    """

    def __init__(
        self, make: Callable[[], anthropic.AsyncAnthropic], limit: int, per_client: int = 8
    ) -> None:
        self.make = make
        self.limit = limit
        self.per_client = per_client
        self.clients = [make()]
        self.busy = [0]

    def acquire(self) -> int:
        i = min(range(len(self.busy)), key=self.busy.__getitem__)
        if self.busy[i] >= self.per_client and len(self.clients) < self.limit:
            self.clients.append(self.make())
            self.busy.append(0)
            i = len(self.clients) - 1
        self.busy[i] += 1
        return i

    def release(self, i: int) -> None:
        self.busy[i] -= 1

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()


class AnthropicProvider:
    """The Messages API via `AsyncAnthropic` (no threads, SDK retries off).

    `api_key`/`base_url` default to `ANTHROPIC_API_KEY`/`ANTHROPIC_BASE_URL` (the SDK reads them).
    `stream=None` streams only when `max_tokens` is too large for a plain request; `True`
    always streams (SSE), `False` never does. `pool_shards` caps how many SDK clients (each
    with its own connection pool) share the load; see `_ClientPool`.

    Per-call timeout, first that applies: the request's (an agent's or the run's `timeout`),
    this provider's `timeout=`, the timeout of a `client=` the user built, else
    `default_call_timeout(max_tokens)`. A user's client is used with `max_retries=0` (a copy
    via `with_options`): retries happen in one place, the run's policy, where they are traced.
    """

    name = "anthropic"
    capabilities = ANTHROPIC_CAPABILITIES

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float | None = None,
        stream: bool | None = None,
        default_headers: Mapping[str, str] | None = None,
        client: anthropic.AsyncAnthropic | None = None,
        pool_shards: int = 8,
    ) -> None:
        # Scrubbed from any message we build (they come from the API, but be sure).
        self._secrets = tuple(
            v
            for v in (
                api_key,
                os.environ.get("ANTHROPIC_API_KEY"),
                os.environ.get("ANTHROPIC_AUTH_TOKEN"),
            )
            if v and len(v) >= 8
        )
        if timeout is not None and not (isinstance(timeout, int | float) and 0 < timeout < 1e9):
            raise ValueError(
                f"AnthropicProvider: timeout must be a positive number of seconds, got {timeout!r}."
            )
        self.timeout = timeout
        self.stream = stream
        connect = min(10.0, timeout) if timeout is not None else 10.0
        self._options: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "max_retries": 0,
            "timeout": httpx2.Timeout(timeout or _TIMEOUT_CAP_S, connect=connect),
            "default_headers": dict(default_headers) if default_headers else None,
        }
        # The name this key's rate limits are shared under (a hash; see base.KeyedLimits).
        self.limits_key = key_digest(
            api_key
            or (getattr(client, "api_key", None) if client is not None else None)
            or os.environ.get("ANTHROPIC_API_KEY")
            or os.environ.get("ANTHROPIC_AUTH_TOKEN")
        )
        self.pool_shards = max(1, pool_shards)
        self._tls: ssl.SSLContext | None = None
        # The user's client keeps its timeout, base URL and headers; only its retries go.
        self._fixed = client.with_options(max_retries=0) if client is not None else None
        self._client_timeout = _timeout_of(client) if client is not None else None
        self._pool = self._new_pool()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._guard: AsyncIterator[None] | None = None

    def _new_client(self) -> anthropic.AsyncAnthropic:
        # Our own httpx2 client: the SDK's defaults, without its wrapper's `__del__` (which
        # would schedule a close on whatever loop runs at GC time, not the one that owns it),
        # and one TLS context for all (building one loads the CA bundle: ~40 ms each).
        if self._tls is None:
            self._tls = httpx2.create_ssl_context()
        http = anthropic.DefaultAsyncHttpxClient(
            timeout=self._options["timeout"],
            verify=self._tls,
            event_hooks={"response": [_headers_came]},
        )
        return anthropic.AsyncAnthropic(**self._options, http_client=http)

    def _new_pool(self) -> _ClientPool:
        if self._fixed is not None:
            return _ClientPool(lambda: self._fixed, 1)  # type: ignore[arg-type,return-value]
        return _ClientPool(self._new_client, self.pool_shards)

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        """The first SDK client of the current pool (for inspection)."""
        return self._pool.clients[0]

    async def _bound_pool(self) -> _ClientPool:
        """The SDK clients for the running event loop.

        Pooled connections belong to the loop that opened them, and `Graph.run` starts a fresh
        loop per run, so a provider reused across runs gets fresh clients per loop. They are
        closed when their loop shuts down (`asyncio.run` finalises async generators, and a
        suspended one here holds the close), so no connection outlives its loop.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop and not self._closed:
            return self._pool
        if (self._loop is not None or self._closed) and self._fixed is None:
            self._pool = self._new_pool()
        self._closed = False
        self._loop = loop
        if self._fixed is None:
            self._guard = self._close_at_loop_end(self._pool)
            await self._guard.__anext__()
        return self._pool

    @staticmethod
    async def _close_at_loop_end(pool: _ClientPool) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await pool.aclose()

    @property
    def base_url(self) -> str:
        return str(self._pool.clients[0].base_url)

    @classmethod
    def check_worker_environment(cls) -> None:
        """On a Dask worker, before rebuilding from `settings()`: the key must be its own."""
        if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
            raise UserError(
                "provider 'anthropic' needs ANTHROPIC_API_KEY in every Dask worker's environment "
                "(keys are never sent with tasks)."
            )

    def settings(self) -> dict[str, Any]:
        """What another process needs to rebuild this provider: never the key or headers."""
        return {
            "base_url": self._options["base_url"],
            "timeout": self.timeout,
            "stream": self.stream,
            "pool_shards": self.pool_shards,
        }

    def __repr__(self) -> str:  # never show the key
        return f"AnthropicProvider(base_url={self.base_url!r})"

    def request_kwargs(self, request: Request) -> dict[str, Any]:
        """The `messages.create` arguments for a `Request` (what goes on the wire)."""
        kw: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": request.messages,
        }
        if request.system:
            kw["system"] = request.system
        if request.tools:
            kw["tools"] = request.tools
        if request.tool_choice is not None:
            kw["tool_choice"] = request.tool_choice
        if request.output_schema is not None:
            # Exactly what `messages.parse(output_format=...)` sends.
            kw["output_config"] = {
                "format": {"type": "json_schema", "schema": request.output_schema}
            }
        # SDK 2.x dropped sampling keywords (temperature, top_p, top_k) from `create()`; the API
        # still takes them where the model supports them, so they travel in the body, only if set.
        extra = dict(request.params)
        if request.temperature is not None:
            extra["temperature"] = request.temperature
        if extra:
            kw["extra_body"] = extra
        timeout = request.timeout or self.timeout
        if timeout is None and self._fixed is not None:
            if self._client_timeout is not None:
                kw["timeout"] = self._client_timeout  # the user's client's own setting
            return kw
        if timeout is None:
            timeout = default_call_timeout(request.max_tokens)
        kw["timeout"] = httpx2.Timeout(timeout, connect=min(10.0, timeout))
        return kw

    async def complete(
        self, request: Request, *, on_text: Callable[[str], None] | None = None
    ) -> Response:
        """One call; with `on_text` (someone is watching) it streams over SSE and passes each
        text delta on as it arrives, unless `stream=False` was chosen."""
        kw = self.request_kwargs(request)
        begun = response_begun.get()
        streaming = self.stream if self.stream is not None else None
        if streaming is None:
            # Stream when someone watches the text, or waits for this response to begin
            # (cache warming), or for the server to have it (a burst's held rate limits: a
            # streamed response's headers come at once).
            streaming = (
                request.max_tokens > _STREAM_ABOVE_MAX_TOKENS
                or begun is not None
                or on_text is not None
                or request_arrived.get() is not None
            )
        pool = await self._bound_pool()
        shard = pool.acquire()
        client = pool.clients[shard]
        try:
            if streaming:
                return await self._complete_streaming(client, kw, begun, on_text)
            raw = await client.messages.with_raw_response.create(**kw)
            if begun is not None:
                begun()
            data = orjson.loads(await raw.read())
            headers = kept_headers(raw.headers)
        except anthropic.APIStatusError as e:
            raise self._status_error(e, request) from None
        except anthropic.APITimeoutError:
            raise AnthropicAPIError(
                "Anthropic API call timed out",
                retryable=True,
                kind="timeout",
            ) from None
        except (anthropic.APIConnectionError, httpx2.TransportError) as e:
            raise AnthropicAPIError(
                "Anthropic API connection failed: "
                + self._scrub(str(e.__cause__ or e) or type(e).__name__),
                retryable=True,
                kind="connection",
            ) from None
        except anthropic.AnthropicError as e:
            raise AnthropicAPIError(
                f"Anthropic SDK error: {self._scrub(str(e))}",
                kind="client_error",
            ) from None
        except orjson.JSONDecodeError as e:
            raise AnthropicAPIError(
                f"Anthropic API sent a malformed response: {e}",
                retryable=True,
                kind="bad_response",
            ) from None
        except TypeError as e:  # the SDK's "Could not resolve authentication method"
            if "authentication" in str(e):
                raise AnthropicAPIError(
                    "no Anthropic credentials: set ANTHROPIC_API_KEY (or pass api_key=)",
                    kind="authentication_error",
                ) from None
            raise
        finally:
            pool.release(shard)
        return _to_response(data, headers)

    @staticmethod
    async def _complete_streaming(
        client: anthropic.AsyncAnthropic,
        kw: dict[str, Any],
        begun: Callable[[], None] | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Response:
        # A forced answer tool (structured output in tool mode): its input is the reply, so
        # its JSON streams to `on_text` like a native JSON reply's text does.
        choice = kw.get("tool_choice") or {}
        answer_tool = choice.get("name") if choice.get("type") == "tool" else None
        answer_block: int | None = None
        async with client.messages.stream(**kw) as stream:
            if begun is not None or on_text is not None:
                async for event in stream:
                    if begun is not None:
                        begun()  # the first event: the response has begun
                        begun = None
                    if on_text is None:
                        break  # the rest is read by get_final_message
                    if event.type == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use" and block.name == answer_tool:
                            answer_block = event.index
                        continue
                    if event.type != "content_block_delta":
                        continue
                    if event.delta.type == "text_delta":
                        on_text(event.delta.text)
                    elif event.delta.type == "input_json_delta" and event.index == answer_block:
                        on_text(event.delta.partial_json)
                    else:
                        continue
                    # Let what the delta started (a streamed plan's subtask) run before the
                    # next one is read: buffered events would not yield to the loop.
                    await asyncio.sleep(0)
            message = await stream.get_final_message()
            headers = kept_headers(stream.response.headers)
        data = message.model_dump(mode="json", exclude_none=True)
        return _to_response(data, headers)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _status_error(self, e: anthropic.APIStatusError, request: Request) -> AnthropicAPIError:
        status = e.status_code
        if status < 400:  # an SSE `error` event after a 200: the error type tells what it was
            status = _STATUS_OF_TYPE.get(e.type or "", 500)
        headers = kept_headers(e.response.headers)
        api_message = e.api_message or (e.body if isinstance(e.body, str) else None) or ""
        error_type = e.type or f"http_{status}"
        code = e.error_code
        retry_after = parse_retry_after(e.response.headers)
        spend = status == 429 and (
            code in _SPEND_CODES or any(w in api_message.lower() for w in _SPEND_WORDS)
        )
        retryable = (status in (408, 409, 429) or status >= 500) and not spend
        should = e.response.headers.get("x-should-retry")
        if should == "false" or spend:
            retryable = False
        elif should == "true":
            retryable = True
        kind = "spend_limit" if spend else error_type
        message = f"Anthropic API error {status} {error_type}"
        if code:
            message += f" ({code})"
        message += f": {self._scrub(api_message) or 'no message'}"
        if e.request_id:
            message += f" [request-id {e.request_id}]"
        return AnthropicAPIError(
            message,
            status=status,
            retryable=retryable,
            retry_after=retry_after if retryable else None,
            kind=kind,
            headers=headers,
            request_id=e.request_id,
            api_message=self._scrub(api_message),
        )

    # ------------------------------------------------ declared: batches, counts_tokens
    def batch_params(self, request: Request) -> dict[str, Any]:
        from dagagents.providers import anthropic_batches

        return anthropic_batches.batch_params(self, request)

    async def create_batch(self, requests: list[dict[str, Any]]) -> str:
        from dagagents.providers import anthropic_batches

        return await anthropic_batches.create_batch(self, requests)

    async def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        from dagagents.providers import anthropic_batches

        return await anthropic_batches.retrieve_batch(self, batch_id)

    async def batch_results(self, batch_id: str) -> dict[str, dict[str, Any]]:
        from dagagents.providers import anthropic_batches

        return await anthropic_batches.batch_results(self, batch_id)

    def batch_response(self, result: dict[str, Any], node: str | None) -> Response:
        from dagagents.providers import anthropic_batches

        return anthropic_batches.result_response(self, result, node)

    async def count_tokens(self, request: Request) -> int:
        from dagagents.providers import anthropic_batches

        return await anthropic_batches.count_tokens(self, request)

    async def aclose(self) -> None:
        await self._pool.aclose()
        self._closed = True


async def _headers_came(response: httpx2.Response) -> None:
    """httpx2 response hook (on our own clients), run when a response's headers have come: the
    server has taken the request, so a caller that set `request_arrived` is told now. A
    streamed response's headers come at once; a plain one's only with its whole body, so a
    call admitted during a hold streams (see `complete`)."""
    arrived = request_arrived.get()
    if arrived is not None:
        await arrived()


def _timeout_of(client: anthropic.AsyncAnthropic) -> Any:
    """The timeout a user's client was built with (a number or an httpx Timeout), if any."""
    timeout = getattr(client, "timeout", None)
    if isinstance(timeout, int | float | httpx2.Timeout):
        return timeout
    return None


def _to_response(data: dict[str, Any], headers: dict[str, str]) -> Response:
    usage = {k: v for k, v in (data.get("usage") or {}).items() if isinstance(v, int)}
    return Response(
        content=[_clean_block(b) for b in data.get("content") or []],
        stop_reason=data.get("stop_reason"),
        model=data.get("model") or "",
        usage=Usage.model_validate(usage),
        headers=headers,
    )
