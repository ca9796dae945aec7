"""Limits shared by every process on one API key, through Redis.

Rate limits belong to the API key (per model family), not to a process: eight cron jobs each
under their own 60 rpm send 480 together. `RedisLimiter` keeps the in-process limiter's
semantics (engine/limits.py) but holds the state in Redis, changed only by server-side Lua
scripts (atomic, timed by the Redis server's clock, so processes on different machines agree):

- per model family, requests / input tokens / output tokens per minute as continuously refilled
  token buckets; output is reserved from `max_tokens`, input estimated, both reconciled with the
  reported usage; cache reads are free;
- the adaptive backoff: a 429/529 seen by one process sets a shared `retry-after` pause and
  halves the shared concurrency limit; successes anywhere grow it back (AIMD);
- concurrency as leases with an expiry that a heartbeat extends, so a SIGKILLed holder's leases
  free themselves within `lease_ttl`; when processes ask for different limits, the smallest
  any live process asked for applies to all;
- with `budget_key`, a budget ledger: each call reserves its worst case before it starts and
  settles to its real cost after, so every process naming the budget stays under it together.
  A reservation is a lease too: one whose holder died lapses and counts as spent at its worst
  case (the API may have answered before the process died).

Redis unreachable at start is a UserError naming the URL. Lost mid-run: admitted calls finish,
new calls retry the connection with backoff for up to `timeout` seconds, then raise
`LimitsUnavailable`, which stops the run (never a silent fall-back to unshared limits).
Nothing secret is stored: the default key is a hash of the API key, and URLs are shown with
their password masked.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from dagagents.engine.limits import (
    _CACHE_TTL,
    ARRIVAL_HOLD,
    Budget,
    CallSlot,
    Limiter,
    RateLimits,
    _cache_key,
    _header_float,
    counted_by_server,
    estimate_input_tokens,
)
from dagagents.errors import BudgetExceeded, LimitsUnavailable, ProviderError, UserError
from dagagents.observe.pricing import Pricing
from dagagents.observe.trace import Emit, no_emit
from dagagents.providers.base import Request, Response, key_digest, limits_key_of

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

ENV_URL = "DAGAGENTS_LIMITS_URL"
DEFAULT_TIMEOUT = 60.0
DEFAULT_LEASE_TTL = 30.0
_POLL = 0.02  # seconds between tries while every lease is taken
_KINDS = ("requests", "input-tokens", "output-tokens")


@dataclass(frozen=True)
class SharedLimits:
    """Where and under which names limits are shared: `limits=SharedLimits("redis://...")`.

    `key` names the API key's limits (default: a hash of the API key, never the key itself);
    `budget_key` makes `max_cost_usd` a ceiling shared by every process that names it;
    `timeout` is how long new calls wait for a lost Redis before the run stops; `lease_ttl`
    is how long a dead process's concurrency leases (and budget reservations) outlive it.
    """

    url: str
    key: str | None = None
    budget_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    lease_ttl: float = DEFAULT_LEASE_TTL

    def __post_init__(self) -> None:
        scheme = urlsplit(self.url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise UserError(
                f"limits URL '{redact_url(self.url)}' is not a Redis URL "
                "(expected redis://host:port/db, rediss://... or unix://...)."
            )
        if self.timeout <= 0:
            raise UserError(f"limits timeout must be positive, got {self.timeout}.")
        if self.lease_ttl <= 0:
            raise UserError(f"lease_ttl must be positive, got {self.lease_ttl}.")
        for field_name in ("key", "budget_key"):
            value = getattr(self, field_name)
            if value is not None and not re.fullmatch(r"[A-Za-z0-9_.\-]{1,100}", value):
                raise UserError(
                    f"limits {field_name.replace('_', ' ')} '{value}' must be 1-100 letters, "
                    "digits, '.', '_' or '-'."
                )


def resolve_limits(
    limits: str | SharedLimits | None, env: Mapping[str, str] | None = None
) -> SharedLimits | None:
    """`limits=` as given, else `DAGAGENTS_LIMITS_URL`, else None (in-process limits)."""
    if isinstance(limits, SharedLimits):
        return limits
    if limits is None:
        limits = (os.environ if env is None else env).get(ENV_URL) or None
    if limits is None:
        return None
    if not isinstance(limits, str):
        raise UserError(f"limits must be a redis:// URL or SharedLimits, not {type(limits)}.")
    return SharedLimits(limits)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))


def default_key(provider: Any) -> str:
    """A stable name for the API key's limits that never reveals the key: the provider's
    declared `limits_key` (a hash of its key), else a hash of the environment's key, else the
    provider's name."""
    declared = limits_key_of(provider)
    if declared:
        return declared
    env_key = os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")
    return key_digest(env_key) or str(getattr(provider, "name", "default"))


def model_family(model: str) -> str:
    """Limits are per model family: a dated snapshot shares its alias's buckets."""
    return re.sub(r"-\d{8}$", "", model)


def _prefix(key: str) -> str:
    # The {hash tag} keeps one key's entries on one slot of a Redis Cluster.
    return f"dagagents:{{{key}}}"


def _budget_prefix(name: str) -> str:
    return f"dagagents:budget:{{{name}}}"


