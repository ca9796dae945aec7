"""Resume through the API: what a rerun computes after edits, corruption, `rerun=`, and what
outputs look like when they come back from the store."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from stored import DAMAGE, damage, packed

from dagagents import Agent, Graph, SimulatedProvider, Store
from dagagents.observe.resume import plan_resume
from dagagents.observe.runs import RunResult


class Finding(BaseModel):
    claim: str
    confidence: float


def ran(result: RunResult) -> set[str]:
    """Nodes whose body ran in this run (from the trace, not from our own bookkeeping)."""
    started = {e["node"] for e in result.events if e["event"] == "node_start"}
    assert started == {n for n, s in result.status.items() if s in ("done", "failed")}
    return started


def cached(result: RunResult) -> set[str]:
    hits = {e["node"] for e in result.events if e["event"] == "cache_hit"}
    assert hits == {n for n, s in result.status.items() if s == "cached"}
    return hits


PROMPTS = {
    "scope": "Define the scope of a study of heat pumps.",
    "market": "Size the market within this scope: {scope}",
    "rivals": "Name the competitors within this scope: {scope}",
    "memo": "Write a memo from {market} and {rivals}",
    "aside": "An unrelated fun fact about owls.",
}


def research_graph(prompts: dict[str, str] = PROMPTS) -> Graph:
    g = Graph("research", simulator=SimulatedProvider(time_scale=0))
    agent = Agent("analyst", model="claude-haiku-4-5", max_tokens=120)
    g.task("scope", agent, prompts["scope"])
    g.task("market", agent, prompts["market"], depends_on=["scope"])
    g.task("rivals", agent, prompts["rivals"], depends_on=["scope"])
    g.task("memo", agent, prompts["memo"], depends_on=["market", "rivals"])
    g.task("aside", agent, prompts["aside"])

    @g.step
    def word_count(memo: str) -> int:
        return len(memo.split())

    return g


def test_second_run_is_all_cached_with_same_outputs(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    first = research_graph().run(store=store)
    again = research_graph().run(store=store)
    assert ran(first) == set(first.status) and cached(again) == set(again.status)
    assert again.outputs == first.outputs
    assert again.cost_usd == 0 and sum(r.cost_usd for r in again.records.values()) > 0
    assert again.ok


def test_edited_prompt_reruns_exactly_that_node_and_descendants(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    research_graph().run(store=store)
    edited = research_graph({**PROMPTS, "market": "Size the EU market within: {scope}"})
    expected = {"market"} | nx.descendants(edited.nx, "market")
    assert expected == {"market", "memo", "word_count"}
    assert {n for n, v in plan_resume(edited, Store(store)).items() if v != "cached"} == expected

    result = edited.run(store=store)

    assert ran(result) == expected
    assert cached(result) == set(result.status) - expected
    # And the edit is itself checkpointed: a third run computes nothing.
    assert ran(edited.run(store=store)) == set()


def test_agent_change_invalidates_only_its_nodes(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    g = Graph("two", simulator=SimulatedProvider(time_scale=0))
    a = Agent("a", model="claude-haiku-4-5", system="Be brief.")
    b = Agent("b", model="claude-haiku-4-5")
    g.task("x", a, "one")
    g.task("y", b, "two")
    g.run(store=store)
    g2 = Graph("two", simulator=SimulatedProvider(time_scale=0))
    g2.task("x", a.with_(system="Be very brief."), "one")
    g2.task("y", b, "two")
    assert ran(g2.run(store=store)) == {"x"}


def test_same_output_upstream_reruns_nothing_downstream(tmp_path: Path) -> None:
    """Early cutoff: the edited step reruns, but its output digest is unchanged."""
    store = str(tmp_path / "s")

    def build(version: str) -> Graph:
        g = Graph("cutoff", simulator=SimulatedProvider(time_scale=0))
        agent = Agent("w", model="claude-haiku-4-5", max_tokens=80)

        def numbers() -> list[int]:
            return [3, 1, 2]

        g.add_step("numbers", numbers, version=version)  # `version` marks a behaviour edit
        g.task("explain", agent, "Explain {numbers}", depends_on=["numbers"])

        @g.step
        def total(numbers: list[int], explain: str) -> int:
            return sum(numbers) + len(explain)

        return g

    build("v1").run(store=store)
    result = build("v2").run(store=store)
    assert ran(result) == {"numbers"}
    assert cached(result) == {"explain", "total"}


def test_rerun_recomputes_node_and_only_what_its_new_output_changes(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    counter = tmp_path / "counter"
    counter.write_text("0")

    def build() -> Graph:
        g = Graph("rerun", simulator=SimulatedProvider(time_scale=0))

        @g.step
        def stable() -> str:
            return "same every time"

        @g.step
        def fresh_data() -> int:  # e.g. reads a feed that changed since
            n = int(counter.read_text()) + 1
            counter.write_text(str(n))
            return n

        @g.step
        def after_stable(stable: str) -> str:
            return stable.upper()

        @g.step
        def after_fresh(fresh_data: int) -> int:
            return fresh_data * 10

        return g

    build().run(store=store)
    both = build().run(store=store, rerun=["stable", "fresh_data"])
    assert ran(both) == {"stable", "fresh_data", "after_fresh"}
    assert cached(both) == {"after_stable"}
    assert both.outputs["after_fresh"] == 20

    with pytest.raises(Exception, match="unknown node 'nope'"):
        build().run(store=store, rerun=["nope"])


def test_fresh_ignores_the_store_but_refreshes_it(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    research_graph().run(store=store)
    result = research_graph().run(store=store, fresh=True)
    assert ran(result) == set(result.status)
    assert cached(research_graph().run(store=store)) == set(result.status)


def test_no_store_writes_nothing(tmp_path: Path) -> None:
    result = research_graph().run(store=None)
    assert ran(result) == set(result.status)
    assert not (tmp_path / ".dagagents").exists()


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "files"])
@pytest.mark.parametrize("how", DAMAGE)
def test_corrupt_object_is_warned_about_and_recomputed(
    tmp_path: Path, how: str, packing: bool
) -> None:
    store = Store(tmp_path / "s") if packing else Store(tmp_path / "s", pack_max=0)
    first = research_graph().run(store=store)
    key = first.records["market"].key
    assert key is not None
    assert packed(store, key) == packing
    damage(store, key, how)
    assert plan_resume(research_graph(), store)["market"] == "compute"

    result = research_graph().run(store=store)

    warnings = [e for e in result.events if e["event"] == "warning"]
    assert [w["node"] for w in warnings] == ["market"]
    assert "corrupt" in warnings[0]["message"] and "recomputing" in warnings[0]["message"]
    # Deterministic provider: same answer, so early cutoff keeps everything below cached.
    assert ran(result) == {"market"}
    assert result.outputs == first.outputs
    assert store.verify() == {}
    assert store.get(key) is not None


# ------------------------------------------------------------------- what outputs look like
class Plan(BaseModel):
    steps: list[str]
    findings: list[Finding]


def test_pydantic_outputs_round_trip_to_the_same_type(tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    seen: list[Any] = []

    def build() -> Graph:
        sim = SimulatedProvider(time_scale=0)
        sim.script(
            Plan(steps=["a", "b"], findings=[Finding(claim="c", confidence=0.9)]),
            agent="planner",
        )
        g = Graph("typed", simulator=sim)
        g.task("plan", Agent("planner", model="claude-haiku-4-5", output=Plan), "Plan it.")

        @g.step
        def findings() -> list[Finding]:
            return [Finding(claim="x", confidence=0.1), Finding(claim="y", confidence=0.2)]

        @g.step
        def by_claim(findings: list[Finding]) -> dict[str, Finding]:
            return {f.claim: f for f in findings}

        @g.step
        def check(plan: Plan, findings: list[Finding], by_claim: dict[str, Finding]) -> str:
            seen.append((type(plan), [type(f) for f in findings], type(by_claim["x"])))
            return f"{len(plan.steps)} {len(findings)}"

        return g

    first = build().run(store=store)
    assert first.ok, first.errors
    # Downstream of cached nodes: `check` reruns and must get models, not dicts.
    result = build().run(store=store, rerun=["check"])
    assert cached(result) == {"plan", "findings", "by_claim"}
    assert type(result.outputs["plan"]) is Plan
    assert result.outputs["plan"] == first.outputs["plan"]
    assert [type(f) for f in result.outputs["findings"]] == [Finding, Finding]
    assert type(result.outputs["by_claim"]["y"]) is Finding
    assert seen == [(Plan, [Finding, Finding], Finding)] * 2


def test_model_defined_inside_a_function_round_trips_via_annotation(tmp_path: Path) -> None:
    class Local(BaseModel):
        n: int

    def build() -> Graph:
        g = Graph("local")

        @g.step
        def make() -> Local:
            return Local(n=3)

        return g

    build().run(store=str(tmp_path / "s"))
    result = build().run(store=str(tmp_path / "s"))
    assert cached(result) == {"make"} and result.outputs["make"] == Local(n=3)


def test_model_class_that_cannot_be_found_is_recomputed_not_handed_out_as_dict(
    tmp_path: Path,
) -> None:
    class Hidden(BaseModel):
        n: int

    def build() -> Graph:
        g = Graph("hidden")

        def make():  # no annotation: nothing tells us the class
            return Hidden(n=3)

        g.add_step("make", make)
        return g

    build().run(store=str(tmp_path / "s"))
    result = build().run(store=str(tmp_path / "s"))
    warnings = [e["message"] for e in result.events if e["event"] == "warning"]
    assert len(warnings) == 1 and "Hidden" in warnings[0] and "recomputing" in warnings[0]
    assert ran(result) == {"make"} and type(result.outputs["make"]) is Hidden


def test_unserialisable_step_output_fails_naming_node_and_type(tmp_path: Path) -> None:
    g = Graph("bad")

    class Handle:
        pass

    @g.step
    def ok() -> int:
        return 1

    @g.step
    def leaky(ok: int) -> Any:
        return {"handle": Handle(), "n": ok}

    @g.step
    def below(leaky: Any) -> int:
        return 0

    result = g.run(store=str(tmp_path / "s"))
    assert result.status == {"ok": "done", "leaky": "failed", "below": "skipped"}
    error = result.errors["leaky"]
    assert "node 'leaky'" in error and "dict containing a Handle" in error
    assert "Traceback" not in error
    # Nothing half-written under its key; `ok` is checkpointed and reused.
    assert Store(tmp_path / "s").verify() == {}
    assert cached(g.run(store=str(tmp_path / "s"))) == {"ok"}


def test_fanout_of_identical_prompts_keeps_distinct_answers(tmp_path: Path) -> None:
    """Several nodes asking one agent the same thing are separate samples, not one."""
    store = str(tmp_path / "s")

    def build() -> Graph:
        g = Graph("samples", simulator=SimulatedProvider(time_scale=0))
        for i, name in enumerate(["draft_a", "draft_b"]):
            # Same prompt; the simulator answers per agent name, like sampling would differ.
            g.task(name, Agent(f"writer{i}", model="claude-haiku-4-5"), "Write a tagline.")
        return g

    first = build().run(store=store)
    assert first.outputs["draft_a"] != first.outputs["draft_b"]
    again = build().run(store=store)
    assert cached(again) == {"draft_a", "draft_b"}
    assert again.outputs == first.outputs


def test_partial_steps_resume_and_their_arguments_count(tmp_path: Path) -> None:
    store = str(tmp_path / "s")

    def scaled(factor: int) -> int:
        return 7 * factor

    def build(factor: int) -> Graph:
        g = Graph("partial")
        g.add_step("value", functools.partial(scaled, factor=factor), depends_on=[])
        return g

    build(2).run(store=store)
    assert cached(build(2).run(store=store)) == {"value"}
    changed = build(3).run(store=store)
    assert ran(changed) == {"value"} and changed.outputs["value"] == 21


def test_steps_without_source_resume_in_a_new_process(tmp_path: Path) -> None:
    """A step made with `exec` (a notebook cell, generated code) has no source file; its key
    must not depend on memory addresses or hash seeds, or it would never resume."""
    script = (
        "import sys\n"
        "from dagagents import Graph\n"
        "ns = {}\n"
        'exec(\'def value():\\n    pick = lambda k: k in {"a", "b", "c"}\\n'
        '    return pick("a")\\n\', ns)\n'
        "g = Graph('generated')\n"
        "g.add_step('value', ns['value'], depends_on=[])\n"
        "result = g.run(store=sys.argv[1])\n"
        "print(result.status['value'])\n"
    )
    store = str(tmp_path / "s")
    statuses = [
        subprocess.run(
            [sys.executable, "-c", script, store], capture_output=True, text=True, check=True
        ).stdout.split()[-1]
        for _ in range(2)
    ]
    assert statuses == ["done", "cached"]


def test_memory_store_end_to_end() -> None:
    url = f"memory://e2e-{os.getpid()}-{time.time_ns()}"
    first = research_graph().run(store=url)
    assert first.ok and first.store == url
    second = research_graph().run(store=url)
    assert cached(second) == set(second.status)
    assert second.outputs == first.outputs

    store = Store(url)
    assert len(store.list_runs()) == 2
    manifest = store.read_manifest()
    assert manifest["status"] == "done"
    assert {n["status"] for n in manifest["nodes"].values()} == {"cached"}
    events = [e["event"] for e in store.read_trace()]
    assert events[0] == "run_start" and events[-1] == "run_end"
    assert events.count("cache_hit") == len(second.status)
    assert store.verify() == {}
    assert len(store.iter_objects()) == len(second.status)
    edited = research_graph({**PROMPTS, "rivals": "Who else is selling in {scope}?"})
    assert ran(edited.run(store=url)) == {"rivals", "memo", "word_count"}


def test_expanded_nodes_are_checkpointed_too(tmp_path: Path) -> None:
    from dagagents import Expansion, Step

    store = str(tmp_path / "s")

    def build() -> Graph:
        g = Graph("grow")

        def plan() -> list[str]:
            return ["a", "b"]

        def expand(names: list[str]) -> Expansion:
            def work() -> str:
                return "w"

            return Expansion(
                nodes=[Step(name=f"work_{n}", fn=work, depends_on=("plan",)) for n in names]
            )

        g.add_step("plan", plan, expand=expand)
        return g

    first = build().run(store=store)
    assert ran(first) == {"plan", "work_a", "work_b"}
    assert cached(build().run(store=store)) == {"plan", "work_a", "work_b"}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_edit_reruns_exactly_the_descendants(tmp_path: Path, data: st.DataObject) -> None:
    """On random DAGs: editing one node's prompt reruns that node and its descendants."""
    n = data.draw(st.integers(min_value=2, max_value=8), label="nodes")
    deps = {
        i: sorted(data.draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)))
        if i
        else []
        for i in range(n)
    }
    edited = data.draw(st.integers(min_value=0, max_value=n - 1), label="edited")
    store = f"memory://prop-{os.getpid()}-{time.time_ns()}"

    def build(edit: int | None) -> Graph:
        g = Graph("random", simulator=SimulatedProvider(time_scale=0))
        agent = Agent("a", model="claude-haiku-4-5", max_tokens=40)
        for i in range(n):
            prompt = f"Task {i}" + (" (revised)" if i == edit else "")
            g.task(f"t{i}", agent, prompt, depends_on=[f"t{d}" for d in deps[i]])
        return g

    build(None).run(store=store)
    result = build(edited).run(store=store)
    expected = {f"t{edited}"} | nx.descendants(build(edited).nx, f"t{edited}")
    assert ran(result) == expected
    assert cached(result) == set(result.status) - expected
