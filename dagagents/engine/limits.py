"""API limits around every provider call: token buckets, adaptive concurrency, and the cost budget.

The Messages API limits each model by requests, input tokens and output tokens per minute, as
continuously refilled token buckets. Staying under them on the client side is cheaper than
collecting 429s, so each model gets the same three buckets here. Input tokens are estimated
before a call and reconciled with the reported usage after it (cache reads do not count);
output tokens are reserved from `max_tokens` up front, as the API does, and the unused part is
refunded. When a 429/529 still arrives the model's concurrency halves and its calls pause for
the server's `retry-after`, then recover one slot at a time (AIMD). `anthropic-ratelimit-*`
response headers calibrate the buckets. A run-wide `max_cost_usd` refuses to start a call whose
worst case would exceed the budget.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import orjson

from dagagents.errors import BudgetExceeded, ProviderError, UserError
from dagagents.observe.pricing import Pricing, default_pricing
from dagagents.observe.trace import Emit, no_emit
from dagagents.providers.base import Request, Response, Usage, estimate_tokens

_CACHE_TTL = 300.0  # the API's default (5 minute) prompt-cache lifetime
# After a take from a full bucket, its refill waits (at most this long) until the server has
# a call admitted since (its response headers came): the server's bucket refills from the first
# arrival (TokenBucket).
ARRIVAL_HOLD = 2.0


def check_limit(name: str, value: float | None) -> None:
    """A limit is a positive, finite number (or None for "no limit").

    `nan` compares false with everything, so it would silently disable a budget or stall a
    bucket forever; zero and negatives would block every call. All are refused up front."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{name} must be a number, got {value!r}.")
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{name} must be a positive finite number, got {value!r}.")


@dataclass(frozen=True)
class RateLimits:
    """Client-side limits per model: requests, input and output tokens per minute.

    `per_model` maps a model id prefix to its own limits (the longest matching prefix wins);
    unset fields fall back to the top-level values. `None` means "no limit known yet" (the
    API's `anthropic-ratelimit-*` headers may still supply one).
    """

    rpm: float | None = None
    itpm: float | None = None
    otpm: float | None = None
    per_model: Mapping[str, RateLimits] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("rpm", "itpm", "otpm"):
            check_limit(f"RateLimits: {name}", getattr(self, name))

    def for_model(self, model: str) -> RateLimits:
        best = max((p for p in self.per_model if model.startswith(p)), key=len, default=None)
        if best is None:
            return self
        own = self.per_model[best]
        return RateLimits(
            rpm=own.rpm if own.rpm is not None else self.rpm,
            itpm=own.itpm if own.itpm is not None else self.itpm,
            otpm=own.otpm if own.otpm is not None else self.otpm,
        )


