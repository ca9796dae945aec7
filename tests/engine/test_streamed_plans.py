"""Streamed plans: each subtask starts as soon as its part of the planner's streamed reply is
complete and valid on its own, before the planner finishes (event order, never timing).

The final plan is still validated as a whole; a repair reuses every streamed subtask it keeps
unchanged, retires the rest (a changed one runs again under its id, its old record kept as
`id~superseded`; a dropped one never feeds the synthesis). `stream_plan=False` is the barrier
it was; checkpoint keys are the same either way, so a resumed run recomputes nothing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from _anthropic_support import provider_for, run_graph
from recording import Recording, position, streamed_expands
from rich.console import Console

from dagagents import Orchestrator, Plan, SimulatedProvider, Store, Subtask
from dagagents.observe.progress import LiveProgress, PlainProgress
from dagagents.observe.report import report_html
from dagagents.observe.summary import RunData, summarize
from dagagents.providers.base import Request, Response
from dagagents.testing import FakeAnthropic, fake_anthropic_fixture, json_reply  # noqa: F401

WORKERS = {"researcher": "You research.", "writer": "You write."}
TASK = "Brief me on heat pumps."

PLAN = Plan(
    subtasks=[
        Subtask("a", "researcher", "Research A."),
        Subtask("b", "researcher", "Research B."),
        Subtask("c", "writer", "Write C.", depends_on=["a"]),
    ],
    synthesis_instructions="Combine them.",
)
# Invalid as a whole ('bad' names an unknown worker); a, b and d are valid on their own.
FIRST = Plan(
    subtasks=[
        Subtask("a", "researcher", "Research A."),
        Subtask("b", "researcher", "Research B."),
        Subtask("d", "writer", "Draft D."),
        Subtask("bad", "poet", "Write a poem."),
        Subtask("e", "writer", "Edit.", depends_on=["bad"]),
    ],
    synthesis_instructions="Combine them.",
)
# The repair keeps a, changes b, fixes bad, drops d.
REPAIRED = Plan(
    subtasks=[
        Subtask("a", "researcher", "Research A."),
        Subtask("b", "researcher", "Research B, more carefully."),
        Subtask("bad", "writer", "Write a poem."),
        Subtask("e", "writer", "Edit.", depends_on=["bad"]),
    ],
    synthesis_instructions="Combine them.",
)


def scripted(*plans: Plan, plan_latency: float = 0.2) -> Recording:
    """The planner answers `plans` in turn, each reply streamed over `plan_latency` seconds;
    a worker answers at once with its own prompt (so an output names the task it came from)."""
    sim = Recording(ttft=0.0, tokens_per_second=1e9, jitter=0.0, time_scale=1.0)
    sim.script(plans[-1], agent="planner", latency=plan_latency)
    for p in reversed(plans[:-1]):
        sim.script(p, agent="planner", latency=plan_latency, times=1)
    for worker in WORKERS:
        # no latency: a worker finishes in the loop iteration it starts, so the order of
        # events does not depend on how busy the machine is
        sim.script(lambda r: "OUT " + r.messages[0]["content"], agent=worker, latency=0.0)
    sim.script("THE BRIEF", agent="synthesizer", latency=0.0)
    return sim


# ------------------------------------------------------------------ streaming
def test_subtasks_start_before_the_planner_completes() -> None:
    sim = scripted(PLAN)
    result = Orchestrator(WORKERS).graph(TASK, simulator=sim).run(store=None)
    assert result.ok, result.errors
    plan_done = position(result, "node_complete", "plan")
    for sid in ("a", "b", "c"):
        assert position(result, "node_start", sid) < plan_done, sid
    # c waited for a, though both came from the stream
    assert position(result, "node_complete", "a") < position(result, "node_start", "c")
    # one `expand` per streamed subtask, from the planner, before it completed
    streamed = streamed_expands(result)
    assert [e["added"] for e in streamed] == [["a"], ["b"], ["c"]]
    assert all(e["node"] == "plan" for e in streamed)
    # the synthesis still waits for the plan and every subtask, and sees every output
    synth = position(result, "node_start", "synthesis")
    assert synth > max(position(result, "node_complete", n) for n in ("plan", "a", "b", "c"))
    (prompt,) = sim.prompts("synthesis")
    for sid in ("a", "b", "c"):
        assert f'<input from="{sid}">' in prompt
    assert [len(sim.prompts(n)) for n in ("plan", "a", "b", "c")] == [1, 1, 1, 1]


def test_through_the_real_sdk_subtasks_start_while_the_plan_streams(
    fake_anthropic: FakeAnthropic,
) -> None:
    api = fake_anthropic
    # The planner writes at 40 tokens/s (its reply arrives in many SSE deltas over about 1.5 s,
    # spaced so that even a loaded client starts a subtask before the plan's last delta; at
    # 150 tokens/s a busy machine sometimes read the whole plan first); workers answer at once.
    api.tokens_per_second = lambda body: 40.0 if body["model"].startswith("claude-opus") else None
    api.reply(json_reply(PLAN), model="claude-opus", pattern="^Plan the following")
    result = run_graph(Orchestrator(WORKERS).graph(TASK), provider=provider_for(api))
    assert result.ok, result.errors
    plan_done = position(result, "node_complete", "plan")
    assert position(result, "node_start", "a") < plan_done
    assert position(result, "node_start", "b") < plan_done
    planner = [r for r in api.message_requests if r.body["model"].startswith("claude-opus")]
    assert planner[0].stream  # the plan came over SSE
    assert len(api.message_requests) == 5  # plan, a, b, c, synthesis: nothing twice


def test_a_subtask_invalid_on_its_own_never_starts() -> None:
    """An unknown worker waits for the repair; a dependency not yet seen (valid as a whole)
    waits for the whole plan; so does whatever depends on either."""
    forward = Plan(
        subtasks=[
            Subtask("later", "writer", "Use x.", depends_on=["x"]),
            Subtask("x", "researcher", "Find x."),
        ],
        synthesis_instructions="s",
    )
    sim = scripted(forward)
    result = Orchestrator(WORKERS).graph(TASK, simulator=sim).run(store=None)
    assert result.ok, result.errors
    assert position(result, "node_start", "x") < position(result, "node_complete", "plan")
    assert position(result, "node_start", "later") > position(result, "node_complete", "plan")

    sim = scripted(FIRST, REPAIRED)
    result = Orchestrator(WORKERS).graph(TASK, simulator=sim).run(store=None)
    assert result.ok, result.errors
    rejected = next(
        i
        for i, e in enumerate(result.events)
        if e["event"] == "warning" and e.get("node") == "plan"
    )
    for sid in ("bad", "e"):  # never from the first, invalid reply
        assert position(result, "node_start", sid) > rejected
        assert len(sim.prompts(sid)) == 1


def test_a_repaired_plan_reuses_the_streamed_subtasks_it_keeps() -> None:
    sim = scripted(FIRST, REPAIRED)
    result = Orchestrator(WORKERS).graph(TASK, simulator=sim).run(store=None)
    assert result.ok, result.errors
    assert len(sim.prompts("plan")) == 2
    # a ran during the first reply and is reused as it is: one request
    assert sim.prompts("a") == ["Research A."]
    assert position(result, "node_start", "a") < position(result, "node_complete", "plan")
    # b changed: it runs again under its id; the first one's record stays beside it
    assert sim.prompts("b")[-1] == "Research B, more carefully."
    assert result.outputs["b"] == "OUT Research B, more carefully."
    old = result.records["b~superseded"]
    assert old.status in ("done", "skipped") and old.name == "b~superseded"
    # d was dropped: it never feeds the synthesis
    assert result.records["d"].status in ("done", "skipped")
    (prompt,) = sim.prompts("synthesis")
    for sid in ("a", "b", "bad", "e"):
        assert f'<input from="{sid}">' in prompt
    assert 'from="d"' not in prompt and "Draft D." not in prompt
    assert "Research B, more carefully." in prompt and "OUT Research B.\n" not in prompt
    synthesis_deps = set(result.records["synthesis"].depends_on)
    assert synthesis_deps == {"plan", "a", "b", "bad", "e"}


def test_through_the_real_sdk_a_repair_reuses_what_streamed(fake_anthropic: FakeAnthropic) -> None:
    api = fake_anthropic
    api.tokens_per_second = lambda body: 800.0 if body.get("output_config") else None
    api.reply(
        json_reply(FIRST), json_reply(REPAIRED), model="claude-opus", pattern="^Plan the following"
    )
    result = run_graph(Orchestrator(WORKERS).graph(TASK), provider=provider_for(api))
    assert result.ok, result.errors

    def asked(task: str) -> int:
        return sum(
            1 for r in api.message_requests if r.body["messages"][0]["content"].startswith(task)
        )

    assert asked("Research A.") == 1  # streamed during the first reply, reused as it is
    assert asked("Research B, more carefully.") == 1 and asked("Research B.") <= 1
    assert asked("Write a poem.") == 1 and asked("Edit.") == 1  # only from the repair
    assert position(result, "node_start", "a") < position(result, "node_complete", "plan")
    synth = next(
        r for r in api.message_requests if "Combine the outputs" in r.body["messages"][0]["content"]
    )
    assert "Draft D." not in synth.body["messages"][0]["content"]


def test_a_plan_still_invalid_drops_what_it_streamed() -> None:
    sim = scripted(FIRST)  # the repair is just as invalid
    result = Orchestrator(WORKERS).graph(TASK, simulator=sim).run(store=None)
    assert result.status["plan"] == "failed"
    assert result.status["synthesis"] == "skipped"
    assert "bad" not in result.records and "e" not in result.records
    for sid in ("a", "b", "d"):
        record = result.records[sid]
        assert record.status in ("done", "skipped"), (sid, record.status)
        if record.status == "skipped":
            assert record.because == "dropped from the final plan"
        assert len(sim.prompts(sid)) <= 1


# ------------------------------------------------------------------ off, keys, resume
def test_stream_plan_false_is_a_barrier_with_the_same_keys(tmp_path: Path) -> None:
    results = {}
    for stream in (True, False):
        sim = scripted(PLAN)
        o = Orchestrator(WORKERS, stream_plan=stream)
        results[stream] = o.graph(TASK, simulator=sim).run(store=tmp_path / f"s{stream}")
        assert results[stream].ok
    off = results[False]
    plan_done = position(off, "node_complete", "plan")
    assert all(position(off, "node_start", sid) > plan_done for sid in ("a", "b", "c"))
    assert not streamed_expands(off)
    assert len(streamed_expands(results[True])) == 3
    keys = {s: {n: r.key for n, r in results[s].records.items()} for s in results}
    assert keys[True] == keys[False]
    assert results[True].outputs == results[False].outputs


def test_resume_after_a_streamed_and_repaired_run_recomputes_nothing(tmp_path: Path) -> None:
    sim = scripted(FIRST, REPAIRED)
    g = Orchestrator(WORKERS).graph(TASK, simulator=sim)
    first = g.run(store=tmp_path / "store")
    assert first.ok, first.errors
    asked = len(sim.requests)
    again = g.run(store=tmp_path / "store")
    assert again.ok
    assert len(sim.requests) == asked  # nothing asked again
    assert set(again.status.values()) == {"cached"}
    assert set(again.status) == {"plan", "a", "b", "bad", "e", "synthesis"}
    assert not [e for e in again.events if e["event"] == "node_start"]
    assert again.outputs["synthesis"] == first.outputs["synthesis"]
    for sid in ("a", "b", "bad", "e"):
        assert again.records[sid].key == first.records[sid].key
        assert again.outputs[sid] == first.outputs[sid]


# ------------------------------------------------------------------ observers
def test_observers_follow_nodes_that_appear_while_the_planner_runs(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=120, force_terminal=True)
    live = LiveProgress(console, "orchestrator")
    plain = PlainProgress(Console(file=io.StringIO(), width=120))
    frames: list[str] = []

    def listen(event: dict[str, Any]) -> None:
        live(event)
        plain(event)
        if event["event"] == "node_start":  # draw while the planner may still be running
            console.print(live.render())
            frames.append(console.file.getvalue())  # type: ignore[attr-defined]

    sim = scripted(FIRST, REPAIRED)
    result = (
        Orchestrator(WORKERS)
        .graph(TASK, simulator=sim)
        .run(store=tmp_path / "store", listener=listen)
    )
    assert result.ok
    assert frames and "a" in frames[-1]
    store = Store(tmp_path / "store")
    run = RunData.from_manifest(store.read_manifest(result.run_id), store.read_trace(result.run_id))
    assert {"a", "b", "b~superseded", "d", "synthesis"} <= set(run.nodes)
    summary = summarize(run, top=5)
    assert summary.counts
    # a streamed subtask overlapped its planner: no plan -> subtask ordering is assumed
    assert summary.critical_time <= run.wall + 1e-6
    assert "synthesis" in report_html(run)
    from_trace = RunData.from_events(store.read_trace(result.run_id))
    assert from_trace.nodes["synthesis"].status == "done"


def test_a_provider_whose_complete_takes_no_on_text_gets_the_barrier() -> None:
    """A user's SimulatedProvider subclass written before streaming (`complete(request)`)
    keeps working: it does not stream, so the plan is a barrier for it."""

    class Old(SimulatedProvider):
        async def complete(self, request: Request) -> Response:
            return await super().complete(request)

    sim = Old(ttft=0.0, tokens_per_second=1e9, jitter=0.0, time_scale=0.0)
    sim.script(PLAN, agent="planner")
    result = Orchestrator(WORKERS).graph(TASK, simulator=sim).run(store=None)
    assert result.ok, result.errors
    assert not streamed_expands(result)
    plan_done = position(result, "node_complete", "plan")
    assert all(position(result, "node_start", sid) > plan_done for sid in ("a", "b", "c"))
