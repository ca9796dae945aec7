"""The provider seam: one small async protocol between dagagents and any LLM backend.

Requests and responses use the Anthropic Messages wire shapes (content blocks as plain dicts),
so the real provider is a thin adapter and the simulated one and the fake server speak the same
language. Nothing here knows about graphs or scheduling.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import orjson
from pydantic import BaseModel, ConfigDict, Field

from dagagents.errors import ProviderError

# Set by the caller around `complete()`: a provider that can tell when the response has begun
# (the first streamed event) calls it then, and streams for that purpose. Cache warming
# releases the calls waiting for this one's prompt-cache write at that moment.
response_begun: ContextVar[Callable[[], None] | None] = ContextVar(
    "dagagents_response_begun", default=None
)
# Set by the caller around `complete()` for a call admitted while a rate-limit bucket holds its
# refill (a burst began): a provider that can tell when the server has the request (its response
# headers came: the API sends them once it has taken the request, at once when streaming) awaits
# it then, once or more, and may stream for that purpose. The bucket refills from that moment,
# not from the answer (engine/limits.py, `TokenBucket.hold`); without it, the answer ends the
# hold, later.
request_arrived: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "dagagents_request_arrived", default=None
)


class Usage(BaseModel):
    """Token usage of one API call, as the Messages API reports it."""

    model_config = ConfigDict(extra="ignore")

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens
            + other.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
        )


class Request(BaseModel):
    """One Messages API call. `node` and `agent` are for tracing only and never sent."""

    model_config = ConfigDict(extra="forbid")

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int = 1024
    # Either a plain string or a list of text blocks (the latter allows cache_control).
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    tool_choice: dict[str, Any] | None = None
    temperature: float | None = None
    # JSON schema the reply must match (sent as the API's `output_config` json_schema format).
    output_schema: dict[str, Any] | None = None
    timeout: float | None = None
    # Other body parameters sent as given (top_p, stop_sequences, metadata, ...): Agent.params.
    params: dict[str, Any] = Field(default_factory=dict)
    node: str | None = None
    agent: str | None = None


class Response(BaseModel):
    """A provider's answer: content blocks in the Messages API shape plus usage and headers."""

    model_config = ConfigDict(extra="ignore")

    content: list[dict[str, Any]]
    stop_reason: str | None = "end_turn"
    model: str = ""
    usage: Usage = Field(default_factory=Usage)
    headers: dict[str, str] = Field(default_factory=dict)
    # True when no real model produced this (the simulated provider); shown to users.
    simulated: bool = False
    # True when it came through the Message Batches API (priced at the batch rate).
    batch: bool = False

    @property
    def text(self) -> str:
        """All text blocks joined, which is what a plain agent node outputs."""
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b.get("type") == "tool_use"]


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do, declared so the engine never guesses from its name.

    `simulated`: answers are made up offline (labelled simulated; needs no SDK).
    `forced_tool_choice`: honours a `tool_choice` that forces one tool, so structured output
    may be asked for as a forced answer tool; without it, only as `output_schema`.
    `strict_schema`: wants `output_schema` in the API's strict form (the SDK's own transform,
    which imports the SDK); otherwise the model's plain JSON schema is sent.
    `remote_settings`: a Dask worker rebuilds it as `type(provider)(**provider.settings())`
    with the worker's own key (nothing secret travels; the class may define a classmethod
    `check_worker_environment()` that raises UserError when a worker lacks its credentials);
    otherwise it is pickled or built by its `dask_factory()`.
    `streams_text`: `complete(request, on_text=...)` passes text deltas on as they arrive
    (and, for a forced tool, its input JSON: that is the structured reply's text).
    `caches_prompts`: the backend caches prompt prefixes (`cache_control`), so a run warms
    a shared prefix once before its followers start (engine/cache_warming.py).
    `batches`: it speaks a Message Batches API (the `BatchesAPI` methods), so `batch=True`
    can send its calls there at the batch price (engine/batches.py).
    `counts_tokens`: it can count a request's input tokens exactly (`CountsTokens`), so
    `count_tokens=True` reserves exact sizes against ITPM (engine/token_count.py).
    """

    simulated: bool = False
    forced_tool_choice: bool = True
    strict_schema: bool = True
    remote_settings: bool = False
    streams_text: bool = False
    caches_prompts: bool = False
    batches: bool = False
    counts_tokens: bool = False


DEFAULT_CAPABILITIES = Capabilities()
# The Messages API's (declared here, so a provider chosen by name is known before its SDK loads).
ANTHROPIC_CAPABILITIES = Capabilities(
    remote_settings=True,
    streams_text=True,
    caches_prompts=True,
    batches=True,
    counts_tokens=True,
)

# The Message Batches API's documented limits per batch.
MAX_BATCH_REQUESTS = 100_000
MAX_BATCH_BYTES = 256 * 1024 * 1024


@runtime_checkable
class Declares(Protocol):
    """A provider that declares its capabilities (the built-in ones do)."""

    capabilities: Capabilities


def capabilities_of(provider: object) -> Capabilities:
    """A provider's declared capabilities; a provider that declares none gets the defaults
    (a real API: forced tools, strict schemas, shipped to workers by pickling)."""
    return provider.capabilities if isinstance(provider, Declares) else DEFAULT_CAPABILITIES


def key_digest(secret: str | None) -> str | None:
    """A stable name for an API key that never reveals it: `key-` and 16 hex digits of its
    sha256 (None without a key). Processes on one key share limits under this name."""
    if not secret:
        return None
    return "key-" + hashlib.sha256(secret.encode()).hexdigest()[:16]


@runtime_checkable
class KeyedLimits(Protocol):
    """A provider that names the API key its calls are limited under (the built-in Anthropic
    one does): `limits_key` is `key_digest(api key)`, or None when it cannot tell. Shared
    limits (engine/shared_limits.py) use it as the default `--limits-key`."""

    limits_key: str | None


def limits_key_of(provider: object) -> str | None:
    """The provider's declared limits key, or None if it declares none."""
    return provider.limits_key if isinstance(provider, KeyedLimits) else None


class BatchExpired(ProviderError):
    """A batch request the API did not reach before the batch expired (24 h)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, kind="expired")


class BatchesAPI(Protocol):
    """What a provider declaring `batches` offers (the Message Batches API's operations)."""

    def batch_params(self, request: Request) -> dict[str, Any]:
        """The `params` of one batch request: what a direct call would send, as plain JSON."""
        ...

    async def create_batch(self, requests: list[dict[str, Any]]) -> str:
        """Submit `[{"custom_id", "params"}]`; returns the batch id."""
        ...

    async def retrieve_batch(self, batch_id: str) -> dict[str, Any]:
        """The batch's status: `processing_status` and `request_counts` (plain JSON)."""
        ...

    async def batch_results(self, batch_id: str) -> dict[str, dict[str, Any]]:
        """custom_id -> result (succeeded, errored, expired, canceled)."""
        ...

    def batch_response(self, result: dict[str, Any], node: str | None) -> Response:
        """A succeeded result as a `Response`; any other raises the `ProviderError` a direct
        call would have (`BatchExpired` for an expired one)."""
        ...


class CountsTokens(Protocol):
    """What a provider declaring `counts_tokens` offers."""

    async def count_tokens(self, request: Request) -> int:
        """The exact input tokens of `request` (a 429 is a retryable `ProviderError`)."""
        ...


@runtime_checkable
class Provider(Protocol):
    """Anything that can answer a `Request`. Implementations must be safe to call concurrently.

    A provider that sets `streams_text = True` also accepts `complete(request, on_text=fn)`
    and calls `fn(delta)` with each piece of reply text as it arrives (token streaming); when
    `tool_choice` forces one tool, the pieces of that tool's input JSON count as reply text
    (a structured answer streams the same in native and in tool mode)."""

    name: str

    async def complete(self, request: Request) -> Response: ...

    async def aclose(self) -> None: ...


def estimate_tokens(*parts: Any) -> int:
    """Tokens in `parts` at about four characters of text (or four bytes of JSON) a token, the
    usual rule of thumb; empty parts count nothing. The one estimate every room uses (limits,
    cache thresholds, the simulated provider, the fake server), so they cannot drift apart."""
    chars = 0
    for part in parts:
        if isinstance(part, str):
            chars += len(part)
        elif part:
            chars += len(orjson.dumps(part, default=str))
    return chars // 4
