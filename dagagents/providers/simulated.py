"""SimulatedProvider: the offline default. Deterministic per prompt, realistic latency and usage.

Latency = time to first token + output tokens / tokens per second, with seeded jitter, so
schedules and benchmarks behave like real runs without a key or a network. Responses can be
scripted per agent, per model or per prompt pattern (that is how the orchestrator demo gets a
real plan). Every answer is labelled simulated, in the text and in `Response.simulated`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import inspect
import math
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel

from dagagents.errors import ProviderError, UserError
from dagagents.providers.base import (
    Capabilities,
    Request,
    Response,
    Usage,
    estimate_tokens,
    request_arrived,
)

Responder = Callable[[Request], "str | dict[str, Any] | BaseModel | list[dict[str, Any]]"]

_WORDS = [
    "market",
    "demand",
    "growth",
    "segment",
    "pricing",
    "risk",
    "signal",
    "customer",
    "channel",
    "margin",
    "evidence",
    "forecast",
    "trend",
    "supply",
    "adoption",
    "cost",
    "revenue",
    "share",
    "region",
    "competitor",
    "insight",
    "model",
    "analysis",
    "scenario",
    "baseline",
    "driver",
    "constraint",
    "opportunity",
    "outlook",
    "estimate",
]


@dataclass
class Script:
    """A canned answer. Matches when every given selector matches (agent, model, pattern).

    `respond` is a string, JSON-able data, a pydantic model, a list of content blocks (e.g. a
    tool_use), or a callable taking the Request. `error` raises instead, `times` times.
    """

    respond: Any = None
    agent: str | None = None
    model: str | None = None
    pattern: str | None = None
    latency: float | None = None
    output_tokens: int | None = None
    error: ProviderError | None = None
    times: int | None = None
    used: int = field(default=0, init=False)

    def matches(self, request: Request, prompt: str) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.agent is not None and request.agent != self.agent:
            return False
        if self.model is not None and not request.model.startswith(self.model):
            return False
        return self.pattern is None or re.search(self.pattern, prompt, re.S) is not None


TIME_SCALE_ENV = "DAGAGENTS_SIM_TIME_SCALE"


def _default_time_scale() -> float:
    """`DAGAGENTS_SIM_TIME_SCALE` (e.g. 0.05 in CI, so the README's commands run in seconds
    with the same outputs and schedules); 1.0 when unset."""
    raw = os.environ.get(TIME_SCALE_ENV)
    if raw is None:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{TIME_SCALE_ENV} must be a number >= 0, got {raw!r}.")
    return value


class SimulatedProvider:
    """Offline provider. `time_scale` shrinks every latency (0 makes calls instant); it
    defaults to `DAGAGENTS_SIM_TIME_SCALE`, else 1."""

    name = "simulated"
    # Answers `output_schema` (not forced tool calls) from the plain schema; needs no SDK.
    capabilities = Capabilities(
        simulated=True, forced_tool_choice=False, strict_schema=False, streams_text=True
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass whose own `complete(request)` takes no `on_text` does not stream (unless
        it declares its capabilities): the engine passes `on_text` only to providers that do."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("complete")
        if own is None or "capabilities" in cls.__dict__:
            return
        params = inspect.signature(own).parameters
        takes_text = "on_text" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )
        if not takes_text:
            cls.capabilities = dataclasses.replace(cls.capabilities, streams_text=False)

    def __init__(
        self,
        *,
        ttft: float = 0.35,
        tokens_per_second: float = 90.0,
        jitter: float = 0.15,
        seed: int = 0,
        time_scale: float | None = None,
        min_output_tokens: int = 40,
        max_output_tokens: int = 220,
        scripts: list[Script] | None = None,
    ) -> None:
        self.ttft = ttft
        self.tokens_per_second = tokens_per_second
        self.jitter = jitter
        self.seed = seed
        self.time_scale = _default_time_scale() if time_scale is None else time_scale
        self.min_output_tokens = min_output_tokens
        self.max_output_tokens = max_output_tokens
        self.scripts: list[Script] = list(scripts or [])
        self.calls = 0

    def script(self, respond: Any = None, **selectors: Any) -> SimulatedProvider:
        """Add a canned answer (see `Script`); later scripts take precedence."""
        self.scripts.insert(0, Script(respond=respond, **selectors))
        return self

    async def aclose(self) -> None:
        return None

    def latency_for(self, output_tokens: int, rng: random.Random) -> float:
        base = self.ttft + output_tokens / self.tokens_per_second
        factor = 1.0 + rng.uniform(-self.jitter, self.jitter) if self.jitter else 1.0
        return max(0.0, base * factor)

    async def complete(
        self, request: Request, *, on_text: Callable[[str], None] | None = None
    ) -> Response:
        """Answer after the simulated latency; with `on_text`, the reply's text arrives in
        word-sized deltas after the time to first token, at `tokens_per_second`."""
        self.calls += 1
        arrived = request_arrived.get()
        if arrived is not None:  # the simulated model has the request at once
            await arrived()
        prompt = _last_user_text(request)
        rng = random.Random(_request_seed(request, self.seed))
        script = next((s for s in self.scripts if s.matches(request, prompt)), None)
        if script is not None:
            script.used += 1
        out_cap = min(request.max_tokens, self.max_output_tokens)
        out_tokens = rng.randint(min(self.min_output_tokens, out_cap), max(1, out_cap))
        if script is not None and script.output_tokens is not None:
            out_tokens = script.output_tokens
        content = self._content(request, prompt, script, out_tokens, rng)
        if script is not None and script.output_tokens is None:
            out_tokens = max(1, min(request.max_tokens, estimate_tokens(content)))
        latency = (
            script.latency
            if script is not None and script.latency is not None
            else self.latency_for(out_tokens, rng)
        )
        failing = script is not None and script.error is not None
        if on_text is not None and not failing:
            await self._stream(content, self.time_scale * latency, on_text)
        elif self.time_scale * latency > 0:
            await asyncio.sleep(self.time_scale * latency)
        if script is not None and script.error is not None:
            raise script.error
        in_tokens = max(1, estimate_tokens(request.messages)) + max(
            1, estimate_tokens(request.system)
        )
        stop = "tool_use" if any(b.get("type") == "tool_use" for b in content) else "end_turn"
        return Response(
            content=content,
            stop_reason=stop,
            model=request.model,
            usage=Usage(input_tokens=in_tokens, output_tokens=out_tokens),
            simulated=True,
        )

    async def _stream(
        self, content: list[dict[str, Any]], total: float, on_text: Callable[[str], None]
    ) -> None:
        """Spend `total` seconds as a streamed reply does: silence until the first token, then
        the text in pieces spaced evenly over the rest."""
        text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        pieces = re.findall(r"\S+\s*|\s+", text)
        first = min(total, self.ttft * self.time_scale)
        if first > 0:
            await asyncio.sleep(first)
        if not pieces:
            if total - first > 0:
                await asyncio.sleep(total - first)
            return
        gap = (total - first) / len(pieces)
        # Paced against the clock, not by summed sleeps (each oversleeps a little on a busy
        # loop, which would stretch a reply of hundreds of deltas past `total`).
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, piece in enumerate(pieces, 1):
            on_text(piece)
            if gap > 0:
                await asyncio.sleep(max(0.0, start + i * gap - loop.time()))

    def _content(
        self,
        request: Request,
        prompt: str,
        script: Script | None,
        out_tokens: int,
        rng: random.Random,
    ) -> list[dict[str, Any]]:
        if script is not None and (script.respond is not None or script.error is not None):
            answer = script.respond(request) if callable(script.respond) else script.respond
            return _as_blocks(answer)
        if request.output_schema is not None:
            return _as_blocks(example_for_schema(request.output_schema, rng))
        who = request.agent or "agent"
        topic = " ".join(prompt.split()[:12])
        words = " ".join(rng.choice(_WORDS) for _ in range(max(0, int(out_tokens * 0.75) - 20)))
        text = f"[simulated {request.model}] {who} on “{topic}”: {words}."
        return [{"type": "text", "text": text}]


def _as_blocks(answer: Any) -> list[dict[str, Any]]:
    if isinstance(answer, str):
        return [{"type": "text", "text": answer}]
    if isinstance(answer, BaseModel):
        return [{"type": "text", "text": answer.model_dump_json()}]
    if (
        isinstance(answer, list)
        and answer
        and all(isinstance(b, dict) and "type" in b for b in answer)
    ):
        return answer
    return [{"type": "text", "text": orjson.dumps(answer).decode()}]


def _last_user_text(request: Request) -> str:
    for message in reversed(request.messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return " ".join(
            str(b.get("text") or b.get("content") or "") for b in content if isinstance(b, dict)
        )
    return ""


def _request_seed(request: Request, seed: int) -> int:
    payload = orjson.dumps(
        [seed, request.model, request.system, request.messages, request.agent],
        option=orjson.OPT_SORT_KEYS,
        default=str,
    )
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "big")


def example_for_schema(schema: dict[str, Any], rng: random.Random | None = None) -> Any:
    """A small value that satisfies a JSON schema (unscripted structured output). With `rng`,
    leaves vary like the simulated provider's text; without, they are fixed (the fake server)."""
    defs = schema.get("$defs", {})

    def leaf(kind: str, s: dict[str, Any]) -> Any:
        if kind == "integer":
            return int(s.get("minimum", rng.randint(1, 9) if rng else 1))
        if kind == "number":
            return float(s.get("minimum", round(rng.uniform(0, 10), 2) if rng else 1.5))
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return f"[simulated] {rng.choice(_WORDS)} {rng.choice(_WORDS)}" if rng else "fake"

    def build(s: dict[str, Any], depth: int) -> Any:
        if "$ref" in s:
            return build(defs[s["$ref"].rsplit("/", 1)[-1]], depth)
        if "const" in s:
            return s["const"]
        if s.get("enum"):
            return s["enum"][0]
        for combo in ("anyOf", "oneOf", "allOf"):
            if s.get(combo):
                options = [o for o in s[combo] if o.get("type") != "null"] or s[combo]
                return build(options[0], depth)
        # A default is not produced as a value: strict schemas (what the API is sent) have
        # none, so an example from the plain schema matches one from the strict form.
        kind = s.get("type", "string")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object":
            return {k: build(v, depth + 1) for k, v in (s.get("properties") or {}).items()}
        if kind == "array":
            count = max(int(s.get("minItems", 1)), 1) if depth < 4 else 0
            return [build(s.get("items") or {}, depth + 1) for _ in range(count)]
        return leaf(kind, s)

    return build(schema, 0)
