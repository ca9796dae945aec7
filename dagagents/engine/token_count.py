"""Optional pre-flight token counting (`count_tokens=True`): exact input sizes for ITPM.

The client-side input-tokens-per-minute bucket must reserve a call's input before sending it,
and the ~4-characters-a-token estimate can be well off (code, non-English text, JSON). The
first call of each prompt shape (model + system prompt + tools) asks the free `count_tokens`
endpoint for the exact size and reserves that; later calls of the same shape use the estimator,
scaled by what the count showed it to be off by for that shape. Concurrent first calls of one
shape wait for the one count rather than each asking. The endpoint has its own
requests-per-minute limit: `rpm` keeps us under it, and a 429 (or any failure) pauses
counting for the server's `retry-after` while calls go on with the estimate.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from typing import Any

import orjson

from dagagents.engine.limits import TokenBucket, estimate_input_tokens
from dagagents.errors import ProviderError
from dagagents.observe.trace import Emit
from dagagents.providers.base import CountsTokens, Provider, Request, capabilities_of


def _shape(request: Request) -> str:
    return hashlib.blake2b(
        orjson.dumps([request.model, request.system, request.tools]), digest_size=16
    ).hexdigest()


class TokenCounter:
    """One per run; `input_tokens(request)` is what the limiter should reserve."""

    def __init__(self, provider: Provider, *, rpm: float | None = None) -> None:
        self.provider = provider
        self.bucket = TokenBucket(rpm) if rpm else None
        self.ratio: dict[str, asyncio.Future[float]] = {}
        self.paused_until = 0.0
        self.counted = 0

    async def _count(self, request: Request) -> int:
        provider: Any = self.provider
        if not capabilities_of(provider).counts_tokens:
            raise ProviderError(
                "token counting needs the Anthropic provider (the count_tokens endpoint); "
                f"the run uses '{getattr(provider, 'name', type(provider).__name__)}'",
                kind="unsupported",
            )
        resolve = getattr(provider, "resolve", None)
        if callable(resolve):
            provider = resolve()  # a provider that builds the real one on first use
        counter: CountsTokens = provider
        if self.bucket is not None:
            await self.bucket.take(1)
        return await counter.count_tokens(request)

    async def input_tokens(
        self, request: Request, *, node: str | None = None, emit: Emit | None = None
    ) -> int | None:
        """Exact tokens for the first call of a shape, the scaled estimate after; None when
        counting is paused or unavailable (the limiter then uses its own estimate)."""
        estimate = estimate_input_tokens(request)[0]
        shape = _shape(request)
        known = self.ratio.get(shape)
        if known is not None:
            ratio = await asyncio.shield(known)
            return None if ratio <= 0 else max(1, round(estimate * ratio))
        if time.monotonic() < self.paused_until:
            return None
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.ratio[shape] = future
        try:
            exact = await self._count(request)
        except ProviderError as exc:
            forever = exc.kind == "unsupported"
            self.paused_until = (
                math.inf if forever else time.monotonic() + (exc.retry_after or 10.0)
            )
            del self.ratio[shape]  # a later call of this shape may try again
            future.set_result(0.0)
            if emit is not None:
                emit("warning", node=node, message=f"token counting skipped: {exc}")
            return None
        except BaseException:
            del self.ratio[shape]
            future.set_result(0.0)
            raise
        self.counted += 1
        future.set_result(exact / max(1, estimate))
        if emit is not None:
            emit("token_count", node=node, model=request.model, tokens=exact, estimate=estimate)
        return exact


def make_counter(provider: Provider, option: Any) -> TokenCounter | None:
    """`count_tokens=True` or a requests-per-minute number for the endpoint; False/None: off."""
    if not option:
        return None
    rpm = None if option is True else float(option)
    return TokenCounter(provider, rpm=rpm)