# --------------------------------------------------------------------------- Lua scripts
# All times are the Redis server's (TIME), in milliseconds. Headroom ("slack") below the server's
# capacity: one request, or 1% of a token limit (0.6 s of refill). As in the in-process
# TokenBucket, a take from a full bucket holds its refill (<k>.hold: until when, <k>.hfrom:
# since when) until the server has a call admitted since (its headers: _ARRIVED) or answered
# it (_SETTLE), at most ARRIVAL_HOLD: the server's bucket refills from the first request's
# arrival, not from our admission, and with several processes (and their first SDK connections)
# that gap is where a burst's 429s came from. Bucket state per model family lives in one hash:
# <k>.level, <k>.stamp, <k>.limit (learned from headers), <k>.hold, <k>.hfrom for k in r, i, o;
# plus resume_at, climit (AIMD concurrency limit), epoch, calls, overloads.
_LUA_PRELUDE = (
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local HOLD_MS = """
    + repr(int(ARRIVAL_HOLD * 1000))
    + """
local function num(v, d) if v then return tonumber(v) end return d end
local function per_minute(h, k, configured)
  local pm = tonumber(configured)
  local cal = num(redis.call('HGET', h, k .. '.limit'), nil)
  if cal and (pm <= 0 or cal < pm) then pm = cal end
  if pm <= 0 then return nil end
  return pm
end
local function top_of(k, pm)
  local slack
  if k == 'r' then slack = 1 else slack = math.ceil(pm * 0.01) end
  if slack > pm / 2 then slack = pm / 2 end
  return pm - slack
end
local function held(h, k)
  return num(redis.call('HGET', h, k .. '.hold'), 0)
end
local function level_of(h, k, pm)
  local top = top_of(k, pm)
  local level = num(redis.call('HGET', h, k .. '.level'), top)
  local stamp = num(redis.call('HGET', h, k .. '.stamp'), now)
  local hold = held(h, k)
  if hold > 0 then stamp = math.max(stamp, math.min(now, hold)) end
  if level < top then level = math.min(top, level + (now - stamp) * pm / 60000.0) end
  return level, top
end
-- a call admitted at `admitted` was sent or answered: the server has a request since the hold
-- began, so its refill has started; ours starts now
local function arrived(h, k, pm, admitted)
  local hold = held(h, k)
  if hold > now and admitted >= num(redis.call('HGET', h, k .. '.hfrom'), 0) then
    local level = level_of(h, k, pm)
    redis.call('HSET', h, k .. '.level', tostring(level), k .. '.stamp', tostring(now))
    redis.call('HDEL', h, k .. '.hold')
  end
end
-- --concurrency when processes disagree: the smallest any live process asked for applies to all.
-- Each process registers "<its id>|<n>" in the key's ceilings zset, expiring like a lease.
local function shared_ceiling(z)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  local lim = nil
  for _, m in ipairs(redis.call('ZRANGE', z, 0, -1)) do
    local v = tonumber(string.match(m, '|(%d+)$'))
    if v and (lim == nil or v < lim) then lim = v end
  end
  return lim
end
local function give(h, k, pm, n)
  local level, top = level_of(h, k, pm)
  redis.call('HSET', h, k .. '.level', tostring(math.min(top, level + n)), k .. '.stamp', tostring(now))
end
"""
)

# KEYS: model hash, leases zset, models set, ceilings zset. ARGV: lease id, ttl ms, this
# process's ceiling registration ('' if it set none), need r/i/o, configured rpm/itpm/otpm (0:
# none), family. Returns {1, epoch, charged kinds, shared ceiling (-1: none), admitted at (ms),
# whether a charged bucket's refill is held (1/0)} or {0, wait ms (-1: poll), reason, shared
# ceiling}. All or nothing: a call
# never holds a lease while it waits for tokens, nor tokens while it waits for a lease.
_ACQUIRE = (
    _LUA_PRELUDE
    + """
local h = KEYS[1]
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[4], now + tonumber(ARGV[2]), ARGV[3]) end
local ceiling = shared_ceiling(KEYS[4]) or 0
local resume = num(redis.call('HGET', h, 'resume_at'), 0)
if now < resume then return {0, tostring(resume - now), 'retry-after', ceiling} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local climit = num(redis.call('HGET', h, 'climit'), nil)
local lim = nil
if ceiling > 0 then lim = ceiling end
if climit and (lim == nil or climit < lim) then lim = climit end
if lim and redis.call('ZCARD', KEYS[2]) >= lim then return {0, '-1', 'concurrency', ceiling} end
local kinds = {'r', 'i', 'o'}
local take = {}
local charged = ''
for idx, k in ipairs(kinds) do
  local pm = per_minute(h, k, ARGV[6 + idx])
  if pm then
    local level, top = level_of(h, k, pm)
    local n = tonumber(ARGV[3 + idx])
    local need = math.min(n, math.max(1, top))
    if level < need then return {0, tostring((need - level) * 60000.0 / pm), k, ceiling} end
    take[k] = {level - n, pm, level >= top and held(h, k) <= now}
    charged = charged .. k
  end
end
local holding = 0
for k, v in pairs(take) do
  redis.call('HSET', h, k .. '.level', tostring(v[1]), k .. '.stamp', tostring(now), k .. '.pm', tostring(v[2]))
  if v[3] then  -- taken from a full bucket: hold the refill until the server has seen a call
    redis.call('HSET', h, k .. '.hold', tostring(now + HOLD_MS), k .. '.hfrom', tostring(now))
  end
  if held(h, k) > now then holding = 1 end
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('SADD', KEYS[3], ARGV[10])
return {1, num(redis.call('HGET', h, 'epoch'), 0), charged, ceiling, tostring(now), holding}
"""
)

# KEYS: model hash, leases zset, models set, ceilings zset. ARGV: lease id, configured rpm/itpm/otpm, give r, give i,
# give o, (unused), outcome (ok | overload | error), retry-after ms, epoch, then limit/remaining
# for r, i, o from the response headers (-1: absent), when the call was admitted (ms, the
# acquire's clock), whether the server answered it (1/0). Returns {changed, climit}.
_SETTLE = (
    _LUA_PRELUDE
    + """