class TokenBucket:
    """A continuously refilled bucket (`per_minute` tokens a minute, holding `capacity`).

    Waiters are served in FIFO order. The level may go negative when a reconciliation finds a
    call used more than estimated; later callers then wait for the debt to refill.
    `slack` keeps a token or two of headroom so clock skew between us and the server cannot
    turn an exactly-at-the-limit burst into a 429.

    `hold` (seconds, 0: off) is for buckets that mirror a server's. A full bucket stops
    refilling, here and at the server; when a call takes from it, our refill would restart at
    once, the server's only when that request arrives. Under load the first requests of a burst
    (new connections) arrive seconds late while later ones overtake them, and every second of
    that gap was a token the server did not have (a 429 on a busy machine). So a take from a
    full bucket holds the refill until the server is known to have a call admitted since
    (`arrived`): its response headers came (the provider's `request_arrived`; such calls
    stream, so they come at once) or its answer; at most `hold` seconds. The moment the
    request was written would be earlier but is not proof: a busy server reads it later
    (test_rpm_120 got 429s under load that way).
    """

    def __init__(
        self,
        per_minute: float,
        capacity: float | None = None,
        *,
        slack: float = 0.0,
        hold: float = 0.0,
    ):
        self.rate = per_minute / 60.0
        self.capacity = float(capacity if capacity is not None else per_minute)
        self.slack = slack
        self.level = self.capacity - slack
        self.hold = hold
        self._stamp = time.monotonic()
        self._held_from = 0.0  # when a take from the full bucket started a hold
        self._held_until = 0.0  # 0: refilling; else no refill before this (or an arrival)
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        if self._held_until:
            if now < self._held_until:
                self._stamp = now  # nothing accrues while the server's bucket may be full
                return
            self._stamp = max(self._stamp, self._held_until)
            self._held_until = 0.0
        top = self.capacity - self.slack
        if self.level < top:
            self.level = min(top, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def _take(self, now: float, n: float) -> None:
        if self.hold and not self._held_until and self.level >= self.capacity - self.slack:
            self._held_from, self._held_until = now, now + self.hold
        self.level -= n

    @property
    def holding(self) -> bool:
        """Whether a burst holds the refill (until the server has a call admitted since)."""
        return bool(self._held_until) and time.monotonic() < self._held_until

    def arrived(self, admitted: float) -> None:
        """The server has a call admitted at `admitted` (monotonic): it has a request since
        the hold began, so its refill has started; ours starts now."""
        if self._held_until and admitted >= self._held_from:
            now = time.monotonic()
            self._refill(now)
            self._held_until = 0.0

    def try_take(self, n: float) -> bool:
        """Take `n` now if available and nobody is queued (the fast path)."""
        if self._lock.locked():
            return False
        now = time.monotonic()
        self._refill(now)
        need = min(n, self.capacity - self.slack)
        if self.level >= need:
            self._take(now, n)
            return True
        return False

    async def take(self, n: float) -> float:
        """Wait until `n` tokens are available (FIFO), take them, return seconds waited."""
        if self.try_take(n):
            return 0.0
        start = time.monotonic()
        need = min(n, max(1.0, self.capacity - self.slack))
        async with self._lock:
            while True:
                now = time.monotonic()
                self._refill(now)
                if self.level >= need:
                    self._take(now, n)
                    return now - start
                wait = (need - self.level) / self.rate
                if self._held_until:  # re-check when the hold ends (or sooner, on arrival)
                    wait = min(wait + self._held_until - now, 0.05)
                await asyncio.sleep(max(wait, 0.001))

    def give(self, n: float) -> None:
        """Return (positive) or charge (negative) tokens after the fact."""
        self._refill(time.monotonic())
        self.level = min(self.capacity - self.slack, self.level + n)

    def calibrate(self, limit: float | None, remaining: float | None, tolerance: float) -> None:
        """Adopt a lower server limit; drop to the server's `remaining` if others use the key."""
        self._refill(time.monotonic())
        if limit is not None and limit > 0 and limit < self.capacity:
            self.rate = limit / 60.0
            self.capacity = float(limit)
            self.level = min(self.level, self.capacity - self.slack)
        if remaining is not None and remaining + tolerance < self.level:
            self.level = remaining


class AdaptiveConcurrency:
    """A semaphore whose size follows AIMD: halve on overload, +1/limit per success."""

    def __init__(self, limit: float | None, minimum: float = 1.0) -> None:
        self.ceiling = float(limit) if limit else math.inf
        self.limit = self.ceiling
        self.minimum = minimum
        self.in_flight = 0
        self.epoch = (
            0  # bumped on each decrease; later overload reports from older calls are ignored
        )
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        if self.in_flight >= self.limit or self._waiters:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except BaseException:
                if fut.done() and not fut.cancelled():
                    self.in_flight -= 1  # we were granted a slot but are going away
                    self._wake()
                elif fut in self._waiters:
                    self._waiters.remove(fut)
                raise
        else:
            self.in_flight += 1
        return self.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    def success(self) -> None:
        if self.limit < self.ceiling:
            self.limit = min(self.ceiling, self.limit + 1.0 / max(self.limit, 1.0))
            self._wake()

    def overload(self, epoch: int) -> bool:
        """Halve once per congestion event; returns True if the limit changed."""
        if epoch != self.epoch:
            return False
        base = self.limit if self.limit != math.inf else max(self.in_flight, 1)
        self.limit = max(self.minimum, math.floor(base / 2))
        self.epoch += 1
        return True


class Budget:
    """`max_cost_usd`: reserve each call's worst case before it starts, settle to actual after."""

    def __init__(self, max_cost_usd: float | None, pricing: Pricing) -> None:
        check_limit("max_cost_usd", max_cost_usd)
        self.max_cost_usd = max_cost_usd
        self.pricing = pricing
        self.spent_usd = 0.0
        self.reserved_usd = 0.0
        self.refused = 0

    def reserve(
        self,
        model: str,
        input_tokens: int,
        max_tokens: int,
        node: str | None,
        batch: bool = False,
    ) -> float:
        if self.max_cost_usd is None:
            return 0.0
        worst = self.pricing.worst_case_usd(model, input_tokens, max_tokens, batch)
        if worst is None:
            raise UserError(
                f"max_cost_usd is set but no price is known for model '{model}'; add it to a "
                "pricing file named by DAGAGENTS_PRICING."
            )
        if self.spent_usd + self.reserved_usd + worst > self.max_cost_usd + 1e-12:
            self.refused += 1
            who = f"node '{node}'" if node else "the next call"
            raise BudgetExceeded(
                f"cost budget of ${self.max_cost_usd:.4f} reached: ${self.spent_usd:.4f} spent"
                f" and ${self.reserved_usd:.4f} in flight, and {who} ({model}) could cost up to "
                f"${worst:.4f}, so it was not started."
            )
        self.reserved_usd += worst
        return worst

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)
        self.spent_usd += actual


