"""Cache warming: calls that share a cacheable prefix write it once, not once per call.

A prompt-cache entry becomes readable only after the first response that wrote it has begun, so
N workers that start together with the same long system prompt each pay the cache-write price
for it. The gate here sits in front of every provider call: the first call with a given prefix
(model, tools, system and leading messages up to the last `cache_control` breakpoint) goes at
once — the leader — and later calls with the same prefix wait until the leader's response has
begun (its first streamed event; the whole response for a provider that cannot say), then read
the prefix from the cache.

When a follower does not wait (the rule, decided in one place: `should_wait`):
- a prefix below the model's minimum cacheable length is never cached, so nobody waits for it;
- a prefix already warm (a response that wrote or read it began within its TTL) needs no wait;
- **the critical-path rule.** A follower's *slack* is how late it may start without the run
  ending later: the longest expected remaining path among the running and ready nodes, less
  its own (the scheduler's remaining path lengths; `critical_slack`). The *expected wait* is
  the leader's time to first token as this run has seen it (`first_token`, 1 s, before it has
  seen one), less what the leader has already waited. A follower whose slack covers the
  expected wait waits: it costs the run nothing. Otherwise waiting delays the run by the
  expected wait less the smallest slack among the followers it delays, and the followers of one
  leader are released together, so they are weighed together: they wait when what they save
  together — each one's prefix x (cache-write price - cache-read price) — is worth at least
  `usd_per_second` (default $0.01, i.e. $36 an hour) for every second of that delay;
  otherwise a follower without the slack goes at once and writes the prefix itself. The trace's
  `cache_warm` event says so (`released: "critical_path"`, with the slack, delay and saving).
  `usd_per_second=0` always waits; a large value never delays the run.
- a follower waits at most `max_wait` seconds (default 10); past that it goes and writes the
  prefix itself (`gave_up`);
- if the leader fails before its response begins, the first waiting follower becomes the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from dagagents.errors import UserError
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


@dataclass(frozen=True)
class CacheWarming:
    """How followers weigh waiting for a leader (the rule in the module docstring).

    `max_wait`: the most seconds any follower waits. `usd_per_second`: what one second added to
    the run's end is worth against the cache writes waiting saves. `first_token`: seconds a
    leader's response is expected to take to begin, until this run has seen one begin."""

    max_wait: float = 10.0
    usd_per_second: float = 0.01
    first_token: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_wait", "usd_per_second", "first_token"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value >= 0:  # nan too
                raise UserError(f"CacheWarming {name} must be 0 or more (got {value!r}).")


def warming_option(option: bool | float | CacheWarming) -> CacheWarming:
    """`cache_warming=True`, a number (the most seconds a follower waits), or a CacheWarming."""
    if isinstance(option, CacheWarming):
        return option
    if option is True:
        return CacheWarming()
    if isinstance(option, int | float) and not isinstance(option, bool) and option >= 0:
        return CacheWarming(max_wait=float(option))
    raise UserError(
        "cache_warming must be True, False, the most seconds to wait or a CacheWarming "
        f"(got {option!r})."
    )


class Remaining(Protocol):
    """What `critical_slack` reads of the scheduler (engine/scheduler.EagerSorter)."""

    def remaining(self, node: str) -> float: ...

    def top_ready(self) -> float: ...


def critical_slack(node: str, sorter: Remaining, running: Iterable[tuple[str, float]]) -> float:
    """Seconds `node` may start late before the run ends later: the longest expected remaining
    path among the running nodes (less what each has already run) and the ready ones, less
    `node`'s own. `running` gives (node, seconds it has run) and includes `node` itself."""
    horizon = sorter.top_ready()
    own = sorter.remaining(node)
    for name, ran in running:
        left = sorter.remaining(name) - ran
        if name == node:
            own = left
        horizon = max(horizon, left)
    return max(0.0, horizon - own)


def should_wait(
    expected: float, slack: float, group: Sequence[tuple[float, float]], usd_per_second: float
) -> bool:
    """The critical-path rule: does a follower with `slack` wait `expected` seconds for its
    leader? `group` holds (slack, dollars saved) of every follower of that leader still
    waiting, this one included: they are released together, so they are weighed together."""
    if expected <= slack or usd_per_second <= 0:
        return True  # waiting costs the run nothing (or time is declared free)
    delayed = [(s, saving) for s, saving in group if expected > s]
    delay = expected - min(s for s, _ in delayed)
    return sum(saving for _, saving in delayed) >= usd_per_second * delay


@dataclass
class _Lead:
    """A prefix whose first response has not begun yet."""

    leader: str | None
    started: float
    tokens: int
    ttl: float
    begun: asyncio.Future[bool]
    followers: list[str] = field(default_factory=list)
    # (slack, dollars saved) of each follower waiting on it, by a token per follower.
    waiting: dict[object, tuple[float, float]] = field(default_factory=dict)


