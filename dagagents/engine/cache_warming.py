"""Cache warming: calls that share a cacheable prefix write it once, not once per call.

A prompt-cache entry becomes readable only after the first response that wrote it has begun, so
N workers that start together with the same long system prompt each pay the cache-write price
for it. The gate here sits in front of every provider call: the first call with a given prefix
(model, tools, system and leading messages up to the last `cache_control` breakpoint) goes at
once — the leader — and later calls with the same prefix wait until the leader's response has
begun (its first streamed event; the whole response for a provider that cannot say), then read
the prefix from the cache. The rule for when not to wait:
- a prefix below the model's minimum cacheable length is never cached, so nobody waits for it;
- a prefix already warm (a response that wrote or read it began within its TTL) needs no wait;
- a follower waits at most `max_wait` seconds (default 10: a few times a typical time to first
  token); past that it goes and writes the prefix itself;
- if the leader fails before its response begins, the first waiting follower becomes the leader.
The cost of waiting is at most one time-to-first-token per follower; the saving is
(N-1) x prefix x (cache-write price - cache-read price).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from dagagents.observe.pricing import Pricing
from dagagents.observe.trace import Emit
from dagagents.providers.base import Request

TTL_5M = 300.0
TTL_1H = 3600.0
_MARGIN = 10.0  # treat an entry as expired this many seconds early (clock and latency slack)


def cacheable_prefix(request: Request) -> tuple[str, int, float] | None:
    """(key, estimated tokens, ttl) of the prefix up to the request's last cache breakpoint.

    The order is the API's: tools, then system, then messages. None if nothing is marked."""
    parts: list[Any] = [request.model]
    chars = 0
    found: tuple[str, int, float] | None = None

    def mark(block: Any, size: int) -> None:
        nonlocal found
        control = block.get("cache_control") if isinstance(block, dict) else None
        if isinstance(control, dict):
            ttl = TTL_1H if control.get("ttl") == "1h" else TTL_5M
            key = hashlib.blake2b(orjson.dumps(parts), digest_size=16).hexdigest()
            found = (key, size // 4, ttl)

    for tool in request.tools:
        parts.append(tool)
        chars += len(orjson.dumps(tool))
        mark(tool, chars)
    system = request.system
    if isinstance(system, str):
        parts.append(system)
        chars += len(system)
    elif isinstance(system, list):
        for block in system:
            parts.append(block)
            chars += len(block.get("text", "")) if isinstance(block, dict) else 0
            mark(block, chars)
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                parts.append([message.get("role"), block])
                chars += len(orjson.dumps(block))
                mark(block, chars)
        else:
            parts.append(message)
            chars += len(content or "") if isinstance(content, str) else 0
    return found


@dataclass
class _Lead:
    """A prefix whose first response has not begun yet."""

    leader: str | None
    started: float
    tokens: int
    ttl: float
    begun: asyncio.Future[bool]
    followers: list[str] = field(default_factory=list)


class CacheWarmer:
    """One per run, shared by every agent call of the run (see the module docstring)."""

    def __init__(self, pricing: Pricing, *, max_wait: float = 10.0) -> None:
        self.pricing = pricing
        self.max_wait = max_wait
        self._leads: dict[str, _Lead] = {}
        self._warm: dict[str, float] = {}  # prefix key -> monotonic expiry
        self.saved_writes = 0  # followers released by a leader (each read instead of wrote)

    def minimum(self, model: str) -> int:
        price = self.pricing.lookup(model)
        return price.min_cache_tokens if price is not None else 1024

    def _lead_began(self, key: str, lead: _Lead, when: float, emit: Emit | None) -> None:
        """The leader's response began: release its followers (when it still leads)."""
        if self._leads.get(key) is not lead:
            return
        del self._leads[key]
        if not lead.begun.done():
            lead.begun.set_result(True)
        if lead.followers:
            self.saved_writes += len(lead.followers)
            if emit is not None:
                emit(
                    "cache_warm",
                    node=lead.leader,
                    leader=lead.leader,
                    followers=list(lead.followers),
                    prefix_tokens=lead.tokens,
                    wait=round(when - lead.started, 6),
                )

    def _lead_failed(self, key: str, lead: _Lead) -> None:
        """The leader failed before its response began: a follower takes the lead."""
        if self._leads.get(key) is not lead:
            return
        del self._leads[key]
        if not lead.begun.done():
            lead.begun.set_result(False)

    @contextlib.asynccontextmanager
    async def gate(
        self, request: Request, *, node: str | None = None, emit: Emit | None = None
    ) -> AsyncIterator[Callable[[], None] | None]:
        """Wait if a leader is writing this request's prefix; yields the `begun` callback the
        provider must call when this response begins (None when there is nothing to signal).
        Leaving the block without calling it (a failure) hands the lead to a waiting follower."""
        prefix = cacheable_prefix(request)
        if prefix is None or prefix[1] < self.minimum(request.model):
            yield None
            return
        key, tokens, ttl = prefix
        lead: _Lead | None = None
        joined: _Lead | None = None
        waited_since: float | None = None
        while True:
            now = time.monotonic()
            if self._warm.get(key, 0.0) > now:
                # Readable now: go at once. Nobody waits on this call, so it needs no early
                # signal (and no streaming); its read refreshes the entry's life.
                yield None
                self._warm[key] = max(self._warm[key], time.monotonic() + ttl - _MARGIN)
                return
            current = self._leads.get(key)
            if current is None:
                lead = _Lead(node, now, tokens, ttl, asyncio.get_running_loop().create_future())
                self._leads[key] = lead
                break
            if waited_since is None:
                waited_since = now
            if current is not joined:
                joined = current
                if node is not None:
                    current.followers.append(node)
            remaining = self.max_wait - (now - waited_since)
            if remaining <= 0:
                if emit is not None:
                    _emit_gave_up(emit, node, current, tokens, round(now - waited_since, 6))
                break  # waited long enough: write it ourselves
            try:
                await asyncio.wait_for(asyncio.shield(current.begun), remaining)
            except TimeoutError:
                continue
        signalled = False

        def begun() -> None:
            nonlocal signalled
            if signalled:
                return
            signalled = True
            when = time.monotonic()
            self._warm[key] = max(self._warm.get(key, 0.0), when + ttl - _MARGIN)
            if lead is not None:
                self._lead_began(key, lead, when, emit)

        try:
            yield begun
        finally:
            if lead is not None and not signalled:
                self._lead_failed(key, lead)


def _emit_gave_up(emit: Emit, node: str | None, current: _Lead, tokens: int, wait: float) -> None:
    """A follower waited `max_wait` for `current`'s leader and writes the prefix itself."""
    emit(
        "cache_warm",
        node=node,
        leader=current.leader,
        followers=[node],
        prefix_tokens=tokens,
        wait=wait,
        gave_up=True,
    )