local h = KEYS[1]
local kinds = {'r', 'i', 'o'}
local gives = {tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])}
for idx, k in ipairs(kinds) do
  local pm = per_minute(h, k, ARGV[1 + idx])
  if pm and gives[idx] ~= 0 then give(h, k, pm, gives[idx]) end
  if pm and ARGV[19] == '1' then arrived(h, k, pm, tonumber(ARGV[18])) end
end
-- calibration from anthropic-ratelimit-* headers: adopt a lower limit, follow `remaining`
for idx, k in ipairs(kinds) do
  local limit = tonumber(ARGV[10 + 2 * idx])
  local remaining = tonumber(ARGV[11 + 2 * idx])
  local pm = per_minute(h, k, ARGV[1 + idx])
  if limit > 0 and (pm == nil or limit < pm) then
    redis.call('HSET', h, k .. '.limit', tostring(limit))
    if pm == nil and remaining >= 0 then
      local top = top_of(k, limit)
      redis.call('HSET', h, k .. '.level', tostring(math.min(top, remaining)), k .. '.stamp', tostring(now))
    end
    pm = limit
  end
  if pm and remaining >= 0 then
    local level, top = level_of(h, k, pm)
    local tolerance = math.max(1, pm * 0.02)
    if k ~= 'r' then tolerance = tolerance + 1000 end
    if remaining + tolerance < level then level = remaining end
    redis.call('HSET', h, k .. '.level', tostring(math.min(level, top)), k .. '.stamp', tostring(now))
  end
end
local ceiling = shared_ceiling(KEYS[4]) or 0
local outcome = ARGV[9]
local changed = 0
local climit = num(redis.call('HGET', h, 'climit'), nil)
if outcome == 'ok' then
  redis.call('HINCRBY', h, 'calls', 1)
  if climit and (ceiling <= 0 or climit < ceiling) then
    climit = climit + 1.0 / math.max(climit, 1)
    if ceiling > 0 and climit >= ceiling then
      redis.call('HDEL', h, 'climit')
      climit = nil
    else
      redis.call('HSET', h, 'climit', tostring(climit))
    end
  end
elseif outcome == 'overload' then
  redis.call('HINCRBY', h, 'overloads', 1)
  local until_ms = now + tonumber(ARGV[10])
  if until_ms > num(redis.call('HGET', h, 'resume_at'), 0) then
    redis.call('HSET', h, 'resume_at', tostring(until_ms))
  end
  if tonumber(ARGV[11]) == num(redis.call('HGET', h, 'epoch'), 0) then
    local base = climit
    if base == nil and ceiling > 0 then base = ceiling end
    if base == nil then base = math.max(redis.call('ZCARD', KEYS[2]), 1) end
    climit = math.max(1, math.floor(base / 2))
    redis.call('HSET', h, 'climit', tostring(climit))
    redis.call('HINCRBY', h, 'epoch', 1)
    changed = 1
  end
end
redis.call('ZREM', KEYS[2], ARGV[1])
return {changed, tostring(climit or -1)}
"""
)

# KEYS: model hash. ARGV: configured rpm/itpm/otpm, when the call was admitted (ms, the
# acquire's clock). The server has a call admitted then: held buckets refill from now.
_ARRIVED = (
    _LUA_PRELUDE
    + """
local h = KEYS[1]
local kinds = {'r', 'i', 'o'}
for idx, k in ipairs(kinds) do
  local pm = per_minute(h, k, ARGV[idx])
  if pm then arrived(h, k, pm, tonumber(ARGV[4])) end
end
return 1
"""
)

# KEYS: a ceilings zset. ARGV: ttl ms, this process's registration. (Re-)registers it, returns
# the shared ceiling (-1: none).
_REGISTER = (
    _LUA_PRELUDE
    + """
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2]) end
return shared_ceiling(KEYS[1]) or -1
"""
)

# KEYS: a zset of leases or reservations. ARGV: ttl ms, ids. Extends only what still exists.
_HEARTBEAT = (
    _LUA_PRELUDE
    + """
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[i])
end
return n
"""
)

# The budget ledger. KEYS: budget hash (spent, max, refused, lapsed, lapsed_usd), live
# reservations zset (id -> expiry, extended by the holder's heartbeat), amounts hash (id ->
# worst case), lapsed zset (id -> when to forget it). A reservation whose holder stopped renewing
# it (SIGKILLed, perhaps after the API answered) is settled conservatively: its worst case counts
# as spent, since the call may have been paid for. It is remembered for a day, so a holder that
# was only slow and settles late corrects the ledger to its real cost instead of counting twice.
_BUDGET_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local function sweep()
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  local lapsed = 0
  for _, id in ipairs(expired) do
    lapsed = lapsed + tonumber(redis.call('HGET', KEYS[3], id) or '0')
    redis.call('ZADD', KEYS[4], now + 86400000, id)
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
    redis.call('HINCRBYFLOAT', KEYS[1], 'spent', tostring(lapsed))
    redis.call('HINCRBYFLOAT', KEYS[1], 'lapsed_usd', tostring(lapsed))
    redis.call('HINCRBY', KEYS[1], 'lapsed', #expired)
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
end
"""