class CacheWarmer:
    """One per run, shared by every agent call of the run (see the module docstring).

    `slack(node)` says how late a node may start before the run ends later (the run passes
    `critical_slack` over its scheduler); without it every follower counts as critical."""

    def __init__(
        self,
        pricing: Pricing,
        rule: CacheWarming | None = None,
        *,
        slack: Callable[[str], float] | None = None,
    ) -> None:
        self.pricing = pricing
        self.rule = rule or CacheWarming()
        self.slack = slack
        self._leads: dict[str, _Lead] = {}
        self._warm: dict[str, float] = {}  # prefix key -> monotonic expiry
        self._first_token: float | None = None  # a leader's time to first token, as seen
        self.saved_writes = 0  # followers released by a leader (each read instead of wrote)
        self.released = 0  # followers the critical-path rule sent at once

    @property
    def max_wait(self) -> float:
        return self.rule.max_wait

    def minimum(self, model: str) -> int:
        price = self.pricing.lookup(model)
        return price.min_cache_tokens if price is not None else 1024

    def saving(self, model: str, tokens: int) -> float:
        """Dollars one follower saves by reading `tokens` of prefix instead of writing them."""
        price = self.pricing.lookup(model)
        return 0.0 if price is None else tokens * (price.cache_write - price.cache_read) / 1e6

    def expected_wait(self, lead: _Lead, now: float) -> float:
        """Seconds until `lead`'s response is expected to begin."""
        first_token = self.rule.first_token if self._first_token is None else self._first_token
        return max(0.0, first_token - (now - lead.started))

    def _lead_began(self, key: str, lead: _Lead, when: float, emit: Emit | None) -> None:
        """The leader's response began: release its followers (when it still leads)."""
        if self._leads.get(key) is not lead:
            return
        del self._leads[key]
        seen = when - lead.started
        self._first_token = seen if self._first_token is None else (self._first_token + seen) / 2
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

    async def _follows(
        self, lead: _Lead, me: object, node: str | None, model: str, emit: Emit | None
    ) -> bool:
        """Join `lead` as a follower and apply the critical-path rule: True to wait for it,
        False (said in the trace) to go at once."""
        slack = self.slack(node) if self.slack is not None and node is not None else 0.0
        lead.waiting[me] = (slack, self.saving(model, lead.tokens))
        if node is not None:
            lead.followers.append(node)
        await asyncio.sleep(0)  # followers that arrive together join before one decides
        if lead.begun.done():
            return True
        expected = self.expected_wait(lead, time.monotonic())
        group = list(lead.waiting.values())
        if should_wait(expected, slack, group, self.rule.usd_per_second):
            return True
        del lead.waiting[me]
        if node is not None:
            lead.followers.remove(node)
        self.released += 1
        if emit is not None:
            emit(
                "cache_warm",
                node=node,
                leader=lead.leader,
                followers=[node],
                prefix_tokens=lead.tokens,
                wait=0.0,
                released="critical_path",
                slack=round(slack, 3),
                expected_wait=round(expected, 3),
                saving_usd=round(sum(v for s, v in group if expected > s), 6),
                usd_per_second=self.rule.usd_per_second,
            )
        return False

    async def _turn(
        self, key: str, tokens: int, ttl: float, node: str | None, model: str, emit: Emit | None
    ) -> tuple[bool, _Lead | None]:
        """Wait until this call may go: (True, None) when the prefix is readable, (False, its
        new lead) when this call leads, (False, None) when it goes and writes it anyway."""
        joined: _Lead | None = None
        waited_since: float | None = None
        me = object()
        try:
            while True:
                now = time.monotonic()
                if self._warm.get(key, 0.0) > now:
                    return True, None
                current = self._leads.get(key)
                if current is None:
                    lead = _Lead(node, now, tokens, ttl, asyncio.get_running_loop().create_future())
                    self._leads[key] = lead
                    return False, lead
                if waited_since is None:
                    waited_since = now
                if current is not joined:
                    joined = current
                    if not await self._follows(current, me, node, model, emit):
                        return False, None  # waiting costs more than it saves: write it
                    continue
                remaining = self.max_wait - (now - waited_since)
                if remaining <= 0:
                    if emit is not None:
                        _emit_gave_up(emit, node, current, tokens, round(now - waited_since, 6))
                    return False, None  # waited long enough: write it ourselves
                try:
                    await asyncio.wait_for(asyncio.shield(current.begun), remaining)
                except TimeoutError:
                    continue
        finally:
            if joined is not None:
                joined.waiting.pop(me, None)

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
        warm, lead = await self._turn(key, tokens, ttl, node, request.model, emit)
        if warm:
            # Readable now: go at once. Nobody waits on this call, so it needs no early
            # signal (and no streaming); its read refreshes the entry's life.
            yield None
            self._warm[key] = max(self._warm[key], time.monotonic() + ttl - _MARGIN)
            return
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
