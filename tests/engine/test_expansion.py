"""Growing a running graph: an expansion edge delivers its output, or is refused up front.

A node never runs without an input it depends on (issue 12, item 2).
"""

from __future__ import annotations

from typing import Any

from dagagents import Agent, Expansion, Graph, Script, SimulatedProvider, Step
from dagagents.providers.base import Request

FAST = dict(ttft=0.0, tokens_per_second=1e9, jitter=0.0)


def _fan_out(*names: str) -> Any:
    """An expand hook adding one Step per name, each wired into `join`."""

    def grow(_: Any) -> Expansion:
        nodes = [Step(name=n, fn=(lambda n=n: f"out of {n}")) for n in names]
        return Expansion(nodes=nodes, edges=[(n, "join") for n in names])

    return grow


def test_an_expansion_edge_delivers_its_output_into_kwargs_of_a_waiting_step(
    tmp_path: Any,
) -> None:
    g = Graph("fan-in")
    g.add_step("plan", lambda: "plan", expand=_fan_out("a", "b"))
    received: dict[str, Any] = {}

    def join(plan: str, **outputs: Any) -> list[str]:
        received.update(outputs, plan=plan)
        return sorted(outputs)

    g.add_step("join", join)
    result = g.run(store=tmp_path / "st")
    assert result.ok, result.errors
    assert received == {"plan": "plan", "a": "out of a", "b": "out of b"}
    assert result.outputs["join"] == ["a", "b"]
    # The delivered inputs are part of join's checkpoint: a rerun is all cached, same output.
    again = g.run(store=tmp_path / "st")
    assert set(again.status.values()) == {"cached"}
    assert again.outputs["join"] == ["a", "b"]


def test_an_expansion_edge_delivers_its_output_into_the_matching_parameter() -> None:
    g = Graph("named")
    g.add_step("plan", lambda: "plan", expand=_fan_out("extra"))

    def join(plan: str, extra: str = "missing") -> str:
        return f"{plan}+{extra}"

    g.add_step("join", join)
    result = g.run(store=None)
    assert result.outputs["join"] == "plan+out of extra"


def test_an_expansion_edge_into_an_agent_task_becomes_labelled_context() -> None:
    prompts: dict[str, str] = {}

    def capture(request: Request) -> str:
        prompts[request.node or ""] = request.messages[-1]["content"]
        return "summary"

    g = Graph("agent-fan-in", simulator=SimulatedProvider(**FAST, scripts=[Script(capture)]))
    g.add_step("plan", lambda: "plan", expand=_fan_out("facts"))
    g.task("join", Agent("writer"), "Summarise the plan: {plan}", depends_on=["plan"])
    result = g.run(store=None)
    assert result.ok, result.errors
    assert prompts["join"].startswith("Summarise the plan: plan")
    assert '<input from="facts">\nout of facts\n</input>' in prompts["join"]


def test_an_expansion_edge_into_a_step_that_cannot_receive_it_is_refused_in_one_sentence() -> None:
    g = Graph("refused")
    g.add_step("plan", lambda: "plan", expand=_fan_out("a"))
    ran: list[str] = []

    def join(plan: str) -> str:
        ran.append(plan)
        return plan

    g.add_step("join", join)
    result = g.run(store=None)
    assert result.status["plan"] == "failed"
    assert result.status["join"] == "skipped"
    assert ran == []  # never ran without an input it depends on
    error = result.errors["plan"]
    assert error == (
        "expansion from node 'plan' adds an edge from 'a' into step 'join', which has no "
        "parameter 'a' and no **kwargs to receive its output; expansion rejected"
    )


def test_an_expansion_edge_into_a_new_step_is_delivered_too() -> None:
    def grow(_: Any) -> Expansion:
        return Expansion(
            nodes=[
                Step(name="a", fn=lambda: 1),
                Step(name="b", fn=lambda **kw: sorted(kw.items())),
            ],
            edges=[("a", "b")],
        )

    g = Graph("new-target")
    g.add_step("plan", lambda: "plan", expand=grow)
    result = g.run(store=None)
    assert result.outputs["b"] == [("a", 1)]
