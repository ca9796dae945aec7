"""The graph language end to end through the real `anthropic` SDK against the fake Messages API:
inputs, map over a structured output, when-routing, loops with carried structured fields."""

from __future__ import annotations

import itertools
from pathlib import Path

from _anthropic_support import provider_for, run_graph
from pydantic import BaseModel

from dagagents import Agent, Graph
from dagagents.testing import (
    FakeAnthropic,
    fake_anthropic_fixture,  # noqa: F401 (the `fake_anthropic` fixture)
    json_reply,
    last_user_text,
)


class Subjects(BaseModel):
    items: list[str]


class Route(BaseModel):
    kind: str


class Grade(BaseModel):
    score: int
    feedback: str


def prompts(api: FakeAnthropic, start: str) -> list[str]:
    out = []
    for r in api.requests:
        if r.body and r.path.endswith("/messages"):
            text = last_user_text(r.body)
            if text.startswith(start):
                out.append(text)
    return out


def jokes_graph() -> Graph:
    g = Graph("jokes", output="best")
    g.input("topic")
    g.task("subjects", Agent("planner"), "Three subjects about {topic}.", output=Subjects)
    g.map("jokes", Agent("joker"), "A joke about {item} (topic: {topic}).", over="subjects.items")

    @g.step
    def best(jokes: list[str]) -> str:
        return max(jokes, key=len)

    return g