def estimate_input_tokens(request: Request) -> tuple[int, int]:
    """(total, cacheable prefix) input tokens, estimated at ~4 characters a token.

    Deliberately a little high (JSON punctuation counts): under-estimating invites 429s.
    """
    system = request.system
    texts = [b.get("text", "") for b in system] if isinstance(system, list) else [system or ""]
    prefix = estimate_tokens(*texts, request.tools)
    return prefix + estimate_tokens(request.messages) + 4 * len(request.messages) + 8, prefix


def _cache_key(request: Request) -> str | None:
    """Identity of a request's cached prefix (tools + system), when it asks for caching."""
    system = request.system
    if not isinstance(system, list) or not any("cache_control" in b for b in system):
        return None
    h = hashlib.blake2b(orjson.dumps([request.model, request.tools, system]), digest_size=16)
    return h.hexdigest()


def _header_float(headers: Mapping[str, str], name: str) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


class ModelLimits:
    """Buckets, adaptive concurrency and an overload pause for one model."""

    def __init__(self, model: str, limits: RateLimits, concurrency: int | None) -> None:
        self.model = model
        self.requests = self._bucket(limits.rpm, request_bucket=True)
        self.input = self._bucket(limits.itpm)
        self.output = self._bucket(limits.otpm)
        self.concurrency = AdaptiveConcurrency(concurrency)
        self.resume_at = 0.0  # monotonic time before which no call starts (server asked)
        self.cached: dict[str, float] = {}  # prefix key -> expiry (monotonic)
        self.calls = 0
        self.overloads = 0

    @staticmethod
    def _bucket(per_minute: float | None, request_bucket: bool = False) -> TokenBucket | None:
        if per_minute is None:
            return None
        # One request (or 250 ms of a token limit's refill) of headroom absorbs the skew
        # between our bucket and the server's (requests reach it out of order, late, under
        # load); 50 ms was seen to allow an occasional 429 on a loaded machine, and a larger
        # margin is wasted burst (1% of a minute was 0.6 s of every rate-limited run).
        slack = 1.0 if request_bucket else math.ceil(per_minute / 60.0 * 0.25)
        return TokenBucket(per_minute, slack=min(slack, per_minute / 2), hold=ARRIVAL_HOLD)

    def calibrate(self, headers: Mapping[str, str]) -> None:
        """Learn limits from `anthropic-ratelimit-*` headers (never raise them above ours)."""
        for kind, attr in (
            ("requests", "requests"),
            ("input-tokens", "input"),
            ("output-tokens", "output"),
        ):
            limit = _header_float(headers, f"anthropic-ratelimit-{kind}-limit")
            remaining = _header_float(headers, f"anthropic-ratelimit-{kind}-remaining")
            if limit is None and remaining is None:
                continue
            bucket: TokenBucket | None = getattr(self, attr)
            if bucket is None:
                if limit is None or limit <= 0:
                    continue
                bucket = self._bucket(limit, request_bucket=(kind == "requests"))
                assert bucket is not None
                if remaining is not None:
                    bucket.level = min(bucket.level, remaining)
                setattr(self, attr, bucket)
                continue
            tolerance = max(1.0, bucket.capacity * 0.02) + (0 if kind == "requests" else 1000)
            bucket.calibrate(limit, remaining, tolerance)


