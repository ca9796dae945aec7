"""`estimate` counts as coordination overhead only what is coordination: an Orchestrator's
planner and synthesizer (or nodes their author tagged so), never any fan-in or expanding node."""

from __future__ import annotations

from dagagents import Agent, Expansion, Graph, Orchestrator, Step, Store
from dagagents.observe.estimate import estimate


def test_a_fan_in_node_is_work_not_synthesis_overhead() -> None:
    g = Graph("plain_fan_in")
    worker = Agent("worker", max_tokens=64)
    g.task("a", worker, "part a")
    g.task("b", worker, "part b")
    g.task("merge", Agent("boss", max_tokens=64), "Merge.", depends_on=["a", "b"])

    def more(n: int) -> Expansion:
        return Expansion(nodes=[Step(name=f"extra{i}", fn=lambda i=i: i) for i in range(n)])

    g.add_step("grow", lambda: 2, expand=more)
    e = estimate(g, concurrency=4, store=Store(".dagagents"))
    assert e.coordination == []
    assert {n.role for n in e.nodes.values()} == {"work"}


def test_an_orchestrators_planner_and_synthesizer_are_the_overhead() -> None:
    orchestrator = Orchestrator({"researcher": Agent("researcher", max_tokens=64)})
    g = orchestrator.graph("Research heat pumps")
    e = estimate(g, concurrency=4, store=Store(".dagagents"))
    assert sorted((n.name, n.role) for n in e.coordination) == [
        ("plan", "planner"),
        ("synthesis", "synthesis"),
    ]


def test_a_node_its_author_tags_as_synthesis_counts() -> None:
    g = Graph("tagged")
    g.task("a", Agent("w", max_tokens=64), "part a")
    g.task(
        "join", Agent("boss", max_tokens=64), "Join.", depends_on=["a"], tags={"role": "synthesis"}
    )
    e = estimate(g, concurrency=2, store=Store(".dagagents"))
    assert [n.name for n in e.coordination] == ["join"]