# ARGV: id, worst case, max, ttl ms. Returns {granted, spent, reserved} (amounts as strings: Lua
# numbers would be truncated).
_RESERVE = (
    _BUDGET_PRELUDE
    + """
sweep()
local reserved = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  reserved = reserved + tonumber(redis.call('HGET', KEYS[3], id) or '0')
end
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local worst = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'max', ARGV[3])
if spent + reserved + worst > tonumber(ARGV[3]) + 1e-12 then
  redis.call('HINCRBY', KEYS[1], 'refused', 1)
  return {0, tostring(spent), tostring(reserved)}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return {1, tostring(spent), tostring(reserved + worst)}
"""
)

# ARGV: id, actual cost. A live reservation becomes its actual cost; one that lapsed (already
# counted at its worst case) is corrected to its actual cost; an unknown one (the budget was
# reset, or Redis lost its data) counts its actual cost.
_SETTLE_BUDGET = (
    _BUDGET_PRELUDE
    + """
local actual = tonumber(ARGV[2])
local charge = actual
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 and redis.call('ZREM', KEYS[4], ARGV[1]) == 1 then
  local counted = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
  charge = actual - counted
  redis.call('HINCRBYFLOAT', KEYS[1], 'lapsed_usd', tostring(-counted))
  redis.call('HINCRBY', KEYS[1], 'lapsed', -1)
end
redis.call('HDEL', KEYS[3], ARGV[1])
if charge ~= 0 then redis.call('HINCRBYFLOAT', KEYS[1], 'spent', tostring(charge)) end
sweep()
return 1
"""
)


def _redis_module() -> Any:
    try:
        import redis.asyncio as redis_asyncio
    except ImportError:
        raise UserError(
            "shared limits need the redis client: pip install 'dagagents[redis]'."
        ) from None
    return redis_asyncio