class CallSlot(Protocol):
    """The seam every limiter backend shares: admit a call, then reconcile it.

    `async with limiter.slot(request) as slot:` waits for admission (budget, concurrency,
    buckets); `slot.done(response)` reconciles with what the call really used and returns its
    cost; leaving the block without `done` (an error) refunds what was reserved and, for a
    429/529 `ProviderError`, slows the model down. The in-process `Slot` and the Redis-backed
    one (`dagagents.engine.shared_limits`) have the same semantics. `est_input` is the input
    tokens reserved for the call.
    """

    est_input: int

    @property
    def holding(self) -> bool:
        """Admitted while a bucket it took from holds its refill: `arrived` ends the hold."""
        ...

    async def __aenter__(self) -> CallSlot: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def done(self, response: Response) -> float: ...

    async def arrived(self) -> None:
        """The server has the call's request (the provider's `request_arrived`)."""
        ...


def counted_by_server(error: ProviderError) -> bool:
    """Whether a failed call may have spent a request from the server's rate limit.

    A connection that failed before any response never reached the model, so its request
    token goes back (its input/output reservations always do on failure). A 429 was not
    counted either, but it keeps its token: it shows this client's bucket is ahead of the
    server's, and the spent token moves it back (refunding it let one early drift repeat as
    a 429 every few hundred milliseconds).
    """
    return error.kind != "connection"


