"""The Message Batches API and token counting through `anthropic.AsyncAnthropic` (SDK 2.x).

Thin calls over an `AnthropicProvider`'s clients: create a batch from `Request`s, retrieve its
status, read its results (JSONL, any order, matched by `custom_id`), cancel it. SDK failures
become the same `AnthropicAPIError`s the direct path raises, so the retry policy and the limiter
read them unchanged. A succeeded result becomes a `Response` marked `batch=True` (priced at the
batch rate); an errored one becomes the error the direct call would have raised.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import orjson

from dagagents.errors import ProviderError
from dagagents.providers.anthropic import _STATUS_OF_TYPE, AnthropicAPIError, AnthropicProvider
from dagagents.providers.anthropic import _to_response as to_response
from dagagents.providers.base import (
    MAX_BATCH_BYTES,
    MAX_BATCH_REQUESTS,
    BatchExpired,
    Request,
    Response,
)

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_REQUESTS",
    "BatchExpired",
    "batch_params",
    "batch_results",
    "cancel_batch",
    "count_tokens",
    "create_batch",
    "params_size",
    "result_response",
    "retrieve_batch",
]


def batch_params(provider: AnthropicProvider, request: Request) -> dict[str, Any]:
    """The `params` of one batch request: what `messages.create` would send, as plain JSON."""
    kw = provider.request_kwargs(request)
    kw.pop("timeout", None)
    extra = kw.pop("extra_body", None) or {}
    return {**kw, **extra}


def params_size(params: dict[str, Any]) -> int:
    return len(orjson.dumps(params))


async def _client(provider: AnthropicProvider) -> anthropic.AsyncAnthropic:
    pool = await provider._bound_pool()
    return pool.clients[0]


async def _call(provider: AnthropicProvider, what: str, coro: Any) -> Any:
    try:
        return await coro
    except anthropic.APIStatusError as e:
        raise provider._status_error(e, Request(model="batch", messages=[])) from None
    except anthropic.APITimeoutError:
        raise AnthropicAPIError(f"{what} timed out", retryable=True, kind="timeout") from None
    except (anthropic.APIConnectionError, httpx2.TransportError) as e:
        raise AnthropicAPIError(
            f"{what}: connection failed: {provider._scrub(str(e.__cause__ or e))}",
            retryable=True,
            kind="connection",
        ) from None
    except anthropic.AnthropicError as e:
        raise AnthropicAPIError(f"{what}: {provider._scrub(str(e))}", kind="client_error") from None


async def create_batch(provider: AnthropicProvider, requests: list[dict[str, Any]]) -> str:
    """Submit `[{"custom_id", "params"}]`; returns the batch id."""
    client = await _client(provider)
    batch = await _call(
        provider,
        "creating a message batch",
        client.messages.batches.create(requests=requests),  # type: ignore[arg-type]
    )
    return str(batch.id)


async def retrieve_batch(provider: AnthropicProvider, batch_id: str) -> dict[str, Any]:
    """The batch's status: `processing_status` and `request_counts` (plain JSON)."""
    client = await _client(provider)
    batch = await _call(
        provider, f"polling batch {batch_id}", client.messages.batches.retrieve(batch_id)
    )
    return dict(batch.model_dump(mode="json"))


async def batch_results(provider: AnthropicProvider, batch_id: str) -> dict[str, dict[str, Any]]:
    """custom_id -> result (`{"type": "succeeded", "message": ...}`, errored, expired, ...)."""
    client = await _client(provider)
    decoder = await _call(
        provider, f"reading results of batch {batch_id}", client.messages.batches.results(batch_id)
    )
    out: dict[str, dict[str, Any]] = {}
    async for item in decoder:
        out[item.custom_id] = item.result.model_dump(mode="json", exclude_none=True)
    return out


async def cancel_batch(provider: AnthropicProvider, batch_id: str) -> None:
    client = await _client(provider)
    await _call(provider, f"canceling batch {batch_id}", client.messages.batches.cancel(batch_id))


def result_response(
    provider: AnthropicProvider, result: dict[str, Any], node: str | None
) -> Response:
    """A succeeded result as a `Response`; errored / expired / canceled raise `ProviderError`
    (errored ones retryable exactly when the same error from a direct call would be)."""
    kind = result.get("type")
    if kind == "succeeded":
        response = to_response(result.get("message") or {}, {})
        response.batch = True
        return response
    who = f"node '{node}'" if node else "a request"
    if kind == "errored":
        error = (result.get("error") or {}).get("error") or {}
        etype = str(error.get("type") or "api_error")
        status = _STATUS_OF_TYPE.get(etype, 500)
        message = provider._scrub(str(error.get("message") or "no message"))
        retryable = status in (408, 409, 429) or status >= 500
        raise AnthropicAPIError(
            f"batch request for {who} errored: Anthropic API error {status} {etype}: {message}",
            status=status,
            retryable=retryable,
            kind=etype,
            api_message=message,
        )
    if kind == "expired":
        raise BatchExpired(
            f"batch request for {who} expired: the Message Batches API did not process it "
            "within 24 hours"
        )
    raise ProviderError(f"batch request for {who} was {kind or 'lost'}", kind=str(kind))


async def count_tokens(provider: AnthropicProvider, request: Request) -> int:
    """The exact input size of `request` from the free `count_tokens` endpoint (which has its
    own requests-per-minute limit: a 429 comes back as a retryable `AnthropicAPIError`)."""
    kw = provider.request_kwargs(request)
    for name in ("max_tokens", "timeout", "extra_body"):
        kw.pop(name, None)
    client = await _client(provider)
    counted = await _call(
        provider, "counting tokens", client.messages.count_tokens(**kw, timeout=30.0)
    )
    return int(counted.input_tokens)
