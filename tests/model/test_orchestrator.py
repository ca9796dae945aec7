"""The orchestrator: plans compiled into the running graph, repair, synthesis, resume.

Offline through the SimulatedProvider, and end to end through the real `anthropic` SDK against
the loopback fake Messages API (`dagagents.testing`).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _anthropic_support import provider_for, run_graph
from conftest import ROOT, cli_env, dagagents_cmd, run_dagagents
from recording import Recording

from dagagents import (
    Agent,
    AgentTask,
    Expansion,
    Graph,
    Orchestrator,
    Plan,
    SimulatedProvider,
    Store,
    Subtask,
)
from dagagents.testing import FakeAnthropic, fake_anthropic_fixture, json_reply, text  # noqa: F401

TASK = "Compare the US and EU heat pump markets."
WORKERS = {
    "researcher": Agent("researcher", system="You research markets."),
    "analyst": Agent("analyst", system="You analyse."),
    "writer": Agent("writer", system="You write."),
}

PLAN = Plan(
    subtasks=[
        Subtask("us", "researcher", "Research the US heat pump market."),
        Subtask("eu", "researcher", "Research the EU heat pump market."),
        Subtask("compare", "analyst", "Compare the two markets.", depends_on=["us", "eu"]),
    ],
    synthesis_instructions="Write a one-page brief.",
)
BAD_PLAN = Plan(
    subtasks=[Subtask("us", "coder", "Research the US heat pump market.")],
    synthesis_instructions="Write a one-page brief.",
)
BAD_SENTENCE = (
    "subtask 'us' names unknown worker 'coder'; available workers: analyst, researcher, writer."
)


def scripted(*plans: Plan, latency: float = 0.0) -> Recording:
    """Planner answers `plans` in turn (the last repeats); workers answer per subtask."""
    sim = Recording(time_scale=1.0, ttft=0.0, tokens_per_second=1e9, jitter=0.0)
    sim.script(plans[-1], agent="planner", latency=latency)
    for p in reversed(plans[:-1]):
        sim.script(p, agent="planner", latency=latency, times=1)
    sim.script("US: 2.1M units", agent="researcher", pattern="^Research the US", latency=0.3)
    sim.script("EU: 2.6M units", agent="researcher", pattern="^Research the EU", latency=0.3)
    sim.script("EU is larger", agent="analyst", pattern="^Compare", latency=0.05)
    sim.script("THE BRIEF", agent="synthesizer", latency=0.05)
    return sim


def orchestrator(**kw: Any) -> Orchestrator:
    return Orchestrator(workers=WORKERS, **kw)


def events_of(result: Any, kind: str, node: str | None = None) -> list[dict[str, Any]]:
    return [
        e for e in result.events if e["event"] == kind and (node is None or e.get("node") == node)
    ]


# ----------------------------------------------------------------------------- defaults
def test_defaults_sonnet_workers_opus_planner_and_synthesizer() -> None:
    o = Orchestrator(workers={"researcher": "You research.", "writer": WORKERS["writer"]})
    assert o.workers["researcher"].model == "claude-sonnet-4-6"
    assert o.workers["researcher"].system == "You research."
    assert o.planner.model == "claude-opus-4-6" and o.synthesizer.model == "claude-opus-4-6"
    custom = Orchestrator(WORKERS, planner=Agent("boss", model="claude-sonnet-4-6"))
    assert custom.planner_task(TASK).agent.model == "claude-sonnet-4-6"
    assert custom.planner_task(TASK).agent.output is Plan


def test_graph_is_plan_then_synthesis_and_runs_offline_with_a_default_plan() -> None:
    g = orchestrator().graph(TASK)
    assert list(g.specs) == ["plan", "synthesis"]
    assert g["synthesis"].depends_on == ("plan",)
    assert isinstance(g.simulator, SimulatedProvider)  # no key: it plans one subtask per worker
    g.simulator.time_scale = 0
    result = g.run(store=None)
    assert result.ok, result.errors
    assert sorted(result.outputs) == ["analyst", "plan", "researcher", "synthesis", "writer"]
    assert ("researcher", "synthesis") in result.edges


# ----------------------------------------------------------------------------- compilation
def test_two_subtasks_of_one_worker_keep_both_outputs() -> None:
    sim = scripted(PLAN)
    result = orchestrator().graph(TASK, simulator=sim).run(store=None)
    assert result.ok, result.errors
    assert result.outputs["us"] == "US: 2.1M units"
    assert result.outputs["eu"] == "EU: 2.6M units"
    assert result.records["us"].agent == result.records["eu"].agent == "researcher"
    # The analyst and the synthesizer see both researcher outputs, labelled by subtask id.
    compare = sim.by_node("compare")[0].messages[0]["content"]
    assert '<input from="us">\nUS: 2.1M units' in compare
    assert '<input from="eu">\nEU: 2.6M units' in compare
    synth = sim.by_node("synthesis")[0].messages[0]["content"]
    for sid, out in (("us", "US: 2.1M"), ("eu", "EU: 2.6M"), ("compare", "EU is larger")):
        assert f'<input from="{sid}">\n{out}' in synth
    assert "Write a one-page brief." in synth  # the synthesis instructions, via the plan
    assert f"Original task: {TASK}" in synth
    assert result.outputs["synthesis"] == "THE BRIEF"


def test_independent_subtasks_run_concurrently_and_dependent_ones_wait() -> None:
    # Unstreamed: the plan is a barrier (streamed plans: tests/engine/test_streamed_plans.py).
    o = orchestrator(stream_plan=False)
    result = o.graph(TASK, simulator=scripted(PLAN)).run(store=None, concurrency=4)
    assert result.ok, result.errors
    t = result.timings
    # us and eu overlap: each started before the other finished.
    assert t["us"][0] < t["eu"][1] and t["eu"][0] < t["us"][1]
    # compare starts only after both inputs; the synthesis after every subtask.
    assert t["compare"][0] >= max(t["us"][1], t["eu"][1])
    assert t["synthesis"][0] >= max(t[n][1] for n in ("us", "eu", "compare"))
    order = [(e["event"], e.get("node")) for e in result.events]
    starts = {n: order.index(("node_start", n)) for n in ("us", "eu", "compare", "synthesis")}
    ends = {n: order.index(("node_complete", n)) for n in ("plan", "us", "eu", "compare")}
    assert starts["us"] < ends["eu"] and starts["eu"] < ends["us"]
    assert starts["compare"] > max(ends["us"], ends["eu"])
    assert ends["plan"] < min(starts.values())
    expand = events_of(result, "expand", "plan")[0]
    assert expand["added"] == ["us", "eu", "compare"]


def test_planner_uses_structured_output_with_the_plan_schema() -> None:
    sim = scripted(PLAN)
    orchestrator().graph(TASK, simulator=sim).run(store=None)
    (request,) = sim.by_node("plan")
    assert request.output_schema is not None
    assert set(request.output_schema["properties"]) == {"subtasks", "synthesis_instructions"}
    prompt = request.messages[0]["content"]
    assert f"<task>\n{TASK}\n</task>" in prompt
    assert "- researcher (claude-sonnet-4-6): You research markets." in prompt


# ----------------------------------------------------------------------------- repair
def test_repair_attempt_fixes_a_plan_that_was_invalid_once() -> None:
    sim = scripted(BAD_PLAN, PLAN)
    result = orchestrator().graph(TASK, simulator=sim).run(store=None)
    assert result.ok, result.errors
    first, second = sim.by_node("plan")
    repair = second.messages[0]["content"]
    assert repair.startswith(first.messages[0]["content"])
    assert "Your previous plan was rejected" in repair and BAD_SENTENCE in repair
    assert '"worker": "coder"' in repair  # the rejected plan is shown back
    record = result.records["plan"]
    assert record.calls == 2  # both planner calls are paid for and recorded on the node
    calls = events_of(result, "llm_call", "plan")
    assert len(calls) == 2
    assert record.usage.output_tokens == sum(c["usage"]["output_tokens"] for c in calls)
    assert record.cost_usd > 0
    warning = events_of(result, "warning", "plan")[0]
    assert warning["problems"] == [BAD_SENTENCE]
    assert result.outputs["plan"] == PLAN
    assert sorted(result.outputs) == ["compare", "eu", "plan", "synthesis", "us"]


def test_a_plan_still_invalid_after_the_repair_fails_the_node_with_the_sentences() -> None:
    sim = scripted(BAD_PLAN)
    result = orchestrator().graph(TASK, simulator=sim).run(store=None)
    assert not result.ok
    assert result.status == {"plan": "failed", "synthesis": "skipped"}
    assert result.errors["plan"] == (
        f"the plan is still invalid after one repair attempt: {BAD_SENTENCE}"
    )
    assert result.errors["synthesis"] == "skipped because plan"
    assert len(sim.by_node("plan")) == 2  # one repair attempt, no more
    assert len(events_of(result, "llm_call", "plan")) == 2  # both calls' usage is traced


@pytest.mark.parametrize(
    ("bad", "sentence"),
    [
        (Plan(subtasks=[], synthesis_instructions="s"), "the plan has no subtasks"),
        (
            Plan(
                subtasks=[
                    Subtask("a", "writer", "x", depends_on=["b"]),
                    Subtask("b", "writer", "y", depends_on=["a"]),
                ],
                synthesis_instructions="s",
            ),
            "the plan has a dependency cycle: a -> b -> a",
        ),
        (
            Plan(subtasks=[Subtask("plan", "writer", "x")], synthesis_instructions="s"),
            "subtask id 'plan' is reserved",
        ),
        (
            Plan(
                subtasks=[Subtask("a", "writer", "x"), Subtask("a", "writer", "y")],
                synthesis_instructions="s",
            ),
            "subtask id 'a' is used by 2 subtasks",
        ),
        (
            Plan(
                subtasks=[Subtask("a", "writer", "x", depends_on=["zz"])],
                synthesis_instructions="s",
            ),
            "subtask 'a' depends on unknown subtask 'zz'.",
        ),
    ],
)
def test_invalid_plans_from_the_planner_fail_with_their_sentence(bad: Plan, sentence: str) -> None:
    result = orchestrator().graph(TASK, simulator=scripted(bad)).run(store=None)
    assert result.status["plan"] == "failed"
    assert result.errors["plan"].startswith("the plan is still invalid after one repair attempt: ")
    assert sentence in result.errors["plan"]


def test_max_subtasks_is_enforced_on_the_planner() -> None:
    result = orchestrator(max_subtasks=2).graph(TASK, simulator=scripted(PLAN)).run(store=None)
    assert "the plan has 3 subtasks, more than the limit of 2" in result.errors["plan"]


FAILING_GRAPH = """
from dagagents import Agent, Orchestrator, Plan, SimulatedProvider, Subtask
workers = {"researcher": Agent("researcher"), "writer": Agent("writer")}
bad = Plan(subtasks=[Subtask("a", "coder", "x")], synthesis_instructions="s")
sim = SimulatedProvider(time_scale=0).script(bad, agent="planner")
graph = Orchestrator(workers).graph("T", simulator=sim)
"""


def test_cli_exit_1_when_the_plan_stays_invalid(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(FAILING_GRAPH)
    proc = run_dagagents(tmp_path, "run", "g.py")
    assert proc.returncode == 1, proc.stderr
    assert (
        "failed: plan: the plan is still invalid after one repair attempt: subtask 'a' names "
        "unknown worker 'coder'; available workers: researcher, writer." in proc.stderr
    )
    assert "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- expansion
def test_an_expansion_that_would_make_a_cycle_fails_that_node_cleanly() -> None:
    worker = Agent("w")

    def grow(_: Any) -> Expansion:
        # x depends on c, and an edge x -> c makes c wait for x: c -> x -> c.
        return Expansion(
            nodes=[AgentTask(name="x", agent=worker, prompt="p", depends_on=("c",))],
            edges=[("x", "c")],
        )

    g = Graph("cyclic", simulator=SimulatedProvider(time_scale=0))
    g.task("a", worker, "start", expand=grow)
    g.task("c", worker, "after a", depends_on=["a"])
    g.task("b", worker, "independent")
    result = g.run(store=None)
    assert result.status == {"a": "failed", "c": "skipped", "b": "done"}
    assert result.errors["a"] == (
        "expansion from node 'a': dependency cycle c -> x -> c would be created; expansion rejected"
    )
    assert "x" not in result.records  # the graph is unchanged


def test_an_expansion_with_a_name_clash_fails_cleanly() -> None:
    worker = Agent("w")
    g = Graph("clash", simulator=SimulatedProvider(time_scale=0))
    g.task(
        "a",
        worker,
        "start",
        expand=lambda _: Expansion(nodes=[AgentTask(name="b", agent=worker, prompt="p")]),
    )
    g.task("b", worker, "independent")
    result = g.run(store=None)
    assert result.status["a"] == "failed" and result.status["b"] == "done"
    assert "adds node 'b', which already exists" in result.errors["a"]


# ----------------------------------------------------------------------------- resume
def test_a_rerun_reuses_the_plan_and_every_finished_subtask(tmp_path: Path) -> None:
    sim = scripted(BAD_PLAN, PLAN)  # the checkpoint holds the repaired plan
    g = orchestrator().graph(TASK, simulator=sim)
    first = g.run(store=tmp_path / "store")
    assert first.ok
    again = g.run(store=tmp_path / "store")
    assert again.ok
    assert set(again.status.values()) == {"cached"}
    assert len(again.status) == 5  # the same subgraph was rebuilt from the cached plan
    assert again.outputs == first.outputs
    assert len(sim.by_node("plan")) == 2  # both from the first run; none from the rerun
    assert not events_of(again, "node_start")


@pytest.mark.slow
def test_a_killed_run_resumes_without_planning_again(tmp_path: Path) -> None:
    cmd = dagagents_cmd(
        "run", str(ROOT / "graphs" / "market_report.py"), "-c", "4", "--provider", "simulated"
    )
    store = Store(tmp_path / ".dagagents")
    env = cli_env(DAGAGENTS_SIM_TIME_SCALE="0.3")  # the demo's 15 s critical path in 4.5 s
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    done: set[str] = set()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            runs = store.list_runs()
            if runs:
                done = {
                    e["node"] for e in store.read_trace(runs[0]) if e["event"] == "node_complete"
                }
                if "plan" in done and len(done) >= 3:  # the plan and some subtasks
                    break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    assert "plan" in done and "synthesis" not in done, done
    killed = store.list_runs()[0]
    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    second = next(r for r in store.list_runs() if r != killed)
    events = store.read_trace(second)
    hits = {e["node"] for e in events if e["event"] == "cache_hit"}
    started = {e["node"] for e in events if e["event"] == "node_start"}
    assert "plan" in hits and "plan" not in started  # not planned again
    assert not [e for e in events if e["event"] == "llm_call" and e.get("node") == "plan"]
    assert done <= hits  # every subtask finished before the kill is reused
    manifest = store.read_manifest(second)
    assert len(manifest["nodes"]) == 9  # plan + 7 subtasks + synthesis
    assert all(n["status"] in ("done", "cached") for n in manifest["nodes"].values())
    # Across both runs the planner completed exactly once.
    completes = [
        e
        for run in (killed, second)
        for e in store.read_trace(run)
        if e["event"] == "node_complete" and e["node"] == "plan"
    ]
    assert len(completes) == 1


# ----------------------------------------------------------------------------- real SDK
def test_end_to_end_through_the_real_sdk_with_a_repair(fake_anthropic: FakeAnthropic) -> None:
    api = fake_anthropic
    api.latency = 0.2
    api.reply(
        json_reply(BAD_PLAN), json_reply(PLAN), model="claude-opus", pattern="^Plan the following"
    )
    api.reply(text("US: 2.1M units"), pattern="^Research the US")
    api.reply(text("EU: 2.6M units"), pattern="^Research the EU")
    api.reply(text("EU is larger"), pattern="^Compare")
    api.reply(text("THE BRIEF"), model="claude-opus", pattern="^Original task")
    result = run_graph(orchestrator().graph(TASK), provider=provider_for(api), concurrency=4)
    assert result.ok, result.errors
    assert result.outputs["synthesis"] == "THE BRIEF"
    assert result.outputs["us"] == "US: 2.1M units" and result.outputs["eu"] == "EU: 2.6M units"
    assert result.records["plan"].calls == 2 and not result.records["plan"].simulated
    bodies = [r.body or {} for r in api.message_requests]
    planner = [b for b in bodies if b["messages"][0]["content"].startswith("Plan the following")]
    assert len(planner) == 2
    fmt = planner[0]["output_config"]["format"]
    assert fmt["type"] == "json_schema" and "subtasks" in fmt["schema"]["properties"]
    assert planner[0]["model"] == "claude-opus-4-6"
    assert BAD_SENTENCE in planner[1]["messages"][0]["content"]
    workers = [b for b in bodies if b["model"] == "claude-sonnet-4-6"]
    assert len(workers) == 3
    synth = next(b for b in bodies if b["messages"][0]["content"].startswith("Original task"))
    assert "US: 2.1M units" in synth["messages"][0]["content"]
    assert "EU: 2.6M units" in synth["messages"][0]["content"]
    t = result.timings
    assert t["us"][0] < t["eu"][1] and t["eu"][0] < t["us"][1]
    assert t["compare"][0] >= max(t["us"][1], t["eu"][1])


def test_plan_alone_then_the_graph_reuses_that_plan(tmp_path: Path) -> None:
    sim = scripted(PLAN)
    o = orchestrator(simulator=sim)
    store = tmp_path / "store"
    assert o.plan(TASK, store=store) == PLAN
    result = o.graph(TASK).run(store=store)
    assert result.ok and result.status["plan"] == "cached"
    assert len(sim.by_node("plan")) == 1


def test_preview_is_the_graph_the_run_becomes() -> None:
    o = orchestrator(simulator=scripted(PLAN))
    preview = o.preview(TASK, PLAN)
    result = o.graph(TASK).run(store=None)
    assert set(preview.specs) == set(result.records)
    assert set(preview.nx.edges) == set(result.edges)
    preview.validate()
