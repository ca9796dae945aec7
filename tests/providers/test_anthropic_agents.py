"""Tool-using and structured-output agents, and prompt caching, end to end through the real SDK."""

from __future__ import annotations

from typing import Any

from _anthropic_support import provider_for, run_graph
from pydantic import BaseModel, Field

from dagagents import Agent, Graph
from dagagents.observe.pricing import default_pricing
from dagagents.testing import (
    FakeAnthropic,
    fake_anthropic_fixture,  # noqa: F401 (the `fake_anthropic` fixture)
    json_reply,
    tool_call,
    tool_results,
)


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def lookup_stock(ticker: str) -> dict[str, Any]:
    """Look up a stock price; fails for unknown tickers."""
    if ticker != "ACME":
        raise KeyError(f"no such ticker {ticker!r}")
    return {"ticker": ticker, "price": 12.5}


def first_turn(request: dict[str, Any]) -> bool:
    return not tool_results(request)


def test_tool_using_agent_end_to_end(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply(
        tool_call("add", {"a": 2, "b": 3}, say="Adding."), pattern="^What is", when=first_turn
    )
    fake_anthropic.reply(
        lambda r: f"The sum is {tool_results(r)[0]['content']}.",
        when=lambda r: bool(tool_results(r)),
    )
    calc = Agent("calc", model="claude-sonnet-4-6", tools=[add])
    g = Graph("tools")
    g.task("sum", calc, "What is 2 + 3?")
    g.task("echo", Agent("echo"), "Repeat: {sum}", depends_on=["sum"])
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert result.ok, result.errors
    assert result.outputs["sum"] == "The sum is 5."
    first, second, _ = (r.body or {} for r in fake_anthropic.requests)
    (tool,) = first["tools"]
    assert tool["name"] == "add" and tool["description"] == "Add two integers."
    assert tool["input_schema"]["properties"]["a"]["type"] == "integer"
    use = second["messages"][1]["content"][1]
    result_block = second["messages"][2]["content"][0]
    assert use["type"] == "tool_use" and result_block["tool_use_id"] == use["id"]
    assert result_block["content"] == "5" and not result_block.get("is_error")
    (event,) = [e for e in result.events if e["event"] == "tool_call"]
    assert event["node"] == "sum" and event["tool"] == "add"
    assert event["input"] == {"a": 2, "b": 3} and event["error"] is None
    assert event["duration"] >= 0
    assert result.records["sum"].calls == 2


def test_a_raising_tool_returns_is_error_and_the_node_still_finishes(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.reply(tool_call("lookup_stock", {"ticker": "ZZZ"}), when=first_turn)
    fake_anthropic.reply("I could not find that ticker.")
    g = Graph("tool-error")
    g.task("price", Agent("analyst", tools=[lookup_stock]), "Price of ZZZ?")
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert result.status == {"price": "done"}
    block = (fake_anthropic.requests[1].body or {})["messages"][2]["content"][0]
    assert block["is_error"] is True and "no such ticker 'ZZZ'" in block["content"]
    (event,) = [e for e in result.events if e["event"] == "tool_call"]
    assert event["error"].startswith("KeyError")


def test_bad_tool_input_is_reported_to_the_model(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply(tool_call("add", {"a": "two", "b": 3}), when=first_turn)
    fake_anthropic.reply(lambda r: "error seen" if tool_results(r)[0].get("is_error") else "?")
    g = Graph("tool-input")
    g.task("sum", Agent("calc", tools=[add]), "2+3")
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert result.outputs["sum"] == "error seen"


def test_tool_loop_stops_at_max_turns(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply(tool_call("add", {"a": 1, "b": 1}))
    g = Graph("loop")
    g.task("sum", Agent("calc", tools=[add], max_turns=3), "keep adding")
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert result.status == {"sum": "failed"}
    assert "max_turns=3" in result.errors["sum"] and "add" in result.errors["sum"]
    assert len(fake_anthropic.requests) == 3


class Plan(BaseModel):
    title: str
    steps: list[str] = Field(min_length=1)
    risk: int


def test_structured_output_agent_end_to_end(fake_anthropic: FakeAnthropic) -> None:
    planner = Agent("planner", model="claude-opus-4-6", output=Plan)
    g = Graph("structured")
    g.task("plan", planner, "Plan a launch.")
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert result.ok, result.errors
    plan = result.outputs["plan"]
    assert isinstance(plan, Plan) and plan.steps
    body = fake_anthropic.requests[0].body or {}
    fmt = body["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"]["additionalProperties"] is False
    assert set(fmt["schema"]["required"]) == {"title", "steps", "risk"}
    assert "tool_choice" not in body


def test_structured_output_asks_once_more_with_the_validation_error(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.reply(
        json_reply({"title": "x", "steps": [], "risk": 1}),
        json_reply({"title": "x", "steps": ["ship it"], "risk": 1}),
    )
    g = Graph("retry-validate")
    g.task("plan", Agent("planner", output=Plan), "Plan.")
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert result.outputs["plan"] == Plan(title="x", steps=["ship it"], risk=1)
    second = fake_anthropic.requests[1].body or {}
    assert "did not match the required JSON schema" in second["messages"][-1]["content"]
    assert "steps" in second["messages"][-1]["content"]


def test_structured_output_fails_after_the_second_invalid_reply(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.reply(json_reply({"title": "x", "steps": [], "risk": "high"}))
    g = Graph("invalid")
    g.task("plan", Agent("planner", output=Plan), "Plan.")
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert result.status == {"plan": "failed"}
    assert "does not match Plan" in result.errors["plan"]
    assert len(fake_anthropic.requests) == 2


def test_models_without_structured_outputs_use_a_forced_tool_call(
    fake_anthropic: FakeAnthropic,
) -> None:
    old = Agent("planner", model="claude-3-haiku-20240307", output=Plan)
    assert default_pricing().lookup(old.model).structured_outputs is False  # type: ignore[union-attr]
    g = Graph("fallback")
    g.task("plan", old, "Plan.")
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert isinstance(result.outputs["plan"], Plan)
    body = fake_anthropic.requests[0].body or {}
    assert "output_config" not in body
    assert body["tool_choice"] == {"type": "tool", "name": "final_answer"}
    assert body["tools"][0]["input_schema"]["required"] == ["title", "steps", "risk"]


def test_long_shared_system_prompt_is_cached_and_priced_as_cache_reads(
    fake_anthropic: FakeAnthropic,
) -> None:
    handbook = "You are a careful analyst. " + "Rule: cite your sources. " * 1200  # ~7k tokens
    analyst = Agent("analyst", model="claude-sonnet-4-6", system=handbook)
    short = Agent("short", model="claude-sonnet-4-6", system="Be brief.")
    g = Graph("cache")
    g.task("first", analyst, "Question one.")
    g.task("second", analyst, "Question two.", depends_on=["first"])
    g.task("brief", short, "Question three.")
    result = run_graph(g, provider=provider_for(fake_anthropic), concurrency=1)
    assert result.ok, result.errors
    bodies = {r.body["messages"][0]["content"]: r.body for r in fake_anthropic.requests}  # type: ignore[index]
    system = bodies["Question one."]["system"]
    assert system == [{"type": "text", "text": handbook, "cache_control": {"type": "ephemeral"}}]
    assert bodies["Question three."]["system"] == "Be brief."  # too short to cache
    first, second = result.records["first"], result.records["second"]
    assert first.usage.cache_creation_input_tokens > 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.cost_usd < first.cost_usd / 5  # reads at $0.30 vs writes at $3.75 per MTok


def test_forced_tool_mode_is_strict_where_the_model_supports_it(
    fake_anthropic: FakeAnthropic,
) -> None:
    g = Graph("strict")
    g.task("plan", Agent("planner", model="claude-sonnet-4-6", output=Plan), "Plan.")
    result = run_graph(
        g, provider=provider_for(fake_anthropic), call_options={"structured_output": "tool"}
    )
    assert isinstance(result.outputs["plan"], Plan)
    (tool,) = (fake_anthropic.requests[0].body or {})["tools"]
    assert tool["strict"] is True and tool["name"] == "final_answer"


def test_tools_and_structured_output_together(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply(tool_call("add", {"a": 40, "b": 2}), when=first_turn)
    fake_anthropic.reply(
        lambda r: json_reply(
            {"title": "sum", "steps": [str(tool_results(r)[0]["content"])], "risk": 0}
        )
    )
    g = Graph("both")
    g.task("plan", Agent("planner", tools=[add], output=Plan), "Add 40 and 2, then plan.")
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert result.outputs["plan"] == Plan(title="sum", steps=["42"], risk=0)
    first = fake_anthropic.requests[0].body or {}
    assert first["tools"][0]["name"] == "add" and "output_config" in first
