"""The fake server's prompt cache, with the API's semantics (not an always-hit dictionary).

What the Messages API documents and this reproduces:
- A prefix is cached up to each `cache_control` breakpoint, in the order tools, system, messages.
  A request reads the longest breakpoint prefix already cached and writes the rest up to its
  last breakpoint (`cache_read_input_tokens` / `cache_creation_input_tokens`); `input_tokens` is
  what follows the last breakpoint.
- A breakpoint whose prefix is shorter than the model's minimum cacheable length caches nothing.
- An entry becomes readable only once the response that wrote it has *begun*: parallel requests
  sent before that each write (and pay for) the same prefix.
- An entry lives `ttl` seconds (5 minutes, or 1 hour for `"ttl": "1h"`) from its last use.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson

from dagagents.providers.base import estimate_tokens as client_estimate

Json = dict[str, Any]
TTL_5M = 300.0
TTL_1H = 3600.0


def estimate_tokens(value: Any) -> int:
    """The fake tokenizer: the client's estimate, but a non-empty value is at least a token."""
    return max(1, client_estimate(value)) if value else 0


def _load_minimums() -> dict[str, int]:
    """Minimum cacheable lengths per model, from the same data file the client prices with."""
    try:
        raw = orjson.loads((resources.files("dagagents") / "data" / "pricing.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return {}
    return {k: int(v.get("min_cache_tokens", 1024)) for k, v in raw.get("models", {}).items()}


_MINIMUMS = _load_minimums()


def min_cache_tokens_for(model: str, default: int = 1024) -> int:
    """The API's minimum cacheable prompt length for `model` (longest matching id prefix)."""
    best = max((k for k in _MINIMUMS if model.startswith(k)), key=len, default=None)
    return _MINIMUMS[best] if best is not None else default


@dataclass
class _Entry:
    tokens: int
    ttl: float
    readable_at: float | None = None  # None: the writing response has not begun yet
    expires: float = 0.0
    writers: list[int] = field(default_factory=list)


@dataclass
class CacheDecision:
    """How one request's input splits, and which entries it will make readable once begun."""

    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    writes: list[str] = field(default_factory=list)

    @property
    def billed_input(self) -> int:
        """What counts against input-tokens-per-minute: uncached input plus cache writes."""
        return self.input_tokens + self.cache_creation_input_tokens

    @property
    def total(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


def _breakpoints(body: Json) -> tuple[list[tuple[str, int, float]], int]:
    """[(prefix key, prefix tokens, ttl)] at each cache_control breakpoint, and the total."""
    model = str(body.get("model", ""))
    parts: list[Any] = [model]
    tokens = 4
    out: list[tuple[str, int, float]] = []

    def mark(block: Any) -> None:
        control = block.get("cache_control") if isinstance(block, dict) else None
        if isinstance(control, dict):
            ttl = TTL_1H if control.get("ttl") == "1h" else TTL_5M
            key = hashlib.sha256(orjson.dumps(parts)).hexdigest()
            out.append((key, tokens, ttl))

    for tool in body.get("tools") or []:
        parts.append(tool)
        tokens += estimate_tokens(tool)
        mark(tool)
    system = body.get("system")
    if isinstance(system, str):
        parts.append(system)
        tokens += estimate_tokens(system)
    elif isinstance(system, list):
        for block in system:
            parts.append(block)
            tokens += estimate_tokens(block)
            mark(block)
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for block in content:
                parts.append([message.get("role"), block])
                tokens += estimate_tokens(block)
                mark(block)
        else:
            parts.append(message)
            tokens += estimate_tokens(message)
    return out, tokens


class PromptCache:
    """The server's cache entries. `decide` at request time, `begun` when the response starts."""

    def __init__(self, min_tokens: int | dict[str, int] | None = None) -> None:
        # int: one minimum for every model; dict: per model prefix; None: the API's table.
        self.min_tokens = min_tokens
        self.ttl_scale = 1.0  # tests shrink lifetimes (0.01: 5 minutes become 3 s)
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def minimum(self, model: str) -> int:
        if isinstance(self.min_tokens, int):
            return self.min_tokens
        if isinstance(self.min_tokens, dict):
            best = max((k for k in self.min_tokens if model.startswith(k)), key=len, default=None)
            if best is not None:
                return self.min_tokens[best]
        return min_cache_tokens_for(model)

    def total_tokens(self, body: Json) -> int:
        """What `count_tokens` answers: the whole input, cached or not (no side effects)."""
        return _breakpoints(body)[1]

    def decide(self, body: Json, now: float | None = None, *, commit: bool = True) -> CacheDecision:
        """Split the input into uncached / written / read; `commit` records pending writes and
        refreshes what was read (False: just look)."""
        points, total = _breakpoints(body)
        minimum = self.minimum(str(body.get("model", "")))
        points = [p for p in points if p[1] >= minimum]
        if not points:
            return CacheDecision(total, 0, 0)
        now = time.monotonic() if now is None else now
        read = 0
        with self._lock:
            for key, tokens, _ttl in points:
                entry = self._entries.get(key)
                if (
                    entry is not None
                    and entry.readable_at is not None
                    and entry.readable_at <= now
                    and entry.expires > now
                ):
                    read = max(read, tokens)
                    if commit:
                        entry.expires = now + entry.ttl * self.ttl_scale  # refreshed by use
            last = points[-1][1]
            writes: list[str] = []
            for key, tokens, ttl in points:
                if tokens <= read or not commit:
                    continue
                entry = self._entries.get(key)
                if entry is None or entry.expires <= now and entry.readable_at is not None:
                    entry = self._entries[key] = _Entry(tokens, ttl)
                writes.append(key)
        written = last - read
        return CacheDecision(total - last, written, read, writes)

    def begun(self, decision: CacheDecision, now: float | None = None) -> None:
        """The response that wrote these entries has begun: they are readable from now on."""
        if not decision.writes:
            return
        now = time.monotonic() if now is None else now
        with self._lock:
            for key in decision.writes:
                entry = self._entries.get(key)
                if entry is None:
                    continue
                if entry.readable_at is None or entry.expires <= now:
                    entry.readable_at = now
                entry.expires = max(entry.expires, now + entry.ttl * self.ttl_scale)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
