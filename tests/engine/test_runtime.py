"""Run-time behaviour users rely on: failures, fail-fast, timeouts, threads, prompts, loading."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dagagents import Agent, Graph, Script, SimulatedProvider
from dagagents.providers.base import Request

FAST = dict(ttft=0.0, tokens_per_second=1e9, jitter=0.0)


def test_failure_skips_descendants_and_names_the_ancestor() -> None:
    g = Graph("f")

    @g.step
    def a() -> int:
        raise ValueError("bad input row 7")

    @g.step
    def b(a: int) -> int:
        return a

    @g.step
    def c(b: int) -> int:
        return b

    @g.step
    def other() -> str:
        return "fine"

    result = g.run(store=None)
    assert result.status == {"a": "failed", "b": "skipped", "c": "skipped", "other": "done"}
    assert result.errors["a"] == "ValueError: bad input row 7"
    assert result.records["c"].because == "a"
    assert result.errors["c"] == "skipped because a"
    assert not result.ok


def test_fail_fast_cancels_in_flight_and_skips_the_rest() -> None:
    g = Graph("ff")
    cancelled: list[str] = []

    async def boom() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("boom")

    async def long() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append("long")
            raise
        return "never"

    g.add_step("boom", boom)
    g.add_step("long", long)
    g.add_step("after", lambda **_: 1, depends_on=["long"])
    result = g.run(concurrency=2, fail_fast=True, store=None)
    assert result.status == {"boom": "failed", "long": "cancelled", "after": "skipped"}
    assert cancelled == ["long"]
    assert "fail_fast" in (result.records["after"].because or "")


def test_fail_fast_cancels_a_node_whose_slot_has_not_begun() -> None:
    # `boom` fails before the loop has run `quiet`'s slot (both start together): `quiet` is
    # cancelled and its body never runs.
    g = Graph("ff-early")
    ran: list[str] = []

    async def boom() -> None:
        raise RuntimeError("boom")

    async def quiet() -> int:
        ran.append("quiet")
        return 1

    g.add_step("boom", boom, estimate=2.0)  # the longer path: taken first
    g.add_step("quiet", quiet, estimate=1.0)
    result = g.run(concurrency=2, fail_fast=True, store=None)
    assert result.status == {"boom": "failed", "quiet": "cancelled"}
    assert ran == []


def test_timeout_fails_only_that_node() -> None:
    g = Graph("t")

    async def slow() -> str:
        await asyncio.sleep(30)
        return "late"

    g.add_step("slow", slow, timeout=0.1)
    g.add_step("quick", lambda: "ok")
    result = g.run(store=None)
    assert result.status == {"slow": "failed", "quick": "done"}
    assert result.errors["slow"] == "timed out after 0.1s"


def test_sync_steps_run_in_threads_concurrently() -> None:
    seen: dict[str, tuple[str, float, float]] = {}
    g = Graph("threads")

    def make(name: str):  # noqa: ANN202
        def body() -> str:
            start = time.perf_counter()
            time.sleep(0.3)
            seen[name] = (threading.current_thread().name, start, time.perf_counter())
            return name

        return body

    for k in range(6):
        g.add_step(f"s{k}", make(f"s{k}"))
    result = g.run(concurrency=6, store=None)
    assert result.ok
    assert all(t.startswith("dagagents-step") for t, _, _ in seen.values())
    # All six overlapped: each started before any finished (asyncio's small default pool
    # would have serialised some of them).
    assert max(s for _, s, _ in seen.values()) < min(e for _, _, e in seen.values())


def test_placeholders_filled_and_other_inputs_appended_as_labelled_context() -> None:
    prompts: dict[str, str] = {}

    def capture(request: Request) -> str:
        text = request.messages[-1]["content"]
        prompts[request.node or ""] = text
        return f"answer from {request.node}"

    sim = SimulatedProvider(**FAST, scripts=[Script(respond=capture)])
    a = Agent("writer")
    g = Graph("prompts", simulator=sim)
    g.task("size", a, "Size?")
    g.task("risks", a, "Risks?")
    g.task("summary", a, "Summarise the size: {size}", depends_on=["size", "risks"])
    result = g.run(store=None)
    assert result.ok
    text = prompts["summary"]
    assert text.startswith("Summarise the size: answer from size")
    assert '<input from="risks">\nanswer from risks\n</input>' in text
    assert '<input from="size">' not in text


def test_simulated_provider_is_deterministic_labelled_and_reports_usage() -> None:
    g = Graph("sim", simulator=SimulatedProvider(**FAST))
    a = Agent("researcher", model="claude-sonnet-4-6", max_tokens=300)
    g.task("q", a, "Research the market size.")
    one = g.run(store=None)
    two = g.run(store=None)
    assert one.outputs["q"] == two.outputs["q"]
    assert one.outputs["q"].startswith("[simulated claude-sonnet-4-6]")
    rec = one.records["q"]
    assert rec.simulated and rec.usage.input_tokens > 0 and 0 < rec.usage.output_tokens <= 300
    assert rec.cost_usd > 0


def test_simulated_latency_model() -> None:
    sim = SimulatedProvider(ttft=0.4, tokens_per_second=100, jitter=0.0)
    assert sim.latency_for(200, random.Random(0)) == pytest.approx(2.4)
    jittery = SimulatedProvider(ttft=0.4, tokens_per_second=100, jitter=0.2, seed=3)
    values = {round(jittery.latency_for(200, random.Random(k)), 6) for k in range(20)}
    assert len(values) > 1 and all(2.4 * 0.8 <= v <= 2.4 * 1.2 for v in values)


def test_scripts_by_agent_and_by_pattern() -> None:
    sim = SimulatedProvider(**FAST)
    sim.script("PLAN", agent="planner")
    sim.script({"verdict": "yes"}, pattern=r"decide")
    g = Graph("scripted", simulator=sim)
    g.task("p", Agent("planner"), "make a plan")
    g.task("d", Agent("judge"), "please decide now")
    g.task("x", Agent("other"), "free text")
    result = g.run(store=None)
    assert result.outputs["p"] == "PLAN"
    assert result.outputs["d"] == '{"verdict":"yes"}'
    assert result.outputs["x"].startswith("[simulated")


def test_async_and_sync_steps_get_dependency_outputs_by_parameter_name() -> None:
    g = Graph("hamilton")

    @g.step
    def numbers() -> list[int]:
        return [1, 2, 3]

    @g.step
    async def total(numbers: list[int]) -> int:
        await asyncio.sleep(0)
        return sum(numbers)

    @g.step
    def report(numbers: list[int], total: int) -> str:
        return f"{len(numbers)} numbers, total {total}"

    assert g.run(store=None).outputs["report"] == "3 numbers, total 6"


def test_graph_load_with_attribute(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        "from dagagents import Graph\n"
        "pipeline = Graph('p')\n"
        "@pipeline.step\n"
        "def one() -> int:\n    return 1\n"
    )
    g = Graph.load(f"{tmp_path / 'mod.py'}:pipeline")
    assert g.name == "p" and g.run(store=None).outputs == {"one": 1}


def test_arun_inside_a_running_loop() -> None:
    g = Graph("a")
    g.add_step("x", lambda: 41)
    g.add_step("y", lambda x: x + 1)

    async def main() -> Any:
        return await g.arun(store=None)

    assert asyncio.run(main()).outputs["y"] == 42


def test_expansion_wired_to_a_failed_node_skips_instead_of_hanging() -> None:
    """New nodes (and edges into waiting nodes) fed by a failed node are skipped, naming it."""
    from dagagents import Expansion, Step

    g = Graph("grow")

    @g.step
    def broken() -> int:
        raise ValueError("no data")

    async def slowish() -> str:
        await asyncio.sleep(0.1)  # lets `broken` fail before the planner expands
        return "x"

    def grow(_: str) -> Expansion:
        child = Step(name="child", fn=lambda **_: 1, depends_on=("broken",))
        return Expansion(nodes=[child], edges=[("broken", "sink")])

    g.add_step("slowish", slowish)
    g.add_step("planner", lambda slowish: "plan", expand=grow)
    g.add_step("sink", lambda **_: "sink", depends_on=["slowish", "planner"])

    async def main() -> Any:
        return await asyncio.wait_for(g.arun(store=None), 30)

    result = asyncio.run(main())
    assert result.status == {
        "broken": "failed",
        "slowish": "done",
        "planner": "done",
        "sink": "skipped",
        "child": "skipped",
    }
    assert result.records["sink"].because == "broken"
    assert result.records["child"].because == "broken"