class Slot:
    """One admitted call. Use as `async with limiter.slot(req) as slot:` then `slot.done(resp)`."""

    __slots__ = (
        "limiter",
        "model",
        "node",
        "emit",
        "request",
        "est_input",
        "prefix",
        "cache_key",
        "out_reserved",
        "cost_reserved",
        "epoch",
        "settled",
        "acquired",
        "waited",
        "admitted",
        "cost_usd",
        "req_bucket",
        "in_bucket",
        "out_bucket",
        "holding",
    )

    def __init__(
        self,
        limiter: Limiter,
        request: Request,
        node: str | None,
        emit: Emit,
        input_tokens: int | None = None,
    ) -> None:
        self.limiter = limiter
        self.model = limiter.for_model(request.model)
        self.node = node
        self.emit = emit
        self.request = request
        self.est_input, self.prefix = estimate_input_tokens(request)
        if input_tokens is not None:  # counted by the API (count_tokens): exact
            self.est_input = input_tokens
        self.cache_key = _cache_key(request)
        if self.cache_key and self.model.cached.get(self.cache_key, 0.0) > time.monotonic():
            self.est_input -= self.prefix  # expected to be a cache read, which ITPM ignores
        self.out_reserved = request.max_tokens
        self.cost_reserved = 0.0
        self.epoch = 0
        self.settled = False
        self.acquired = False
        self.waited = 0.0
        self.admitted = 0.0
        self.cost_usd = 0.0
        self.req_bucket: TokenBucket | None = None
        self.in_bucket: TokenBucket | None = None
        self.out_bucket: TokenBucket | None = None
        self.holding = False

    async def __aenter__(self) -> Slot:
        lim, m = self.limiter, self.model
        self.cost_reserved = lim.budget.reserve(
            self.request.model, self.est_input, self.request.max_tokens, self.node, lim.batch
        )
        start = time.monotonic()
        reason = None
        try:
            pause = m.resume_at - start
            if pause > 0:
                reason = "retry-after"
                await asyncio.sleep(pause)
            self.epoch = await m.concurrency.acquire()
            self.acquired = True
            if lim.batch:
                pass  # Message Batches do not count against the Messages API's per-minute limits
            elif m.requests is not None:
                bucket, self.req_bucket = m.requests, None
                if await bucket.take(1) > 0.001:
                    reason = "rpm"
                self.req_bucket = bucket
            if m.input is not None and not lim.batch:
                bucket, self.in_bucket = m.input, None
                waited = await bucket.take(self.est_input)
                self.in_bucket = bucket  # reserved: reconciled or refunded later
                reason = "itpm" if waited > 0.001 else reason
            if m.output is not None and not lim.batch:
                bucket, self.out_bucket = m.output, None
                waited = await bucket.take(self.out_reserved)
                self.out_bucket = bucket
                reason = "otpm" if waited > 0.001 else reason
        except BaseException:
            if self.req_bucket is not None:  # admitted by rpm, but never sent
                self.req_bucket.give(1)
                self.req_bucket = None
            self._release(refund=True)
            raise
        self.admitted = time.monotonic()
        self.waited = self.admitted - start
        self.holding = any(
            b is not None and b.holding for b in (self.req_bucket, self.in_bucket, self.out_bucket)
        )
        if reason is not None and self.waited >= 0.01:
            self.emit(
                "rate_limited",
                node=self.node,
                model=self.request.model,
                wait=round(self.waited, 3),
                limit=reason,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.settled:
            if isinstance(exc, ProviderError):
                self.failed(exc)
            else:
                self._release(refund=True)

    def done(self, response: Response) -> float:
        """Reconcile buckets, budget and AIMD with what the call really used; returns its cost."""
        if self.settled:
            return self.cost_usd
        m, usage = self.model, response.usage
        self._arrived()
        # Reconcile only the buckets this call reserved from (headers may add buckets mid-call).
        if self.in_bucket is not None:
            used_in = usage.input_tokens + usage.cache_creation_input_tokens  # reads are free
            self.in_bucket.give(self.est_input - used_in)
            self.in_bucket = None
        if self.out_bucket is not None:
            self.out_bucket.give(self.out_reserved - usage.output_tokens)
            self.out_bucket = None
        if self.cache_key and (usage.cache_creation_input_tokens or usage.cache_read_input_tokens):
            m.cached[self.cache_key] = time.monotonic() + _CACHE_TTL
        if response.headers:
            m.calibrate(response.headers)
        m.concurrency.success()
        m.calls += 1
        # The call's cost, computed once, here where its usage is known; the invocation and
        # the node record carry this number on.
        self.cost_usd = self.limiter.record_usage(self.request.model, usage, response.batch)
        self.limiter.budget.settle(self.cost_reserved, self.cost_usd)
        self.cost_reserved = 0.0
        self._release(refund=False)
        return self.cost_usd

    async def arrived(self) -> None:
        """The server has the request (its response headers came): a bucket held since a
        burst began refills from now (`TokenBucket.hold`)."""
        self.holding = False
        self._arrived()

    def failed(self, error: ProviderError) -> None:
        """A failed attempt: on 429/529 slow this model down, honouring retry-after."""
        m = self.model
        if error.status is not None:  # an HTTP answer: the request reached the server
            self._arrived()
        if error.status in (429, 529) and error.kind != "spend_limit":
            m.overloads += 1
            if error.retry_after:
                m.resume_at = max(m.resume_at, time.monotonic() + error.retry_after)
            if m.concurrency.overload(self.epoch):
                self.emit(
                    "concurrency_reduced",
                    node=self.node,
                    model=self.request.model,
                    limit=m.concurrency.limit,
                    status=error.status,
                )
        if not counted_by_server(error) and self.req_bucket is not None:
            self.req_bucket.give(1)  # the server never saw (or never counted) this request
        self.req_bucket = None
        headers = getattr(error, "headers", None)
        if headers:
            m.calibrate(headers)  # after the refund: the server's `remaining` has the last word
        self._release(refund=True)

    def _arrived(self) -> None:
        for bucket in (self.req_bucket, self.in_bucket, self.out_bucket):
            if bucket is not None:
                bucket.arrived(self.admitted)

    def _release(self, refund: bool) -> None:
        if self.settled:
            return
        self.settled = True
        if refund:
            # The call produced nothing billable we know of: give back token reservations
            # (not the request token; the server may have counted the attempt).
            if self.in_bucket is not None:
                self.in_bucket.give(self.est_input)
            if self.out_bucket is not None:
                self.out_bucket.give(self.out_reserved)
            self.limiter.budget.settle(self.cost_reserved, 0.0)
            self.cost_reserved = 0.0
        if self.acquired:
            self.acquired = False
            self.model.concurrency.release()


class Limiter:
    """Run-wide limits, shared by every node of a run (and only one run).

    This is the in-process backend and the default. `RedisLimiter` (engine/shared_limits.py)
    subclasses it to share buckets, backoff, leases and the budget across processes; both
    hand out `CallSlot`s, and the run calls `start()` before the first node and `aclose()` after
    the last.

    `concurrency` caps API calls per model (the AIMD ceiling); the scheduler's own semaphore
    still bounds nodes. `rate_limits=None` starts unlimited and learns from response headers.
    """

    def __init__(
        self,
        rate_limits: RateLimits | None = None,
        *,
        concurrency: int | None = None,
        max_cost_usd: float | None = None,
        pricing: Pricing | None = None,
    ) -> None:
        self.rate_limits = rate_limits or RateLimits()
        self.concurrency = concurrency
        self.pricing = pricing or default_pricing()
        self.budget = Budget(max_cost_usd, self.pricing)
        self.models: dict[str, ModelLimits] = {}
        # Batch mode: the budget reserves each call's worst case at the batch price, and the
        # per-minute buckets (which the Message Batches API does not count against) are skipped.
        self.batch = False
        self.cost_by_model: dict[str, float] = {}

    def for_model(self, model: str) -> ModelLimits:
        m = self.models.get(model)
        if m is None:
            m = self.models[model] = ModelLimits(
                model, self.rate_limits.for_model(model), self.concurrency
            )
        return m

    def record_usage(self, model: str, usage: Usage, batch: bool = False) -> float:
        """The one place a call's cost is computed (from its reported usage)."""
        cost = self.pricing.cost_usd(model, usage, batch)
        self.cost_by_model[model] = self.cost_by_model.get(model, 0.0) + cost
        return cost

    def slot(
        self,
        request: Request,
        *,
        node: str | None = None,
        emit: Emit = no_emit,
        input_tokens: int | None = None,
    ) -> CallSlot:
        """Admission for one call; `input_tokens` replaces the estimate when known exactly."""
        return Slot(self, request, node, emit, input_tokens)

    async def start(self) -> None:
        """Connect to whatever backs the limits (nothing, in process); raise UserError if not."""

    async def aclose(self) -> None:
        """Release what `start` opened."""

    @property
    def spent_usd(self) -> float:
        return self.budget.spent_usd

    def snapshot(self) -> dict[str, Any]:
        """What the limits are doing right now, for live views: per model the calls in flight
        against the adaptive limit, each bucket's level and capacity, 429/529s seen and the
        seconds left of a server-requested backoff; the budget spent and reserved."""
        now = time.monotonic()

        def bucket(b: TokenBucket | None) -> list[float] | None:
            if b is None:
                return None
            b._refill(now)
            return [round(b.level, 1), round(b.capacity, 1)]

        return {
            "spent_usd": round(self.budget.spent_usd, 6),
            "reserved_usd": round(self.budget.reserved_usd, 6),
            "max_cost_usd": self.budget.max_cost_usd,
            "models": {
                name: {
                    "in_flight": m.concurrency.in_flight,
                    "limit": None if m.concurrency.limit == math.inf else m.concurrency.limit,
                    "ceiling": None if m.concurrency.ceiling == math.inf else m.concurrency.ceiling,
                    "rpm": bucket(m.requests),
                    "itpm": bucket(m.input),
                    "otpm": bucket(m.output),
                    "overloads": m.overloads,
                    "calls": m.calls,
                    "backoff": round(max(0.0, m.resume_at - now), 3),
                }
                for name, m in self.models.items()
            },
        }
