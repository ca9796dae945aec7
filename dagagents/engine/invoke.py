"""One invocation of an agent: the request, the tool-use loop, structured output, usage.

The run calls `answer_task` for each AgentTask node: the node's `answer` method asks its agent
through `invoke_agent` (once, or more for a planner that repairs its plan), and every call's
usage and cost are collected here, also when the node fails. Retries, rate limits and the cost
budget wrap every provider call made here, so they are counted once and traced in one place:
each call passes the run's `Limiter` (buckets, adaptive concurrency, budget) inside the
`RetryPolicy`, so a retried attempt queues for limits again like any other call.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ValidationError

from dagagents.engine.cache_warming import CacheWarmer
from dagagents.engine.limits import Limiter
from dagagents.engine.retry import DEFAULT_RETRY, RetryPolicy, deadline
from dagagents.engine.token_count import TokenCounter
from dagagents.errors import DagAgentsError, NodeFailed, ProviderError
from dagagents.model.agents import Agent
from dagagents.model.nodes import AgentTask
from dagagents.model.tools import input_model, tool_schema
from dagagents.observe.pricing import Pricing
from dagagents.observe.trace import Emit, no_emit
from dagagents.providers.base import (
    Provider,
    Request,
    Response,
    Usage,
    capabilities_of,
    estimate_tokens,
    request_arrived,
    response_begun,
)

OUTPUT_TOOL = "final_answer"
_CACHEABLE_BLOCKS = {"text", "image", "document", "tool_result", "tool_use"}


@contextlib.asynccontextmanager
async def _no_gate() -> AsyncIterator[None]:
    yield None


@dataclass
class CallContext:
    """What an invocation needs from the run.

    `limiter` must be shared by all nodes of one run (it holds the buckets, the adaptive
    concurrency and the budget); `None` means no limits and no budget. `retry` is the run's
    policy (agents may override attempts and timeout). `structured_output` picks how
    `Agent(output=...)` is asked for: "auto" (native `output_config` where the model has it,
    else a forced tool call), "native" or "tool". `auto_cache` marks long system prompts (and
    long tool-loop conversations) with `cache_control`.
    """

    provider: Provider
    node: str
    emit: Emit = no_emit
    limiter: Limiter | None = None
    retry: RetryPolicy = DEFAULT_RETRY
    pricing: Pricing | None = None
    auto_cache: bool = True
    structured_output: Literal["auto", "native", "tool"] = "auto"
    # The run's cache-warming gate (None: off); see engine/cache_warming.py.
    cache_warmer: CacheWarmer | None = None
    # Pre-flight token counting (None: off); see engine/token_count.py.
    token_counter: TokenCounter | None = None
    # Streamed text deltas go here when someone is watching (providers that stream text).
    on_text: Callable[[str], None] | None = None
    # Called as each streamed reply begins (a retry or another turn starts its text afresh).
    on_reply: Callable[[], None] | None = None


@dataclass
class AgentResult:
    """The node's output and what it cost to get it."""

    output: Any
    usage: Usage
    model: str
    calls: int = 1
    simulated: bool = False
    cost_usd: float = 0.0
    # Dollars saved against the same calls uncached at the standard price (see pricing.py).
    saved_cache_usd: float = 0.0
    saved_batch_usd: float = 0.0
    batch_calls: int = 0

    @staticmethod
    def merged(results: Sequence[AgentResult], output: Any, model: str) -> AgentResult:
        """Several invocations of one node as one result: summed usage, calls and cost."""
        if len(results) == 1 and results[0].output is output:
            return results[0]
        usage = Usage()
        for r in results:
            usage = usage + r.usage
        return AgentResult(
            output=output,
            usage=usage,
            model=results[-1].model if results else model,
            calls=sum(r.calls for r in results),
            simulated=any(r.simulated for r in results),
            cost_usd=sum(r.cost_usd for r in results),
            saved_cache_usd=sum(r.saved_cache_usd for r in results),
            saved_batch_usd=sum(r.saved_batch_usd for r in results),
            batch_calls=sum(r.batch_calls for r in results),
        )