def test_map_over_a_structured_field_item_level_checkpoints(
    fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    lists = iter([["mice", "yarn"], ["mice", "yarn", "boxes"], ["boxes", "yarn", "mice"]])
    fake_anthropic.reply(
        lambda r: json_reply(Subjects(items=next(lists))), pattern="^Three subjects"
    )
    fake_anthropic.reply(lambda r: "Joke: " + last_user_text(r), pattern="^A joke")
    store = tmp_path / "store"
    provider = provider_for(fake_anthropic)
    first = run_graph(jokes_graph(), provider=provider, store=store, inputs={"topic": "cats"})
    assert first.ok, first.errors
    assert first.outputs["jokes"] == [
        "Joke: A joke about mice (topic: cats).",
        "Joke: A joke about yarn (topic: cats).",
    ]
    assert len(prompts(fake_anthropic, "A joke")) == 2
    # The planner answers differently (a fresh run asks it again): one more item.
    grown = run_graph(
        jokes_graph(), provider=provider, store=store, inputs={"topic": "cats"}, rerun=["subjects"]
    )
    assert grown.ok, grown.errors
    assert prompts(fake_anthropic, "A joke")[2:] == ["A joke about boxes (topic: cats)."]
    assert grown.status["jokes[0]"] == "cached" and grown.status["jokes[2]"] == "done"
    # Reordered: no item is asked again.
    reordered = run_graph(
        jokes_graph(), provider=provider, store=store, inputs={"topic": "cats"}, rerun=["subjects"]
    )
    assert reordered.ok, reordered.errors
    assert len(prompts(fake_anthropic, "A joke")) == 3
    assert reordered.outputs["jokes"][0] == "Joke: A joke about boxes (topic: cats)."


def test_routing_asks_only_the_chosen_handler(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply(json_reply(Route(kind="poem")), pattern="^Route")
    fake_anthropic.reply(lambda r: "POEM", pattern="^Write a poem")
    fake_anthropic.reply(lambda r: "JOKE", pattern="^Write a joke")
    g = Graph("routing", output="answer")
    g.input("request")
    g.task("route", Agent("router"), "Route: {request}", output=Route)
    g.task(
        "poem",
        Agent("poet"),
        "Write a poem: {request}",
        depends_on=["route"],
        when=lambda route: route.kind == "poem",
    )
    g.task(
        "joke",
        Agent("joker"),
        "Write a joke: {request}",
        depends_on=["route"],
        when=lambda route: route.kind == "joke",
    )

    @g.step
    def answer(poem: str | None = None, joke: str | None = None) -> str:
        return poem or joke or ""

    result = run_graph(g, provider=provider_for(fake_anthropic), inputs={"request": "cats"})
    assert result.ok, result.errors
    assert result.output == "POEM"
    assert result.status["joke"] == "skipped" and result.records["joke"].cost_usd == 0
    assert prompts(fake_anthropic, "Write a joke") == []


def test_evaluator_optimizer_loop_carries_structured_feedback(
    fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    scores = itertools.count(5, 2)  # 5, 7, 9
    fake_anthropic.reply(
        lambda r: json_reply(Grade(score=next(scores), feedback="funnier")), pattern="^Grade"
    )
    fake_anthropic.reply(lambda r: "draft for: " + last_user_text(r), pattern="^Write")
    body = Graph("refine", output="joke")
    body.input("topic")
    body.input("feedback", default="none yet")
    body.task("joke", Agent("writer"), "Write a joke about {topic}. Feedback: {feedback}")
    body.task("grade", Agent("grader"), "Grade this joke: {joke}", output=Grade)
    g = Graph("evaluator", output="refine")
    g.input("topic")
    g.loop(
        "refine",
        body,
        until=lambda grade: grade.score >= 8,
        max_rounds=5,
        carry={"feedback": "grade.feedback"},
        inputs={"topic": "topic"},
    )
    store = tmp_path / "store"
    result = run_graph(
        g, provider=provider_for(fake_anthropic), store=store, inputs={"topic": "owls"}
    )
    assert result.ok, result.errors
    assert len(result.rounds("refine")) == 3
    writes = prompts(fake_anthropic, "Write")
    assert writes == [
        "Write a joke about owls. Feedback: none yet",
        "Write a joke about owls. Feedback: funnier",
        "Write a joke about owls. Feedback: funnier",
    ]
    assert result.output == "draft for: " + writes[2]
    before = len(fake_anthropic.requests)
    again = run_graph(
        g, provider=provider_for(fake_anthropic), store=store, inputs={"topic": "owls"}
    )
    assert again.ok and again.output == result.output
    assert len(fake_anthropic.requests) == before


def test_missing_field_fails_before_the_request(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply(lambda r: "ok")
    g = Graph("fields")
    g.add_step("data", lambda: {"items": ["x"]})
    g.task("use", Agent("user"), "Use {data.itemz}", depends_on=["data"])
    result = run_graph(g, provider=provider_for(fake_anthropic))
    assert result.status["use"] == "failed"
    assert "has no 'itemz' in 'data' (its fields are items)" in result.errors["use"]
    assert fake_anthropic.requests == []


def test_subgraph_requests_run_while_a_sibling_outside_is_in_flight(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.latency = lambda body: 1.0 if "slow sibling" in str(body) else 0.0
    fake_anthropic.reply(lambda r: "text for " + last_user_text(r))
    research = Graph("research", output="notes")
    research.input("topic")
    research.task("sources", Agent("researcher"), "Sources on {topic}.")
    research.task("notes", Agent("researcher"), "Notes on {topic} from {sources}")
    g = Graph("outer", output="article")
    g.input("topic")
    g.task("sibling", Agent("writer"), "A slow sibling about {topic}.")
    g.subgraph("research", research, inputs={"topic": "topic"})
    g.task("article", Agent("writer"), "Article: {sibling} {research}")
    result = run_graph(g, provider=provider_for(fake_anthropic), inputs={"topic": "tides"})
    assert result.ok, result.errors
    assert result.outputs["research.notes"].startswith("text for Notes on tides from text for")
    by_prompt = {last_user_text(r.body or {}): r for r in fake_anthropic.requests}
    sibling = by_prompt["A slow sibling about tides."]
    notes = next(r for p, r in by_prompt.items() if p.startswith("Notes on tides"))
    # The second research request was answered while the sibling's (1 s) was still open: no
    # superstep barrier held the subgraph back until the sibling's step ended.
    assert sibling.finished is not None and notes.finished is not None
    assert notes.finished < sibling.finished
