"""The graph language through the simulated provider and plain steps: inputs, map, when/optional,
structured placeholders, fan-in, subgraphs and loops, with their checkpoints and their errors."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, dagagents_cmd
from pydantic import BaseModel

from dagagents import Agent, Graph, GraphError, SimulatedProvider, UserError

SIM = SimulatedProvider(time_scale=0)


class Subjects(BaseModel):
    items: list[str]


class Grade(BaseModel):
    score: int
    feedback: str


def events(result: Any, kind: str) -> list[dict[str, Any]]:
    return [e for e in result.events if e["event"] == kind]


def ran(result: Any) -> set[str]:
    """Nodes whose body ran in this run (not cached, not skipped)."""
    return {n for n, s in result.status.items() if s == "done"}


# ------------------------------------------------------------------------ inputs
def jokes_graph(calls: list[str] | None = None) -> Graph:
    sim = SimulatedProvider(time_scale=0)
    sim.script(lambda req: Subjects(items=["mice", "yarn", "boxes"]), agent="planner")
    g = Graph("jokes", output="best", simulator=sim)
    g.input("topic")
    g.task("subjects", Agent("planner"), "Three subjects about {topic}.", output=Subjects)
    g.map("jokes", Agent("joker"), "A joke about {item} (topic: {topic}).", over="subjects.items")

    @g.step
    def best(jokes: list[str]) -> str:
        if calls is not None:
            calls.append("best")
        return max(jokes, key=len)

    return g


def test_readme_example_runs_and_gives_the_output() -> None:
    result = jokes_graph().run(inputs={"topic": "cats"})
    assert result.ok, result.errors
    assert set(result.items("jokes")) == {"jokes[0]", "jokes[1]", "jokes[2]"}
    jokes = result.outputs["jokes"]
    assert len(jokes) == 3 and "mice" in jokes[0] and "yarn" in jokes[1] and "boxes" in jokes[2]
    assert result.output == max(jokes, key=len)


def test_input_value_is_part_of_the_key_of_its_readers_only() -> None:
    g = Graph("inp", output="shout")
    g.input("topic")
    g.input("n", default=2, type=int)

    @g.step
    def shout(topic: str) -> str:
        return topic.upper()

    @g.step
    def count(n: int) -> int:
        return n * 10

    first = g.run(inputs={"topic": "cats"})
    assert first.output == "CATS" and first.outputs["count"] == 20
    again = g.run(inputs={"topic": "dogs"})
    assert again.output == "DOGS"
    assert ran(again) == {"topic", "shout"}
    assert again.status["count"] == "cached"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "input 'topic' is required"),
        ({"topic": "x", "topc": "y"}, "unknown input 'topc' (its inputs: topic, n)"),
        ({"topic": "x", "n": "many"}, "input 'n' = 'many' is not a valid int"),
    ],
)
def test_bad_inputs_are_one_sentence_before_anything_runs(
    inputs: dict[str, Any], message: str, tmp_path: Path
) -> None:
    g = Graph("inp")
    g.input("topic")
    g.input("n", default=2, type=int)
    g.add_step("use", lambda topic, n: topic * n)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        g.run(inputs=inputs, store=tmp_path / "s")
    assert not (tmp_path / "s" / "runs").exists() or not list((tmp_path / "s" / "runs").iterdir())


def test_cli_inputs_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "x.py").write_text(
        "from dagagents import Graph\n"
        "graph = Graph('x', output='shout')\n"
        "graph.input('topic')\n"
        "graph.input('n', default=2, type=int)\n"
        "@graph.step\n"
        "def shout(topic: str, n: int) -> str:\n"
        "    return topic.upper() * n\n"
    )
    (tmp_path / "in.json").write_text('{"topic": "ab", "n": 3}')
    ok = subprocess.run(
        dagagents_cmd("run", "x.py", "--inputs", "in.json", "--input", "n=1", "-q"),
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        dagagents_cmd("run", "x.py", "--input", "n=2", "-q"),
        env=cli_env(),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "error: graph 'x': input 'topic' is required (pass inputs={'topic': ...} "
        "or --input topic=...)."
    )
    assert "Traceback" not in bad.stderr


# -------------------------------------------------------------------------- maps
def list_graph(calls: list[Any], *, index: bool = False) -> Graph:
    g = Graph("m", output="total")
    g.input("words", type=list[str])

    if index:

        def shout(item: str, index: int) -> str:
            calls.append(item)
            return f"{index}:{item.upper()}"
    else:

        def shout(item: str) -> str:
            calls.append(item)
            return item.upper()

    g.map("loud", shout, over="words")

    @g.step
    def total(loud: list[str]) -> str:
        return ",".join(loud)

    return g


def test_map_items_are_checkpointed_by_content() -> None:
    calls: list[Any] = []
    g = list_graph(calls)
    first = g.run(inputs={"words": ["a", "b", "c"]})
    assert first.output == "A,B,C" and sorted(calls) == ["a", "b", "c"]
    calls.clear()
    added = g.run(inputs={"words": ["a", "b", "c", "d"]})
    assert added.output == "A,B,C,D" and calls == ["d"]
    assert {n for n in ran(added) if n.startswith("loud[")} == {"loud[3]", "loud[*]"}
    calls.clear()
    reordered = g.run(inputs={"words": ["d", "c", "b", "a"]})
    assert reordered.output == "D,C,B,A" and calls == []
    assert all(reordered.status[f"loud[{i}]"] == "cached" for i in range(4))


def test_map_with_index_is_keyed_by_position() -> None:
    calls: list[Any] = []
    g = list_graph(calls, index=True)
    assert g.run(inputs={"words": ["a", "b"]}).output == "0:A,1:B"
    calls.clear()
    assert g.run(inputs={"words": ["b", "a"]}).output == "0:B,1:A" and sorted(calls) == ["a", "b"]


def test_map_over_empty_list_and_over_too_many() -> None:
    calls: list[Any] = []
    g = list_graph(calls)
    assert g.run(inputs={"words": []}).output == ""
    small = Graph("m2")
    small.input("words")
    small.map("loud", lambda item: item, over="words", max_items=2)
    result = small.run(inputs={"words": ["a", "b", "c"]})
    assert result.status["loud"] == "failed"
    assert result.errors["loud"] == ("map 'loud': over 'words' has 3 items, more than max_items=2.")


def test_failed_item_fails_the_map_naming_it_and_siblings_are_kept() -> None:
    g = Graph("m3")
    g.input("n", type=list[int])
    seen: list[int] = []

    def inv(item: int) -> float:
        seen.append(item)
        return 1 / item

    g.map("inv", inv, over="n")
    g.add_step("after", lambda inv: sum(inv))
    result = g.run(inputs={"n": [1, 0, 4]})
    assert result.status["inv[1]"] == "failed"
    assert result.status["inv[0]"] == "done" and result.status["inv[2]"] == "done"
    assert result.status["inv"] == "failed"
    assert result.errors["inv"].startswith("item 'inv[1]' failed: ZeroDivisionError")
    assert result.status["after"] == "skipped"
    seen.clear()
    rerun = g.run(inputs={"n": [1, 0, 4]}, rerun=["inv[2]"])
    assert sorted(seen) == [0, 4]  # the failed item again, and the one named by --rerun
    assert rerun.status["inv[0]"] == "cached"


def test_fan_in_with_var_keyword_gets_every_item() -> None:
    g = Graph("fan", output="join")
    g.input("xs")
    g.map("sq", lambda item: item * item, over="xs")
    got: dict[str, Any] = {}

    def join(**outputs: Any) -> int:
        got.update(outputs)
        return sum(outputs["sq"])

    g.add_step("join", join, depends_on=["sq", "xs"])
    assert g.run(inputs={"xs": [1, 2, 3]}).output == 14
    assert set(got) == {"sq", "xs"}


def test_map_agent_items_use_item_fields() -> None:
    class Person(BaseModel):
        name: str
        age: int

    sim = SimulatedProvider(time_scale=0)
    sim.script(lambda req: req.messages[-1]["content"].upper(), agent="echo")
    g = Graph("people", simulator=sim)
    g.input("people", type=list[Person])
    g.map("hello", Agent("echo"), "Greet {item.name}, {item.age}.", over="people")
    result = g.run(
        inputs={"people": [{"name": "ada", "age": 36}, {"name": "alan", "age": 41}]},
        provider="simulated",
    )
    assert result.ok, result.errors
    assert result.outputs["hello"] == ["GREET ADA, 36.", "GREET ALAN, 41."]


# ----------------------------------------------------------------- when/optional
def routing_graph(log: list[str]) -> Graph:
    g = Graph("route", output="answer")
    g.input("kind")

    @g.step
    def route(kind: str) -> str:
        return kind

    @g.step(when=lambda route: route == "poem")
    def poem(route: str) -> str:
        log.append("poem")
        return "a poem"

    @g.step(when=lambda route: route == "joke")
    def joke(route: str) -> str:
        log.append("joke")
        return "a joke"

    @g.step
    def needs_poem(poem: str) -> str:
        log.append("needs_poem")
        return poem + "!"

    @g.step
    def answer(poem: str | None = None, joke: str | None = None) -> str:
        return poem or joke or "nothing"

    return g


def test_condition_false_skips_at_zero_cost_and_optional_join_gets_none() -> None:
    log: list[str] = []
    result = routing_graph(log).run(inputs={"kind": "joke"})
    assert result.ok, result.errors
    assert result.output == "a joke" and log == ["joke"]
    assert result.status["poem"] == "skipped" and result.status["needs_poem"] == "skipped"
    skipped = {e["node"]: e["because"] for e in events(result, "node_skipped")}
    assert skipped == {"poem": "condition false", "needs_poem": "condition false"}
    started = [e["node"] for e in events(result, "node_start")]
    assert "poem" not in started and "needs_poem" not in started
    assert result.records["poem"].cost_usd == 0
    other = routing_graph(log).run(inputs={"kind": "poem"})
    assert other.output == "a poem" and other.status["needs_poem"] == "done"
    again = routing_graph(log).run(inputs={"kind": "joke"})
    assert again.output == "a joke" and again.status["answer"] == "cached"


def test_optional_task_dependency_renders_as_none() -> None:
    sim = SimulatedProvider(time_scale=0)
    sim.script(lambda req: req.messages[-1]["content"], agent="echo")
    g = Graph("opt", simulator=sim)
    g.input("go", default=False)
    g.add_step("maybe", lambda go: "yes", when=lambda go: go)
    g.task("say", Agent("echo"), "Got: {maybe}", optional=["maybe"])
    result = g.run(provider="simulated")
    assert result.ok, result.errors
    assert result.outputs["say"] == "Got: (none)"


def test_condition_that_raises_fails_the_node_in_one_sentence() -> None:
    g = Graph("bad")
    g.input("x", default=1)
    g.add_step("y", lambda x: x, when=lambda x: x.nope)
    result = g.run()
    assert result.status["y"] == "failed"
    assert result.errors["y"] == (
        "node 'y': its when= condition raised AttributeError: 'int' object has no attribute 'nope'."
    )


# ---------------------------------------------------------- structured fields
def test_structured_placeholder_checked_against_declared_type() -> None:
    g = Graph("s")
    g.task("grade", Agent("grader"), "Grade it.", output=Grade)
    g.task("fix", Agent("fixer"), "Fix: {grade.feedbak}", depends_on=["grade"])
    with pytest.raises(GraphError) as info:
        g.validate()
    assert str(info.value) == (
        "graph 's': node 'fix': prompt placeholder '{grade.feedbak}' names no field 'feedbak' "
        "of 'grade' (Grade has score, feedback)."
    )


def test_structured_placeholder_fills_from_the_model_and_json() -> None:
    sim = SimulatedProvider(time_scale=0)
    sim.script(Grade(score=3, feedback="shorter"), agent="grader")
    sim.script(lambda req: req.messages[-1]["content"], agent="echo")
    g = Graph("s", simulator=sim)
    g.task("grade", Agent("grader"), "Grade it.", output=Grade)
    g.add_step("data", lambda: {"items": ["x", "y"]})
    g.task("fix", Agent("echo"), "Fix: {grade.feedback} / {data.items[1]}", depends_on=["grade"])
    g.nx.add_edge("data", "fix")
    g.specs["fix"] = g.specs["fix"].model_copy(update={"depends_on": ("grade", "data")})
    result = g.run(provider="simulated")
    assert result.ok, result.errors
    assert result.outputs["fix"] == "Fix: shorter / y"


def test_undeclared_structure_fails_before_the_call_is_made() -> None:
    sim = SimulatedProvider(time_scale=0)
    sim.script(lambda req: req.messages[-1]["content"], agent="echo")
    g = Graph("s2", simulator=sim)
    g.add_step("data", lambda: {"items": ["x"]})
    g.task("use", Agent("echo"), "Use {data.itemz}", depends_on=["data"])
    result = g.run(provider="simulated")
    assert result.status["use"] == "failed"
    assert result.errors["use"] == (
        "node 'use': prompt placeholder '{data.itemz}' has no 'itemz' in 'data' "
        "(its fields are items)."
    )
    assert result.records["use"].calls == 0 and result.records["use"].cost_usd == 0


# --------------------------------------------------------------------- subgraphs
def research_graph() -> Graph:
    inner = Graph("research", output="summary")
    inner.input("topic")

    @inner.step
    async def facts(topic: str) -> list[str]:
        return [f"{topic} fact"]

    @inner.step
    def summary(facts: list[str]) -> str:
        return "; ".join(facts)

    return inner


def test_subgraph_is_namespaced_and_yields_its_output() -> None:
    outer = Graph("outer", output="final")
    outer.input("topic")
    outer.subgraph("research", research_graph(), inputs={"topic": "topic"})

    @outer.step
    def final(research: str) -> str:
        return research.upper()

    result = outer.run(inputs={"topic": "cats"})
    assert result.ok, result.errors
    assert result.output == "CATS FACT"
    assert result.outputs["research.summary"] == "cats fact"
    assert result.records["research.facts"].depends_on == ("topic",)


def test_subgraph_has_no_barrier() -> None:
    """A subgraph node starts while a node outside it, started earlier, still runs."""
    inner = Graph("inner", output="b")
    inner.input("x")

    @inner.step
    async def a(x: int) -> int:
        return x + 1

    @inner.step
    async def b(a: int) -> int:
        return a + 1

    outer = Graph("outer")
    gate = asyncio.Event()

    @outer.step
    async def start() -> int:
        return 1

    @outer.step
    async def slow(start: int) -> int:
        await asyncio.wait_for(gate.wait(), 10)
        return 0

    outer.subgraph("sub", inner, inputs={"x": "start"})

    @outer.step
    async def release(sub: int) -> int:
        gate.set()
        return sub

    result = outer.run(concurrency=4)
    assert result.ok, result.errors
    order = [
        (e["event"], e["node"])
        for e in result.events
        if e["event"] in ("node_start", "node_complete")
    ]
    # `slow` holds until `release` (after the whole subgraph) runs: the subgraph's nodes ran
    # while a node outside it was in flight.
    assert order.index(("node_start", "slow")) < order.index(("node_start", "sub.b"))
    assert order.index(("node_complete", "sub.b")) < order.index(("node_complete", "slow"))


def test_subgraph_errors() -> None:
    outer = Graph("outer")
    outer.input("topic")
    with pytest.raises(GraphError, match="declares no input 'subject'"):
        outer.subgraph("research", research_graph(), inputs={"subject": "topic"})
    with pytest.raises(GraphError, match="input 'topic' of graph 'research' is required"):
        outer.subgraph("research", research_graph())
    outer.add_step("research.summary", lambda: 1)
    with pytest.raises(GraphError, match="node 'research.summary' clashes"):
        outer.subgraph("research", research_graph(), inputs={"topic": "topic"})


# ------------------------------------------------------------------------- loops
def refine_body(calls: list[str]) -> Graph:
    body = Graph("refine", output="draft")
    body.input("feedback", default="")

    @body.step
    def draft(feedback: str) -> str:
        calls.append(feedback)
        return "draft" + feedback

    @body.step
    def grade(draft: str) -> Grade:
        return Grade(score=len(draft), feedback="+")

    return body


def test_loop_rounds_carry_until_and_output() -> None:
    calls: list[str] = []
    g = Graph("lp", output="refine")
    g.loop(
        "refine",
        refine_body(calls),
        until=lambda grade: grade.score >= 6,
        max_rounds=5,
        carry={"feedback": "grade.feedback"},
    )
    result = g.run()
    assert result.ok, result.errors
    assert result.rounds("refine") == ["draft", "draft+"]
    assert result.output == "draft+"
    assert "refine[3].draft" not in result.status
    assert not [e for e in events(result, "warning") if "max_rounds" in e["message"]]


def test_loop_reaching_max_rounds_is_reported_and_raising_it_reruns_no_round() -> None:
    calls: list[str] = []

    def build(rounds: int) -> Graph:
        g = Graph("lp2", output="refine")
        g.loop(
            "refine",
            refine_body(calls),
            until=lambda grade: grade.score >= 100,
            max_rounds=rounds,
            carry={"feedback": "draft"},
        )
        return g

    first = build(2).run()
    assert first.ok and len(first.rounds("refine")) == 2
    (warning,) = [e for e in events(first, "warning") if "max_rounds" in e["message"]]
    assert warning["node"] == "refine[2]"
    assert warning["message"].startswith("loop 'refine' reached max_rounds=2")
    calls.clear()
    more = build(3).run()
    assert len(more.rounds("refine")) == 3
    assert calls == ["draftdraft"]  # only round 3's body ran
    assert more.status["refine[1].draft"] == "cached" and more.status["refine[2].draft"] == "cached"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_rounds": 0}, "loop 'r': max_rounds must be at least 1 (got 0)."),
        ({"max_rounds": 2, "carry": {"fb": "draft"}}, "carry names 'fb', which is not an input"),
        (
            {"max_rounds": 2, "carry": {"feedback": "grad.feedback"}},
            "carry 'feedback' reads 'grad.feedback', but body 'refine' has no node 'grad'",
        ),
        (
            {"max_rounds": 2, "carry": {"feedback": "grade.feedbak"}},
            "carry 'grade.feedbak' names no field 'feedbak' of 'grade'",
        ),
        ({"max_rounds": 2, "until": lambda grad: True}, "until parameter 'grad' names no node"),
    ],
)
def test_loop_validation(kwargs: dict[str, Any], message: str) -> None:
    g = Graph("g")
    with pytest.raises(GraphError) as info:
        g.loop("r", refine_body([]), **kwargs)
    assert message in str(info.value)


# --------------------------------------------------------------------- validation
def test_validation_sentences() -> None:
    g = Graph("v")
    g.add_step("nums", lambda: [1])
    g.map("m", lambda item: item, over="numz")
    with pytest.raises(GraphError, match="node 'm\\[\\*\\]' depends on unknown node 'numz'"):
        g.validate()
    g2 = Graph("v2")
    g2.task("subjects", Agent("p"), "x", output=Subjects)
    g2.map("m", Agent("j"), "{item}", over="subjects.itemz")
    with pytest.raises(GraphError) as info:
        g2.validate()
    assert "over 'subjects.itemz' names no field 'itemz' of 'subjects'" in str(info.value)
    g3 = Graph("v3")
    g3.add_step("a", lambda: 1)
    g3.add_step("b", lambda a: a, when=lambda c: c)
    with pytest.raises(GraphError) as info:
        g3.validate()
    assert str(info.value) == (
        "graph 'v3': node 'b' condition parameter 'c' is not one of its dependencies (a)."
    )


def test_keys_include_the_condition_code() -> None:
    def build(pred: Any) -> Graph:
        g = Graph("k")
        g.add_step("a", lambda: 1)
        g.add_step("b", lambda a: a + 1, when=pred)
        return g

    build(lambda a: a > 0).run()
    again = build(lambda a: a > -1).run()
    assert again.status["a"] == "cached" and again.status["b"] == "done"


# --------------------------------------------------------------------- rendering
def test_render_folds_maps_clusters_loops_and_subgraphs_and_greys_condition_false(
    tmp_path: Path,
) -> None:
    from dagagents.observe.render import diagram_from_graph, to_dot, to_mermaid
    from dagagents.observe.summary import load_run

    g = Graph("all")
    g.input("topic")
    g.input("words")
    g.map("loud", lambda item: item.upper(), over="words")
    g.subgraph("research", research_graph(), inputs={"topic": "topic"})
    g.loop(
        "refine",
        refine_body([]),
        until=lambda grade: grade.score >= 6,
        max_rounds=3,
        carry={"feedback": "grade.feedback"},
    )
    g.add_step("never", lambda topic: 1, when=lambda topic: False)
    g.add_step("final", lambda loud, research, refine, never=None: 1)
    before = to_mermaid(diagram_from_graph(g))
    assert '[["loud  ×N<br/>map"]]' in before and "loud[*]" not in before
    result = g.run(inputs={"topic": "t", "words": ["a", "b"]}, store=tmp_path / "s")
    assert result.ok, result.errors
    diagram = diagram_from_graph(g, load_run(result.run_id, tmp_path / "s"))
    mermaid = to_mermaid(diagram)
    assert '[["loud  ×2<br/>map' in mermaid and "loud[0]" not in mermaid
    assert 'subgraph c0 ["subgraph research"]' in mermaid
    assert 'subgraph c1 ["loop refine"]' in mermaid and "refine[2].draft" in mermaid
    assert "class n" in mermaid and " conditionfalse" in mermaid.split("classDef conditionfalse")[1]
    dot = to_dot(diagram).source
    assert "shape=box3d" in dot and "cluster_0" in dot and "cluster_1" in dot
    never = next(line for line in dot.splitlines() if line.strip().startswith("never "))
    assert "#e0e0e0" in never and "condition false" in never


def test_trace_summary_names_maps_loops_and_condition_skips(tmp_path: Path) -> None:
    from dagagents.observe.summary import load_run, summarize

    g = Graph("sm")
    g.input("words", default=["a", "b", "c"])
    g.map("loud", lambda item: item.upper(), over="words")
    g.loop(
        "refine",
        refine_body([]),
        until=lambda grade: grade.score >= 60,
        max_rounds=2,
        carry={"feedback": "grade.feedback"},
    )
    g.add_step("never", lambda words: 1, when=lambda words: False)
    result = g.run(store=tmp_path / "s")
    assert result.ok, result.errors
    summary = summarize(load_run(result.run_id, tmp_path / "s"))
    assert summary.structure == [
        "map loud: 3 items (done)",
        "loop refine: 2 rounds, reached max_rounds without until holding",
        "condition false (skipped at zero cost): never",
    ]
    assert ("never", "condition false") in summary.skipped


def test_a_graph_file_embeds_another_graph_files_graph(tmp_path: Path) -> None:
    (tmp_path / "inner.py").write_text(
        "from dagagents import Graph\n"
        "graph = Graph('inner', output='shout')\n"
        "graph.input('word')\n"
        "graph.add_step('shout', lambda word: word.upper() + '!')\n"
    )
    (tmp_path / "outer.py").write_text(
        "from dagagents import Graph\n"
        "from inner import graph as inner\n"
        "graph = Graph('outer', output='twice')\n"
        "graph.input('word')\n"
        "graph.subgraph('loud', inner, inputs={'word': 'word'})\n"
        "graph.add_step('twice', lambda loud: loud * 2)\n"
    )
    done = subprocess.run(
        dagagents_cmd("run", "outer.py", "--input", "word=hi", "-q", "--trace", "t.jsonl"),
        env=cli_env(),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert Graph.load(tmp_path / "outer.py").run(inputs={"word": "hi"}).output == "HI!HI!"


def test_estimate_takes_map_size_from_history_else_states_an_assumption(tmp_path: Path) -> None:
    from dagagents import Store, estimate

    g = jokes_graph()
    store = Store(tmp_path / "s")
    before = estimate(g, store=store)
    assert before.assumptions == [
        "map 'jokes' assumed to have 3 items (no earlier run shows its size)"
    ]
    assert {n for n in before.nodes if n.startswith("jokes[")} == {
        "jokes[*]",
        "jokes[0]",
        "jokes[1]",
        "jokes[2]",
    }
    assert not before.unseen_expansions
    sim = SimulatedProvider(time_scale=0)
    sim.script(lambda req: Subjects(items=[str(i) for i in range(5)]), agent="planner")
    g.simulator = sim
    assert g.run(inputs={"topic": "cats"}, store=store).ok
    after = estimate(g, store=store)
    assert after.assumptions == []
    assert len([n for n in after.nodes if n.startswith("jokes[") and n != "jokes[*]"]) == 5


def test_until_code_is_part_of_the_round_keys_but_not_of_the_body() -> None:
    calls: list[str] = []

    def build(until: Any) -> Graph:
        g = Graph("lp3", output="refine")
        g.loop("refine", refine_body(calls), until=until, max_rounds=1)
        return g

    build(lambda grade: grade.score > 1).run()
    calls.clear()
    again = build(lambda grade: grade.score > 2).run()
    assert again.status["refine[1]"] == "done" and again.status["refine[1].draft"] == "cached"
    assert calls == []


def test_map_with_a_false_condition_skips_the_whole_map() -> None:
    g = Graph("mw", output="out")
    g.input("xs", default=[1, 2])
    g.input("go", default=False)
    g.map("sq", lambda item: item * item, over="xs", depends_on=["go"], when=lambda go: go)

    @g.step
    def out(sq: list[int] | None = None) -> str:
        return "none" if sq is None else str(sq)

    assert g.run().output == "none"
    assert g.run(inputs={"go": True}).output == "[1, 4]"


def test_cli_bad_language_in_a_graph_file_is_one_sentence_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(
        "from dagagents import Graph\n"
        "body = Graph('body', output='a')\n"
        "body.input('x', default=1)\n"
        "body.add_step('a', lambda x: x)\n"
        "graph = Graph('bad')\n"
        "graph.loop('l', body, max_rounds=2, carry={'y': 'a'})\n"
    )
    done = subprocess.run(
        dagagents_cmd("run", "bad.py", "-q"), env=cli_env(), capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: bad.py: graph 'bad': loop 'l': carry names 'y', which is not an input of body "
        "'body' (its inputs: x)."
    )


def test_a_subgraph_with_a_map_and_a_loop_embedded_twice() -> None:
    inner = Graph("inner", output="total")
    inner.input("xs")
    inner.map("sq", lambda item: item * item, over="xs")
    inner.loop(
        "refine",
        refine_body([]),
        until=lambda grade: grade.score >= 6,
        max_rounds=3,
        carry={"feedback": "grade.feedback"},
    )

    @inner.step
    def total(sq: list[int], refine: str) -> str:
        return f"{sum(sq)}:{refine}"

    outer = Graph("outer", output="final")
    outer.input("nums")
    outer.subgraph("a", inner, inputs={"xs": "nums"})
    outer.subgraph("b", inner, inputs={"xs": "nums"})
    outer.add_step("final", lambda a, b: a + "|" + b)
    result = outer.run(inputs={"nums": [1, 2, 3]})
    assert result.ok, result.errors
    assert result.output == "14:draft+|14:draft+"
    assert result.rounds("b.refine") == ["draft", "draft+"]
    assert list(result.items("a.sq").values()) == [1, 4, 9]