class AgentFailed(DagAgentsError):
    """An agent node failed after paying for `spent` (every call it made); `error` is why.

    The run records `spent` on the node and reports `error` as the node's failure."""

    def __init__(self, error: BaseException, spent: AgentResult) -> None:
        super().__init__(str(error))
        self.error = error
        self.spent = spent


@lru_cache(maxsize=256)
def _tool_defs(tools: tuple[Callable[..., Any], ...]) -> tuple[dict[str, Any], ...]:
    return tuple(tool_schema(t) for t in tools)


@cache
def output_schema(model: type[BaseModel], strict: bool = True) -> dict[str, Any]:
    """The JSON schema `messages.parse(output_format=model)` would send (strict-transformed),
    or, for a provider that needs no strict form (the simulator), the model's plain schema:
    the SDK is imported only by a run that talks to the API."""
    if not strict:
        return model.model_json_schema()
    from anthropic import transform_schema  # the SDK's own transform, so we send what it sends

    return transform_schema(model.model_json_schema())


class _Invocation:
    """State of one agent invocation across its turns."""

    def __init__(self, agent: Agent, ctx: CallContext) -> None:
        self.agent = agent
        self.ctx = ctx
        self.limiter = ctx.limiter or Limiter(pricing=ctx.pricing)
        self.pricing = ctx.pricing or self.limiter.pricing
        self.policy = ctx.retry.for_agent(agent)
        self.price = self.pricing.lookup(agent.model)
        self.tools = {fn.__name__: fn for fn in agent.tools}
        self.tool_defs = list(_tool_defs(tuple(agent.tools)))
        self.capabilities = capabilities_of(ctx.provider)
        self.mode = self._structured_mode()
        self.output_name = OUTPUT_TOOL
        while self.output_name in self.tools:
            self.output_name += "_"
        self.usage = Usage()
        self.cost = 0.0
        self.saved_cache = 0.0
        self.saved_batch = 0.0
        self.batch_calls = 0
        self.calls = 0
        self.simulated = False
        self.model = agent.model

    # ------------------------------------------------------------------ request shape
    def _structured_mode(self) -> str | None:
        if self.agent.output is None:
            return None
        if self.ctx.structured_output != "auto":
            return self.ctx.structured_output
        native = self.price.structured_outputs if self.price is not None else True
        if not self.capabilities.forced_tool_choice:  # e.g. the offline simulator
            native = True
        return "native" if native else "tool"

    @property
    def min_cache_tokens(self) -> int:
        return self.price.min_cache_tokens if self.price is not None else 1024

    def system(self, tools: list[dict[str, Any]]) -> str | list[dict[str, Any]] | None:
        """The system prompt, as a cached block when it (with the tools) is long enough."""
        text = self.agent.system
        if not text:
            return None
        if self.ctx.auto_cache and estimate_tokens(text, tools) >= self.min_cache_tokens:
            return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]
        return text

    def first_turn(self, prompt: str) -> str | list[dict[str, Any]]:
        """The task, after the agent's shared documents (`Agent(cache=...)`), each marked as a
        cache breakpoint so every worker given them reads them from the cache."""
        if not self.agent.cache:
            return prompt
        mark = {"cache_control": {"type": "ephemeral"}} if self.ctx.auto_cache else {}
        blocks: list[dict[str, Any]] = [
            {"type": "text", "text": doc, **mark} for doc in self.agent.cache
        ]
        return [*blocks, {"type": "text", "text": prompt}]

    def messages_for_request(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """In a long tool loop, cache the conversation so far (one breakpoint, on the last block)."""
        if not self.ctx.auto_cache or len(messages) < 3:
            return messages
        if estimate_tokens(messages) < self.min_cache_tokens:
            return messages
        last = messages[-1]
        content = last.get("content")
        if not isinstance(content, list) or not content:
            return messages
        tail = content[-1]
        if not isinstance(tail, dict) or tail.get("type") not in _CACHEABLE_BLOCKS:
            return messages
        marked = {**tail, "cache_control": {"type": "ephemeral"}}
        return [*messages[:-1], {**last, "content": [*content[:-1], marked]}]

    def request(self, messages: list[dict[str, Any]], *, allow_tools: bool = True) -> Request:
        agent = self.agent
        tools = list(self.tool_defs) if allow_tools else []
        tool_choice: dict[str, Any] | None = None
        schema = None
        if self.mode == "native":
            schema = output_schema(agent.output, self.capabilities.strict_schema)
        elif self.mode == "tool":
            answer: dict[str, Any] = {
                "name": self.output_name,
                "description": "Give your final answer. Call this once, with the complete "
                "answer, when you are done.",
                "input_schema": output_schema(agent.output, self.capabilities.strict_schema),
            }
            if self.price is not None and self.price.structured_outputs:
                answer["strict"] = True  # grammar-constrained where the model supports it
            tools.append(answer)
            tool_choice = (
                {"type": "tool", "name": self.output_name} if len(tools) == 1 else {"type": "any"}
            )
        return Request(
            model=agent.model,
            system=self.system(tools),
            messages=self.messages_for_request(messages),
            max_tokens=agent.max_tokens,
            tools=tools,
            tool_choice=tool_choice,
            temperature=agent.temperature,
            output_schema=schema,
            timeout=self.policy.timeout,
            params=dict(agent.params),
            node=self.ctx.node,
            agent=agent.name,
        )

    # ------------------------------------------------------------------ one API call
    async def call(self, request: Request, turn: int) -> Response:
        """One provider call under the retry policy, each attempt admitted by the limiter."""
        ctx = self.ctx
        attempts = 0
        cost = 0.0
        reserved = 0
        streaming = ctx.on_text is not None and self.capabilities.streams_text

        async def attempt() -> Response:
            nonlocal attempts, cost, reserved
            attempts += 1
            warmer = ctx.cache_warmer
            gate = (
                warmer.gate(request, node=ctx.node, emit=ctx.emit)
                if warmer is not None
                else _no_gate()
            )
            # A follower waits at the gate for its leader's response, before taking a slot.
            async with gate as begun:
                exact = None
                if ctx.token_counter is not None:  # the API's count for the ITPM reservation
                    exact = await ctx.token_counter.input_tokens(
                        request, node=ctx.node, emit=ctx.emit
                    )
                slot_for = self.limiter.slot(
                    request, node=ctx.node, emit=ctx.emit, input_tokens=exact
                )
                async with slot_for as slot:
                    token = response_begun.set(begun)
                    # Admitted during a burst's hold: the provider says when the server has it.
                    sending = request_arrived.set(slot.arrived if slot.holding else None)
                    try:
                        async with deadline(self.policy.timeout, f"call to {request.model}"):
                            if streaming:
                                if ctx.on_reply is not None:
                                    ctx.on_reply()
                                response = await ctx.provider.complete(request, on_text=ctx.on_text)  # type: ignore[call-arg]
                            else:
                                response = await ctx.provider.complete(request)
                    finally:
                        request_arrived.reset(sending)
                        response_begun.reset(token)
                    if begun is not None:
                        begun()  # a provider that cannot tell earlier: it has begun by now
                    reserved = slot.est_input
                    cost = slot.done(response)
            return response

        started = time.perf_counter()
        try:
            response = await self.policy.call(attempt, node=ctx.node, emit=ctx.emit)
        except ProviderError as exc:
            tail = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
            raise NodeFailed(ctx.node, f"{exc}{tail}") from exc
        self.calls += 1
        self.usage = self.usage + response.usage
        self.cost += cost
        self.simulated = self.simulated or response.simulated
        self.model = response.model or self.model
        by_cache, by_batch = self.pricing.savings(request.model, response.usage, response.batch)
        self.saved_cache += by_cache
        self.saved_batch += by_batch
        self.batch_calls += response.batch
        ctx.emit(
            "llm_call",
            node=ctx.node,
            model=request.model,
            turn=turn,
            attempts=attempts,
            duration=round(time.perf_counter() - started, 6),
            stop_reason=response.stop_reason,
            usage=response.usage.model_dump(),
            cost=cost,
            batch=response.batch,
            reserved_input=reserved,
            saved_cache=round(by_cache, 8),
            saved_batch=round(by_batch, 8),
        )
        return response

    # ------------------------------------------------------------------ tools
    async def run_tool(self, use: dict[str, Any]) -> dict[str, Any]:
        """Run one tool call; a failing tool becomes an `is_error` result, never a node failure."""
        name = use.get("name", "")
        args = use.get("input") or {}
        started = time.perf_counter()
        error: str | None = None
        try:
            fn = self.tools.get(name)
            if fn is None:
                raise LookupError(f"unknown tool '{name}'; available: {sorted(self.tools)}")
            parsed = input_model(fn).model_validate(args)
            kwargs = {k: getattr(parsed, k) for k in type(parsed).model_fields}
            if inspect.iscoroutinefunction(fn):
                result = await fn(**kwargs)
            else:
                result = await asyncio.to_thread(fn, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": use.get("id"),
                "content": _tool_content(result),
            }
        except Exception as exc:  # the model sees the error and may recover
            error = f"{type(exc).__name__}: {exc}"
            block = {
                "type": "tool_result",
                "tool_use_id": use.get("id"),
                "content": error,
                "is_error": True,
            }
        self.ctx.emit(
            "tool_call",
            node=self.ctx.node,
            tool=name,
            input=args,
            duration=round(time.perf_counter() - started, 6),
            error=error,
        )
        return block

    # ------------------------------------------------------------------ the loop
    async def run(self, prompt: str) -> Any:
        agent = self.agent
        messages: list[dict[str, Any]] = [{"role": "user", "content": self.first_turn(prompt)}]
        tool_turns = 0
        asked_again = False
        turn = 0
        while True:
            turn += 1
            response = await self.call(self.request(messages), turn)
            if response.stop_reason == "refusal":
                raise NodeFailed(self.ctx.node, f"the model refused to answer: {response.text!r}")
            uses = response.tool_uses
            final = next((u for u in uses if u.get("name") == self.output_name), None)
            if self.mode == "tool" and final is not None:
                try:
                    return agent.output.model_validate(final.get("input") or {})  # type: ignore[union-attr]
                except ValidationError as exc:
                    if asked_again:
                        raise self._invalid(exc, response) from None
                    asked_again = True
                    results = [await self._answer_use(u, exc) for u in uses]
                    messages += [
                        {"role": "assistant", "content": response.content},
                        {"role": "user", "content": results},
                    ]
                    continue
            if uses and response.stop_reason == "tool_use":
                tool_turns += 1
                if tool_turns >= agent.max_turns:
                    names = ", ".join(sorted({u.get("name", "?") for u in uses}))
                    raise NodeFailed(
                        self.ctx.node,
                        f"agent '{agent.name}' was still calling tools ({names}) after "
                        f"max_turns={agent.max_turns}",
                    )
                results = await asyncio.gather(*(self.run_tool(u) for u in uses))
                messages += [
                    {"role": "assistant", "content": response.content},
                    {"role": "user", "content": list(results)},
                ]
                continue
            if response.stop_reason == "pause_turn":
                tool_turns += 1
                if tool_turns >= agent.max_turns:
                    raise NodeFailed(
                        self.ctx.node,
                        f"agent '{agent.name}' paused past max_turns={agent.max_turns}",
                    )
                messages.append({"role": "assistant", "content": response.content})
                continue
            if agent.output is None:
                return response.text
            try:
                return _parse_output(agent.output, response.text)
            except ValidationError as exc:
                if asked_again:
                    raise self._invalid(exc, response) from None
                asked_again = True
                messages += [
                    {
                        "role": "assistant",
                        "content": response.content or [{"type": "text", "text": "{}"}],
                    },
                    {
                        "role": "user",
                        "content": "Your reply did not match the required JSON schema: "
                        f"{_short(exc)}\nReply again with only the corrected JSON.",
                    },
                ]

    def result(self, output: Any) -> AgentResult:
        return AgentResult(
            output=output,
            usage=self.usage,
            model=self.model,
            calls=self.calls,
            simulated=self.simulated,
            cost_usd=self.cost,
            saved_cache_usd=self.saved_cache,
            saved_batch_usd=self.saved_batch,
            batch_calls=self.batch_calls,
        )

    async def _answer_use(self, use: dict[str, Any], exc: ValidationError) -> dict[str, Any]:
        if use.get("name") == self.output_name:
            return {
                "type": "tool_result",
                "tool_use_id": use.get("id"),
                "content": f"Invalid answer: {_short(exc)}\nCall {self.output_name} again "
                "with corrected input.",
                "is_error": True,
            }
        return await self.run_tool(use)

    def _invalid(self, exc: ValidationError, response: Response) -> NodeFailed:
        cut = (
            f" (the reply was cut off at max_tokens={self.agent.max_tokens})"
            if response.stop_reason == "max_tokens"
            else ""
        )
        name = self.agent.output.__name__ if self.agent.output else "output"
        return NodeFailed(
            self.ctx.node,
            f"agent '{self.agent.name}' twice returned output that does not match "
            f"{name}{cut}: {_short(exc)}",
        )


def _parse_output(model: type[BaseModel], text: str) -> BaseModel:
    """Validate the reply; tolerate a ```json fence around it (seen with forced formats off)."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`")
        body = body[4:] if body.startswith("json") else body
    return model.model_validate_json(body)


def _short(exc: ValidationError, limit: int = 1500) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + " ..."


def _tool_content(result: Any) -> str | list[dict[str, Any]]:
    """A tool's return value as tool_result content."""
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    if (
        isinstance(result, list)
        and result
        and all(isinstance(b, dict) and "type" in b for b in result)
    ):
        return result
    if result is None:
        return ""
    return orjson.dumps(result, default=str).decode()


async def invoke_agent(
    agent: Agent, prompt: str, ctx: CallContext, spent: list[AgentResult] | None = None
) -> Any:
    """Ask `agent` to answer `prompt`, running tools as asked; returns the output (text or the
    output model). What the invocation cost is appended to `spent`, also when it fails."""
    inv = _Invocation(agent, ctx)
    output: Any = None
    try:
        output = await inv.run(prompt)
    finally:
        if spent is not None:
            spent.append(inv.result(output))
    return output


async def answer_task(spec: AgentTask, prompt: str, ctx: CallContext) -> AgentResult:
    """The node's output (`spec.answer`, which asks its agent once or more) and what every
    call cost. A failure is raised as AgentFailed carrying what was spent before it."""
    spent: list[AgentResult] = []

    def ask(text: str) -> Any:
        return invoke_agent(spec.agent, text, ctx, spent)

    def warn(message: str, **fields: Any) -> None:
        ctx.emit("warning", node=ctx.node, message=message, **fields)

    try:
        output = await spec.answer(prompt, ask, warn)
    except Exception as exc:
        raise AgentFailed(exc, AgentResult.merged(spent, None, spec.agent.model)) from exc
    return AgentResult.merged(spent, output, spec.agent.model)


__all__: Sequence[str] = [
    "AgentFailed",
    "AgentResult",
    "CallContext",
    "answer_task",
    "invoke_agent",
    "output_schema",
]