def connect(url: str) -> Redis:
    """A redis-py asyncio client whose failures reach us at once (we pace reconnects)."""
    redis_asyncio = _redis_module()
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis_asyncio.Redis.from_url(  # type: ignore[no-any-return]
        url,
        socket_connect_timeout=2.0,
        socket_timeout=10.0,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _connection_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class SharedBudget:
    """The budget ledger in Redis: reserve a call's worst case, settle to its real cost."""

    def __init__(
        self, limiter: RedisLimiter, name: str, max_cost_usd: float, pricing: Pricing
    ) -> None:
        if max_cost_usd < 0:
            raise UserError(f"max_cost_usd must be >= 0, got {max_cost_usd}.")
        self.limiter = limiter
        self.name = name
        self.max_cost_usd = max_cost_usd
        self.pricing = pricing
        p = _budget_prefix(name)
        self.keys = [p, f"{p}:res", f"{p}:amt", f"{p}:lapsed"]
        self.refused = 0
        self.spent_usd = 0.0  # by this process
        self.held: set[str] = set()  # reservation ids to keep alive

    async def reserve(
        self,
        rid: str,
        model: str,
        input_tokens: int,
        max_tokens: int,
        node: str | None,
        batch: bool = False,
    ) -> float:
        worst = self.pricing.worst_case_usd(model, input_tokens, max_tokens, batch)
        if worst is None:
            raise UserError(
                f"max_cost_usd is set but no price is known for model '{model}'; add it to a "
                "pricing file named by DAGAGENTS_PRICING."
            )
        ttl = int(self.limiter.config.lease_ttl * 1000)
        granted, spent, reserved = await self.limiter.call(
            "reserve", self.keys, [rid, repr(worst), repr(self.max_cost_usd), ttl]
        )
        if not int(granted):
            self.refused += 1
            who = f"node '{node}'" if node else "the next call"
            raise BudgetExceeded(
                f"shared cost budget '{self.name}' of ${self.max_cost_usd:.4f} reached: "
                f"${float(spent):.4f} spent and ${float(reserved):.4f} in flight across "
                f"processes, and {who} ({model}) could cost up to ${worst:.4f}, so it was "
                "not started."
            )
        self.held.add(rid)
        return worst

    async def settle(self, rid: str, actual: float) -> None:
        self.held.discard(rid)
        self.spent_usd += actual
        await self.limiter.call_or_defer("settle_budget", self.keys, [rid, repr(actual)])


class RedisSlot:
    """One call admitted by the shared limits; same contract as `limits.Slot`."""

    def __init__(
        self,
        limiter: RedisLimiter,
        request: Request,
        node: str | None,
        emit: Emit,
        input_tokens: int | None = None,
    ) -> None:
        self.limiter = limiter
        self.request = request
        self.node = node
        self.emit = emit
        self.family = model_family(request.model)
        self.limits = limiter.rate_limits.for_model(request.model)
        self.est_input, self.prefix = estimate_input_tokens(request)
        if input_tokens is not None:  # counted by the API (count_tokens): exact
            self.est_input = input_tokens
        self.cache_key = _cache_key(request)
        cached = limiter.cached.get(self.cache_key or "", 0.0)
        if self.cache_key and cached > time.monotonic():
            self.est_input -= self.prefix  # expected to be a cache read, which ITPM ignores
        self.out_reserved = request.max_tokens
        self.id = limiter.new_id()
        self.epoch = 0
        self.charged = ""
        self.admitted_ms = "0"  # the Redis server's clock at admission
        self.holding = False  # a bucket it took from was holding its refill at admission
        self.granted = False
        self.reserved_usd = 0.0
        self.response: Response | None = None
        self.cost_usd = 0.0

    def _configured(self) -> list[float]:
        return [self.limits.rpm or 0, self.limits.itpm or 0, self.limits.otpm or 0]

    async def __aenter__(self) -> RedisSlot:
        lim = self.limiter
        await lim.check_alive()
        if lim.budget_shared is not None:
            self.reserved_usd = await lim.budget_shared.reserve(
                self.id,
                self.request.model,
                self.est_input,
                self.request.max_tokens,
                self.node,
                lim.batch,
            )
        try:
            await self._acquire()
        except BaseException:
            if lim.budget_shared is not None and self.reserved_usd:
                await lim.budget_shared.settle(self.id, 0.0)
            raise
        return self

    async def _acquire(self) -> None:
        lim = self.limiter
        keys = lim.model_keys(self.family)
        args = [
            self.id,
            int(lim.config.lease_ttl * 1000),
            lim.ceiling_member,
            1,
            max(self.est_input, 0),
            self.out_reserved,
            *self._configured(),
            self.family,
        ]
        start = time.monotonic()
        reason: str | None = None
        # One waiter per family per process polls Redis (FIFO here, like the local buckets);
        # the rest queue behind it instead of hammering the server.
        async with lim.queue(self.family):
            while True:
                result = await lim.call("acquire", keys, args)
                lim.saw_ceiling(float(result[3]), self.emit)
                if int(result[0]):
                    self.epoch, self.charged = int(result[1]), str(result[2] or "")
                    self.admitted_ms = str(result[4])
                    self.holding = len(result) > 5 and int(result[5]) == 1
                    break
                wait_ms, why = float(result[1]), str(result[2])
                reason = {"r": "rpm", "i": "itpm", "o": "otpm"}.get(why, why)
                wait = _POLL if wait_ms < 0 else min(wait_ms / 1000.0, 5.0)
                await asyncio.sleep(wait + random.uniform(0.0, 0.002))
        self.granted = True
        lim.hold(self.family, self.id)
        waited = time.monotonic() - start
        if reason is not None and waited >= 0.01:
            self.emit(
                "rate_limited",
                node=self.node,
                model=self.request.model,
                wait=round(waited, 3),
                limit=reason,
            )

    def done(self, response: Response) -> float:
        """Record the response; the reconciliation itself runs on leaving the block."""
        if self.response is None:
            self.response = response
            self.cost_usd = self.limiter.record_usage(
                self.request.model, response.usage, response.batch
            )
            usage = response.usage
            if self.cache_key and (
                usage.cache_creation_input_tokens or usage.cache_read_input_tokens
            ):
                self.limiter.cached[self.cache_key] = time.monotonic() + _CACHE_TTL
        return self.cost_usd

    async def arrived(self) -> None:
        """The server has the request (its response headers came): if a bucket it took from
        holds its refill (a burst began), the shared bucket refills from now. One round trip,
        only then; if Redis is away, the settle after the answer does it."""
        if not self.holding or not self.granted:
            return
        self.holding = False
        lim = self.limiter
        await lim.hint(
            "arrived", lim.model_keys(self.family)[:1], [*self._configured(), self.admitted_ms]
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.granted:
            return
        self.granted = False
        lim = self.limiter
        lim.unhold(self.family, self.id)
        give_r = give_i = give_o = 0.0
        headers: Mapping[str, str] = {}
        outcome, retry_ms = "error", 0
        if self.response is not None:
            usage = self.response.usage
            used_in = usage.input_tokens + usage.cache_creation_input_tokens  # reads are free
            give_i, give_o = self.est_input - used_in, self.out_reserved - usage.output_tokens
            headers = self.response.headers or {}
            outcome = "ok"
        else:
            # Nothing billable we know of: refund the tokens (not the request; the server may
            # have counted the attempt).
            give_i, give_o = self.est_input, self.out_reserved
            if isinstance(exc, ProviderError) and not counted_by_server(exc):
                give_r = 1.0  # the server never saw (or never counted) this request
            if isinstance(exc, ProviderError):
                headers = getattr(exc, "headers", None) or {}
                if exc.status in (429, 529) and exc.kind != "spend_limit":
                    outcome = "overload"
                    retry_ms = int((exc.retry_after or 0) * 1000)
                    lim.overloads += 1
        args: list[Any] = [
            self.id,
            *self._configured(),
            give_r if "r" in self.charged else 0,
            give_i if "i" in self.charged else 0,
            give_o if "o" in self.charged else 0,
            0,  # (was this process's ceiling; the script reads the shared one)
            outcome,
            retry_ms,
            self.epoch,
        ]
        for kind in _KINDS:
            limit = _header_float(headers, f"anthropic-ratelimit-{kind}-limit")
            remaining = _header_float(headers, f"anthropic-ratelimit-{kind}-remaining")
            args += [-1 if limit is None else limit, -1 if remaining is None else remaining]
        # An answer (a response, or an HTTP error status) proves the request reached the server.
        answered = self.response is not None or getattr(exc, "status", None) is not None
        args += [self.admitted_ms, 1 if answered else 0]
        result = await lim.call_or_defer("settle", lim.model_keys(self.family), args)
        if result is not None and int(result[0]):
            self.emit(
                "concurrency_reduced",
                node=self.node,
                model=self.request.model,
                limit=float(result[1]),
                status=getattr(exc, "status", None),
            )
        if outcome == "ok":
            lim.calls += 1
        if lim.budget_shared is not None and self.reserved_usd:
            await lim.budget_shared.settle(self.id, self.cost_usd if outcome == "ok" else 0.0)


class RedisLimiter(Limiter):
    """`Limiter` whose state lives in Redis, shared by every process on `config.key`."""

    def __init__(
        self,
        config: SharedLimits,
        rate_limits: RateLimits | None = None,
        *,
        key: str,
        concurrency: int | None = None,
        max_cost_usd: float | None = None,
        pricing: Pricing | None = None,
    ) -> None:
        if config.budget_key is not None and max_cost_usd is None:
            raise UserError("a budget key was given without max_cost_usd (--max-cost).")
        shared_budget = config.budget_key is not None
        super().__init__(
            rate_limits,
            concurrency=concurrency,
            max_cost_usd=None if shared_budget else max_cost_usd,
            pricing=pricing,
        )
        self.config = config
        self.key = key
        self.url = redact_url(config.url)
        self.budget_shared: SharedBudget | None = None
        if config.budget_key is not None and max_cost_usd is not None:
            self.budget_shared = SharedBudget(self, config.budget_key, max_cost_usd, self.pricing)
        self.cached: dict[str, float] = {}
        self.calls = 0
        self.overloads = 0
        self._id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._seq = 0
        self._held: dict[str, set[str]] = {}
        self._queues: dict[str, asyncio.Lock] = {}
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._deferred: list[tuple[str, list[str], list[Any]]] = []
        self._down_since: float | None = None
        self._dead: LimitsUnavailable | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        # --concurrency across processes: the smallest any live process on the key asked for
        # applies to all (each registers its own, kept alive by the heartbeat).
        self.ceiling_member = f"{self._id}|{int(concurrency)}" if concurrency else ""
        self.shared_ceiling: float | None = None
        self._ceiling_warned = False

    def saw_ceiling(self, ceiling: float, emit: Emit) -> None:
        """Note the key's shared concurrency limit; say once if it is below this run's own."""
        self.shared_ceiling = ceiling if ceiling > 0 else None
        own = self.concurrency
        if self.shared_ceiling is None or self._ceiling_warned:
            return
        if own is not None and self.shared_ceiling >= own:
            return
        self._ceiling_warned = True
        asked = f"--concurrency {own}" if own else "no --concurrency"
        emit(
            "warning",
            node=None,
            message=(
                f"this run asked for {asked} but another process sharing limits key "
                f"'{self.key}' asked for {self.shared_ceiling:g}: the smallest applies to "
                f"every process on the key, so at most {self.shared_ceiling:g} calls run at "
                "once across them"
            ),
        )

    @property
    def spent_usd(self) -> float:
        return sum(self.cost_by_model.values())

    def slot(
        self,
        request: Request,
        *,
        node: str | None = None,
        emit: Emit = no_emit,
        input_tokens: int | None = None,
    ) -> CallSlot:
        inner = RedisSlot(self, request, node, emit, input_tokens)
        if self.budget_shared is None and self.budget.max_cost_usd is not None:
            # Shared rate limits, per-run budget: the in-process ledger wraps the slot.
            return _LocalBudgetSlot(inner, self.budget)
        return inner

    def snapshot(self) -> dict[str, Any]:
        """This process's side of the shared limits, for live views (`dagagents limits` shows
        the shared state): calls in flight here, calls made, 429/529s seen, the budget."""
        budget = self.budget_shared
        return {
            "spent_usd": round(self.spent_usd, 6),
            "reserved_usd": 0.0,
            "max_cost_usd": budget.max_cost_usd if budget else self.budget.max_cost_usd,
            "shared": {"url": self.url, "key": self.key},
            "models": {
                family: {
                    "in_flight": len(leases),
                    "limit": None,
                    "ceiling": self.concurrency
                    if self.shared_ceiling is None
                    else self.shared_ceiling,
                    "rpm": None,
                    "itpm": None,
                    "otpm": None,
                    "overloads": self.overloads,
                    "calls": self.calls,
                    "backoff": 0.0,
                }
                for family, leases in self._held.items()
            },
        }

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Connect and load the scripts; an unreachable Redis is a UserError naming the URL."""
        client = connect(self.config.url)
        try:
            await client.ping()
        except _connection_errors() as exc:
            await client.aclose()
            raise UserError(
                f"cannot reach the shared limits store at {self.url}: {_one_line(exc)}."
            ) from None
        except Exception as exc:  # e.g. authentication: a user error too
            await client.aclose()
            raise UserError(
                f"the shared limits store at {self.url} refused us: {_one_line(exc)}."
            ) from None
        self._client = client
        self._scripts = {
            "acquire": client.register_script(_ACQUIRE),
            "settle": client.register_script(_SETTLE),
            "arrived": client.register_script(_ARRIVED),
            "heartbeat": client.register_script(_HEARTBEAT),
            "register": client.register_script(_REGISTER),
            "reserve": client.register_script(_RESERVE),
            "settle_budget": client.register_script(_SETTLE_BUDGET),
        }
        await self._register()
        self._heartbeat = asyncio.create_task(self._beat())

    async def _register(self) -> None:
        """(Re-)register this process's --concurrency for the key; learn the shared one."""
        ceilings = f"{_prefix(self.key)}:ceilings"
        ttl = int(self.config.lease_ttl * 1000)
        ceiling = float(await self._run("register", [ceilings], [ttl, self.ceiling_member]))
        self.shared_ceiling = ceiling if ceiling > 0 else None

    async def aclose(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        if self._client is not None and self.ceiling_member and self._dead is None:
            try:  # the next process need not wait for this one's registration to expire
                await self._client.zrem(f"{_prefix(self.key)}:ceilings", self.ceiling_member)
            except _connection_errors():
                pass
        if self._client is not None:
            if self._deferred:
                await self._flush(quiet=True)
            await self._client.aclose()
            self._client = None

    # ------------------------------------------------------------ bookkeeping
    def new_id(self) -> str:
        self._seq += 1
        return f"{self._id}:{self._seq}"

    def model_keys(self, family: str) -> list[str]:
        p = _prefix(self.key)
        return [f"{p}:m:{family}", f"{p}:m:{family}:leases", f"{p}:models", f"{p}:ceilings"]

    def queue(self, family: str) -> asyncio.Lock:
        lock = self._queues.get(family)
        if lock is None:
            lock = self._queues[family] = asyncio.Lock()
        return lock

    def hold(self, family: str, lease: str) -> None:
        self._held.setdefault(family, set()).add(lease)

    def unhold(self, family: str, lease: str) -> None:
        self._held.get(family, set()).discard(lease)

    async def _beat(self) -> None:
        """Extend this process's leases and reservations; a dead process's simply expire."""
        every = self.config.lease_ttl / 3
        ttl = int(self.config.lease_ttl * 1000)
        while True:
            await asyncio.sleep(every)
            try:
                await self._register()
                for family, leases in list(self._held.items()):
                    if leases:
                        await self._run("heartbeat", self.model_keys(family)[1:2], [ttl, *leases])
                budget = self.budget_shared
                if budget is not None and budget.held:
                    await self._run("heartbeat", budget.keys[1:2], [ttl, *budget.held])
            except _connection_errors():
                continue  # the callers notice and decide; the leases will expire if it lasts

    # ------------------------------------------------------------ talking to Redis
    async def check_alive(self) -> None:
        if self._dead is not None:
            raise self._dead

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if self._client is None:
            raise RuntimeError("RedisLimiter used before start()")
        return await self._scripts[name](keys=keys, args=args)

    async def _flush(self, quiet: bool = False) -> None:
        """Replay reconciliations that could not reach Redis while it was away."""
        while self._deferred:
            name, keys, args = self._deferred[0]
            try:
                await self._run(name, keys, args)
            except _connection_errors():
                if quiet:
                    return
                raise
            self._deferred.pop(0)

    async def call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script, retrying a lost connection with backoff for up to `config.timeout`
        seconds (counted from when this process first saw the outage); then the run stops."""
        await self.check_alive()
        delay = 0.05
        while True:
            try:
                if self._deferred:
                    await self._flush()
                result = await self._run(name, keys, args)
            except _connection_errors() as exc:
                now = time.monotonic()
                if self._down_since is None:
                    self._down_since = now
                if now - self._down_since >= self.config.timeout:
                    self._dead = LimitsUnavailable(
                        f"the shared limits store at {self.url} was unreachable for "
                        f"{self.config.timeout:g} s ({_one_line(exc)}); no new call was "
                        "started, finished nodes are checkpointed: rerun to resume."
                    )
                    raise self._dead from None
                await self.check_alive()
                await asyncio.sleep(min(delay, self.config.timeout))
                delay = min(delay * 2, 2.0)
                continue
            self._down_since = None
            return result

    async def hint(self, name: str, keys: list[str], args: list[Any]) -> None:
        """Run a script once, for a hint a later script repeats anyway: lost if Redis is away."""
        if self._dead is None and not self._deferred:
            try:
                await self._run(name, keys, args)
            except _connection_errors():
                pass

    async def call_or_defer(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Reconcile after a call: never fails the finished call; replayed later if Redis is
        away (a lease not released in time simply expires)."""
        if self._dead is None:
            try:
                if self._deferred:
                    await self._flush()
                return await self._run(name, keys, args)
            except _connection_errors():
                pass
        self._deferred.append((name, keys, args))
        return None


class _LocalBudgetSlot:
    """Shared rate limits with a per-run (unshared) budget: reserve locally around the slot."""

    def __init__(self, inner: RedisSlot, budget: Budget) -> None:
        self.inner = inner
        self.budget = budget
        self.reserved = 0.0
        self.est_input = inner.est_input

    async def __aenter__(self) -> _LocalBudgetSlot:
        inner = self.inner
        self.reserved = self.budget.reserve(
            inner.request.model,
            inner.est_input,
            inner.request.max_tokens,
            inner.node,
            inner.limiter.batch,
        )
        try:
            await inner.__aenter__()
        except BaseException:
            self.budget.settle(self.reserved, 0.0)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.inner.__aexit__(exc_type, exc, tb)
        finally:
            actual = self.inner.cost_usd if self.inner.response is not None else 0.0
            self.budget.settle(self.reserved, actual)

    def done(self, response: Response) -> float:
        return self.inner.done(response)

    @property
    def holding(self) -> bool:
        return self.inner.holding

    async def arrived(self) -> None:
        await self.inner.arrived()


def make_limiter(
    limits: str | SharedLimits | None,
    rate_limits: RateLimits | None,
    *,
    provider: Any,
    concurrency: int | None,
    max_cost_usd: float | None,
    pricing: Pricing | None,
) -> Limiter:
    """The run's limiter: in-process unless `limits` (or DAGAGENTS_LIMITS_URL) names Redis."""
    config = resolve_limits(limits)
    if config is None:
        return Limiter(
            rate_limits, concurrency=concurrency, max_cost_usd=max_cost_usd, pricing=pricing
        )
    _redis_module()  # a missing extra is a UserError before anything starts
    return RedisLimiter(
        config,
        rate_limits,
        key=config.key or default_key(provider),
        concurrency=concurrency,
        max_cost_usd=max_cost_usd,
        pricing=pricing,
    )


async def reset_budget(config: SharedLimits, name: str) -> bool:
    """Forget a shared budget's spend and reservations (a new month, a new ceiling); returns
    whether there was anything to forget. Processes running on it see the reset at once."""
    SharedLimits(config.url, budget_key=name)  # validates the name
    client = connect(config.url)
    try:
        try:
            p = _budget_prefix(name)
            return bool(await client.delete(p, f"{p}:res", f"{p}:amt", f"{p}:lapsed"))
        except _connection_errors() as exc:
            raise UserError(
                f"cannot reach the shared limits store at {redact_url(config.url)}: "
                f"{_one_line(exc)}."
            ) from None
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- inspection
async def snapshot(
    config: SharedLimits, key: str | None = None, budget: str | None = None
) -> dict[str, Any]:
    """The shared state as plain data, for `dagagents limits`: buckets per key and model
    family (levels refilled to now), leases by host/pid, budgets spent and reserved."""
    client = connect(config.url)
    try:
        try:
            await client.ping()
        except _connection_errors() as exc:
            raise UserError(
                f"cannot reach the shared limits store at {redact_url(config.url)}: "
                f"{_one_line(exc)}."
            ) from None
        return await _snapshot(client, key, budget)
    finally:
        await client.aclose()


async def _snapshot(client: Redis, key: str | None, budget: str | None) -> dict[str, Any]:
    secs, micros = await client.time()
    now = secs * 1000 + micros / 1000
    keys: list[dict[str, Any]] = []
    pattern = f"{_prefix(key)}:models" if key else "dagagents:{*}:models"
    async for models_key in client.scan_iter(match=_escape_glob(pattern, key)):
        name = str(models_key)[len("dagagents:{") : -len("}:models")]
        models = []
        for family in sorted(str(f) for f in await client.smembers(models_key)):
            h = f"{_prefix(name)}:m:{family}"
            state = await client.hgetall(h)
            leases = await client.zrangebyscore(f"{h}:leases", now, "+inf")
            holders: dict[str, int] = {}
            for lease in leases:
                host_pid = ":".join(str(lease).split(":")[:2])
                holders[host_pid] = holders.get(host_pid, 0) + 1
            buckets = {}
            for k, kind in (("r", "requests"), ("i", "input_tokens"), ("o", "output_tokens")):
                if f"{k}.level" not in state:
                    continue
                level = float(state[f"{k}.level"])
                stamp = float(state.get(f"{k}.stamp", now))
                per_minute = float(state.get(f"{k}.pm", 0))
                hold = float(state.get(f"{k}.hold", 0))
                if hold:  # a held bucket refills from the hold's end (see _LUA_PRELUDE)
                    stamp = max(stamp, min(now, hold))
                if per_minute > 0:  # refilled to now, as the next caller would see it
                    top = per_minute - min(
                        1.0 if k == "r" else math.ceil(per_minute * 0.01), per_minute / 2
                    )
                    if level < top:
                        level = min(top, level + (now - stamp) * per_minute / 60000.0)
                buckets[kind] = {"level": round(level, 3), "per_minute": per_minute or None}
                if f"{k}.limit" in state:
                    buckets[kind]["server_limit"] = float(state[f"{k}.limit"])
            resume = float(state.get("resume_at", 0))
            models.append(
                {
                    "family": family,
                    "buckets": buckets,
                    "leases": len(leases),
                    "holders": holders,
                    "concurrency_limit": float(state["climit"]) if "climit" in state else None,
                    "paused_for_s": round(max(0.0, resume - now) / 1000, 3),
                    "calls": int(state.get("calls", 0)),
                    "overloads": int(state.get("overloads", 0)),
                }
            )
        # --concurrency as each live process (host:pid:run) asked for it; the smallest applies.
        asked: dict[str, int] = {}
        for member in await client.zrangebyscore(f"{_prefix(name)}:ceilings", now, "+inf"):
            who, _, n = str(member).rpartition("|")  # who: host:pid:run
            asked[who] = int(n)
        keys.append(
            {
                "key": name,
                "models": models,
                "concurrency": min(asked.values()) if asked else None,
                "concurrency_asked": asked,
            }
        )
    budgets: list[dict[str, Any]] = []
    bpattern = _budget_prefix(budget) if budget else "dagagents:budget:{*}"
    async for bkey in client.scan_iter(match=_escape_glob(bpattern, budget)):
        if bkey.endswith((":res", ":amt", ":lapsed")):
            continue
        name = bkey[len("dagagents:budget:{") : -1]
        state = await client.hgetall(bkey)
        pairs: list[tuple[str, float]] = await client.zrange(  # type: ignore[assignment]
            f"{bkey}:res", 0, -1, withscores=True
        )
        holds = dict(pairs)
        amounts = {k: float(v) for k, v in (await client.hgetall(f"{bkey}:amt")).items()}
        reserved = sum(amounts.get(k, 0.0) for k, until in holds.items() if until > now)
        # Reservations whose holder stopped renewing them count as spent (the next call on the
        # budget settles them so in Redis; shown here as that call will find them).
        due = [k for k, until in holds.items() if until <= now]
        lapsed = sum(amounts.get(k, 0.0) for k in due)
        budgets.append(
            {
                "budget": name,
                "spent_usd": float(state.get("spent", 0)) + lapsed,
                "reserved_usd": reserved,
                "max_usd": float(state["max"]) if "max" in state else None,
                "refused": int(state.get("refused", 0)),
                # worst cases counted as spent for holders that died holding a reservation
                "lapsed": int(state.get("lapsed", 0)) + len(due),
                "lapsed_usd": float(state.get("lapsed_usd", 0)) + lapsed,
            }
        )
    return {"keys": keys, "budgets": budgets}


def _escape_glob(pattern: str, literal: str | None) -> str:
    """Escape glob characters of a user-given name inside a SCAN pattern."""
    if literal is None:
        return pattern
    return pattern.replace(literal, re.sub(r"([*?\[\]\\])", r"\\\1", literal))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__
