"""Only the template the user wrote is a template: braces in model output, in dependency
outputs and in JSON pasted into a prompt are text, never placeholders."""

from __future__ import annotations

from dagagents import Agent, Graph, Script, SimulatedProvider
from dagagents.model.nodes import AgentTask, Expansion, prompt_placeholders
from dagagents.providers.base import Request

FAST = {"ttft": 0.0, "tokens_per_second": 1e9, "jitter": 0.0}
MODEL_TEXT = 'Compute {N, D} for {"n": 3, "d": [1, 2]}; keep {} and {0} and { spaced }.'


def capturing() -> tuple[SimulatedProvider, dict[str, str]]:
    prompts: dict[str, str] = {}

    def capture(request: Request) -> str:
        prompts[request.node or ""] = request.messages[-1]["content"]
        return f"answer from {request.node}"

    return SimulatedProvider(**FAST, scripts=[Script(respond=capture)]), prompts


def test_model_text_with_json_in_an_expansion_is_not_parsed_as_a_template() -> None:
    sim, prompts = capturing()
    g = Graph("expand_json", simulator=sim)
    agent = Agent("worker")

    def grow(text: str) -> Expansion:
        return Expansion(nodes=[AgentTask(name="work", agent=agent, prompt=f"Do this: {text}")])

    g.add_step("planner", lambda: MODEL_TEXT, expand=grow)
    result = g.run(store=None)
    assert result.ok, result.errors
    assert prompts["work"] == f"Do this: {MODEL_TEXT}"


def test_dependency_output_is_filled_in_once_and_never_rescanned() -> None:
    sim, prompts = capturing()
    g = Graph("rescan", simulator=sim)
    g.add_step("raw", lambda: "see {other} and {{x}}")
    g.add_step("other", lambda: "OTHER")
    g.task("use", Agent("w"), "A: {raw} B: {other} C: {{raw}}", depends_on=["raw", "other"])
    result = g.run(store=None)
    assert result.ok, result.errors
    assert prompts["use"] == "A: see {other} and {{x}} B: OTHER C: {raw}"


def test_json_pasted_into_a_users_template_is_text() -> None:
    sim, prompts = capturing()
    g = Graph("pasted", simulator=sim)
    g.add_step("data", lambda: "42")
    g.task(
        "ask",
        Agent("w"),
        'Fill {"answer": ?} using {data}; sets look like {N, D}.',
        depends_on=["data"],
    )
    g.validate()
    assert prompt_placeholders(g["ask"].prompt) == ["data"]
    result = g.run(store=None)
    assert result.ok, result.errors
    assert prompts["ask"].startswith('Fill {"answer": ?} using 42; sets look like {N, D}.')


def test_a_misspelt_placeholder_in_a_users_template_is_still_an_error() -> None:
    import pytest

    from dagagents.errors import GraphError

    g = Graph("typo")
    g.add_step("research", lambda: "r")
    g.task("sum", Agent("w"), "Summarise {reserch}", depends_on=["research"])
    with pytest.raises(GraphError, match=r"placeholder '\{reserch\}'"):
        g.validate()
