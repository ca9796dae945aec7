"""Streamed maps: each item of `g.map(..., over="node.field")` over an agent's structured output
starts as soon as its part of the streamed reply is complete and valid against the item type,
before the agent finishes (event order, never timing).

The splitter's expansion, once the agent has finished, decides as a whole: an item it keeps
unchanged ran once; a changed one runs again under its name (the first one's record kept as
`name~superseded`); a dropped one never reaches the map's output. `stream=False` is the barrier
it was; checkpoint keys are the same either way, so a resumed run recomputes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _anthropic_support import provider_for, run_graph
from pydantic import BaseModel, Field
from recording import Recording, position, streamed_expands

from dagagents import Agent, Graph, Orchestrator, Plan, Subtask
from dagagents.errors import ProviderError
from dagagents.testing import (
    FakeAnthropic,
    fake_anthropic_fixture,  # noqa: F401 (the `fake_anthropic` fixture)
    json_reply,
    last_user_text,
    tool_call,
)


class Subjects(BaseModel):
    items: list[str] = Field(max_length=3)  # checked on the whole list only, never per item


class Talk(BaseModel):
    title: str
    minutes: int


class Agenda(BaseModel):
    talks: list[Talk]
    note: str = ""


ITEMS = ["grumpy old owls", "cats in boxes", "dogs that sing"]


def simulator(*replies: Any, latency: float = 0.2, item_latency: float = 0.0) -> Recording:
    """`subjects` answers `replies` in turn, each streamed over `latency` seconds; an item
    answers with its own prompt after `item_latency` (0: in the loop iteration it starts, so
    the order of events does not depend on how busy the machine is)."""
    sim = Recording(ttft=0.0, tokens_per_second=1e9, jitter=0.0, time_scale=1.0)
    sim.script(replies[-1], agent="lister", latency=latency)
    for reply in reversed(replies[:-1]):
        sim.script(reply, agent="lister", latency=latency, times=1)
    sim.script(lambda r: "JOKE " + r.messages[0]["content"], agent="joker", latency=item_latency)
    return sim


def jokes_graph(sim: Any = None, **map_options: Any) -> Graph:
    g = Graph("jokes", output="jokes", simulator=sim)
    g.input("topic", default="pets")
    g.task("subjects", Agent("lister"), "Subjects about {topic}.", output=Subjects)
    g.map("jokes", Agent("joker"), "A joke about {item}.", over="subjects.items", **map_options)
    return g


def asked(sim: Recording, text: str) -> int:
    return sum(1 for r in sim.requests if r.messages[0]["content"] == text)


# ------------------------------------------------------------------ streaming
def test_items_start_before_the_source_completes() -> None:
    sim = simulator(Subjects(items=ITEMS))
    result = jokes_graph(sim).run(store=None)
    assert result.ok, result.errors
    done = position(result, "node_complete", "subjects")
    for i in range(3):
        assert position(result, "node_start", f"jokes[{i}]") < done
    # one streamed `expand` per item, in list order, from the map's splitter
    streamed = streamed_expands(result)
    assert [e["added"] for e in streamed] == [["jokes[0]"], ["jokes[1]"], ["jokes[2]"]]
    assert {e["node"] for e in streamed} == {"jokes[*]"}
    # the splitter's expansion adds no item again: each was asked once
    assert result.outputs["jokes"] == [f"JOKE A joke about {s}." for s in ITEMS]
    assert [asked(sim, f"A joke about {s}.") for s in ITEMS] == [1, 1, 1]
    assert set(result.status.values()) == {"done"}


def test_a_function_map_over_a_list_of_models_streams_too() -> None:
    agenda = Agenda(talks=[Talk(title="On owls", minutes=5), Talk(title="On cats", minutes=7)])
    sim = Recording(ttft=0.0, tokens_per_second=1e9, jitter=0.0, time_scale=1.0)
    sim.script(agenda, agent="lister", latency=0.2)
    g = Graph("talks", output="slots", simulator=sim)
    g.task("agenda", Agent("lister"), "An agenda.", output=Agenda)

    def slot(item: Talk, index: int) -> str:
        return f"{index}: {item.title} ({item.minutes} min)"

    g.map("slots", slot, over="agenda.talks")
    result = g.run(store=None)
    assert result.ok, result.errors
    assert position(result, "node_start", "slots[0]") < position(result, "node_complete", "agenda")
    assert result.outputs["slots"] == ["0: On owls (5 min)", "1: On cats (7 min)"]
    assert len(streamed_expands(result)) >= 1


def test_through_the_real_sdk_items_start_while_the_source_streams(
    fake_anthropic: FakeAnthropic,
) -> None:
    api = fake_anthropic
    # The lister writes at 40 tokens/s (many SSE deltas over about a second, so even a loaded
    # client starts an item before the last delta); the items answer at once.
    api.tokens_per_second = lambda body: 40.0 if body.get("output_config") else None
    api.reply(json_reply(Subjects(items=ITEMS)), pattern="^Subjects about")
    api.reply(lambda r: "JOKE " + last_user_text(r), pattern="^A joke")
    result = run_graph(jokes_graph(), provider=provider_for(api))
    assert result.ok, result.errors
    done = position(result, "node_complete", "subjects")
    assert position(result, "node_start", "jokes[0]") < done
    assert position(result, "node_start", "jokes[1]") < done
    lister = [r for r in api.message_requests if r.body.get("output_config")]
    assert len(lister) == 1 and lister[0].stream  # the list came over SSE
    assert len(api.message_requests) == 4  # the list and three jokes: nothing twice
    assert result.outputs["jokes"] == [f"JOKE A joke about {s}." for s in ITEMS]


def test_through_the_real_sdk_a_forced_answer_tool_streams_its_items_too(
    fake_anthropic: FakeAnthropic,
) -> None:
    """Structured output as a forced tool call: the tool's input streams as input_json_delta
    events, and the items start from it as they do from a native JSON reply."""
    api = fake_anthropic
    api.tokens_per_second = lambda body: 40.0 if body.get("tool_choice") else None
    api.reply(lambda r: "JOKE " + last_user_text(r), pattern="^A joke")
    # unscripted, the lister's forced tool is answered from the schema: script its input
    api.reply(lambda r: tool_call(r["tool_choice"]["name"], {"items": ITEMS}), pattern="^Subjects")
    result = run_graph(
        jokes_graph(), provider=provider_for(api), call_options={"structured_output": "tool"}
    )
    assert result.ok, result.errors
    lister = [r for r in api.message_requests if r.body.get("tool_choice")]
    assert len(lister) == 1 and lister[0].stream
    assert lister[0].body["tool_choice"]["type"] == "tool"  # the forced-tool mode indeed
    done = position(result, "node_complete", "subjects")
    assert position(result, "node_start", "jokes[0]") < done
    assert position(result, "node_start", "jokes[1]") < done
    assert len(api.message_requests) == 4
    assert result.outputs["jokes"] == [f"JOKE A joke about {s}." for s in ITEMS]


# ------------------------------------------------------------------ validity
def test_an_item_invalid_against_its_type_never_starts_early() -> None:
    """The first reply's second talk has no valid `minutes`: it, and every talk after it,
    wait; the re-asked reply (valid) starts them. Only valid talks are ever asked about."""
    bad = (
        '{"talks": [{"title": "On owls", "minutes": 5}, {"title": "On cats", '
        '"minutes": "a lot"}, {"title": "On dogs", "minutes": 9}], "note": "first draft"}'
    )
    good = Agenda(
        talks=[
            Talk(title="On owls", minutes=5),
            Talk(title="On cats", minutes=6),
            Talk(title="On dogs", minutes=9),
        ],
        note="fixed",
    )
    sim = Recording(ttft=0.0, tokens_per_second=1e9, jitter=0.0, time_scale=1.0)
    sim.script(good, agent="lister", latency=0.2)
    sim.script(bad, agent="lister", latency=0.2, times=1)
    sim.script(lambda r: "TALK " + r.messages[0]["content"], agent="speaker", latency=0.0)
    g = Graph("talks", output="talks_done", simulator=sim)
    g.task("agenda", Agent("lister"), "An agenda.", output=Agenda)
    g.map("talks_done", Agent("speaker"), "Give {item.title}.", over="agenda.talks")
    result = g.run(store=None)
    assert result.ok, result.errors
    nodes = [r.node for r in sim.requests]
    second_reply = [i for i, n in enumerate(nodes) if n == "agenda"][1]
    # from the invalid reply only the talk before the invalid one started
    assert [r.messages[0]["content"] for r in sim.requests[:second_reply]] == [
        sim.requests[0].messages[0]["content"],
        "Give On owls.",
    ]
    assert [asked(sim, f"Give On {t}.") for t in ("owls", "cats", "dogs")] == [1, 1, 1]
    done = position(result, "node_complete", "agenda")
    assert all(position(result, "node_start", f"talks_done[{i}]") < done for i in range(3))
    assert not any("~superseded" in name for name in result.records)


def test_a_final_list_that_differs_retires_what_it_changed_or_dropped() -> None:
    """Four items stream, each valid on its own; the list is invalid as a whole (at most
    three), so the agent is asked again and answers a list that changes item 1 and drops
    item 3. Items 0 and 2 ran once and are kept."""
    first = ["grumpy old owls", "cats in boxes", "dogs that sing", "fish that fly"]
    second = ["grumpy old owls", "cats in hats", "dogs that sing"]
    sim = simulator(
        '{"items": ["' + '", "'.join(first) + '"]}', Subjects(items=second), latency=0.2
    )
    result = jokes_graph(sim).run(store=None)
    assert result.ok, result.errors
    assert result.outputs["jokes"] == [f"JOKE A joke about {s}." for s in second]
    assert asked(sim, "A joke about grumpy old owls.") == 1  # streamed, kept as it was
    assert asked(sim, "A joke about dogs that sing.") == 1
    assert asked(sim, "A joke about cats in hats.") == 1
    assert asked(sim, "A joke about fish that fly.") <= 1
    # item 1 changed: it ran again under its name; the first one's record stays beside it
    old = result.records["jokes[1]~superseded"]
    assert old.status in ("done", "skipped")
    assert result.records["jokes[1]"].status == "done"
    # item 3 was dropped: it never feeds the map
    dropped = result.records["jokes[3]"]
    assert dropped.status in ("done", "skipped")
    if dropped.status == "skipped":
        assert dropped.because == "dropped from the final list"
    assert "jokes[3]" not in result.records["jokes"].depends_on
    assert set(result.records["jokes"].depends_on) == {
        "jokes[*]",
        "jokes[0]",
        "jokes[1]",
        "jokes[2]",
    }


def test_a_failing_source_drops_what_it_streamed() -> None:
    """Both replies are invalid as a whole (four items): the source fails; the items that
    streamed (still running) are cancelled and skipped, and the map never runs."""
    four = '{"items": ["grumpy old owls", "cats in boxes", "dogs that sing", "fish that fly"]}'
    sim = simulator(four, latency=0.2, item_latency=30.0)
    result = jokes_graph(sim).run(store=None)
    assert result.status["subjects"] == "failed"
    assert result.status["jokes"] == "skipped" and result.status["jokes[*]"] == "skipped"
    streamed = [n for e in streamed_expands(result) for n in e["added"]]
    assert streamed  # some items did start while the source streamed
    for name in streamed:
        record = result.records[name]
        assert record.status == "skipped", (name, record.status)
        assert record.because == "dropped from the final list"
    assert not [e for e in result.events if e["event"] == "node_complete" and "[" in e["node"]]


def test_a_streamed_item_that_fails_fails_the_map_naming_it() -> None:
    sim = simulator(Subjects(items=ITEMS))
    sim.script(
        error=ProviderError("the joker refused", retryable=False),
        agent="joker",
        pattern="cats in boxes",
    )
    result = jokes_graph(sim).run(store=None)
    assert result.status["jokes[1]"] == "failed"
    assert position(result, "node_start", "jokes[1]") < position(
        result, "node_complete", "subjects"
    )
    assert result.status["jokes[0]"] == "done" and result.status["jokes[2]"] == "done"
    assert result.status["jokes"] == "failed"
    assert "item 'jokes[1]' failed" in (result.records["jokes"].error or "")


def test_a_map_inside_a_subgraph_streams_and_keeps_its_stream_setting() -> None:
    for stream in (True, False):
        sim = simulator(Subjects(items=ITEMS))
        outer = Graph("outer", output="inner", simulator=sim)
        outer.subgraph("inner", jokes_graph(stream=stream))
        result = outer.run(store=None)
        assert result.ok, result.errors
        done = position(result, "node_complete", "inner.subjects")
        starts = [position(result, "node_start", f"inner.jokes[{i}]") for i in range(3)]
        if stream:
            assert all(start < done for start in starts)
            assert {e["node"] for e in streamed_expands(result)} == {"inner.jokes[*]"}
        else:
            assert all(start > done for start in starts)
            assert not streamed_expands(result)
        assert result.output == [f"JOKE A joke about {s}." for s in ITEMS]


def test_a_map_over_a_streamed_plan_streams_beside_the_plan_and_its_repair() -> None:
    """Two streams read one reply: the Orchestrator's plan grows its subtasks, a map over
    `plan.subtasks` its items; the repair (the first plan names an unknown worker) restarts
    both, and each keeps what the final answer keeps."""
    first = Plan(
        subtasks=[
            Subtask("a", "researcher", "Research owls."),
            Subtask("b", "researcher", "Research cats."),
            Subtask("bad", "poet", "A poem."),
        ],
        synthesis_instructions="Combine them.",
    )
    repaired = Plan(
        subtasks=[
            Subtask("a", "researcher", "Research owls."),
            Subtask("bad", "writer", "A poem."),
        ],
        synthesis_instructions="Combine them.",
    )
    sim = Recording(ttft=0.0, tokens_per_second=1e9, jitter=0.0, time_scale=1.0)
    sim.script(repaired, agent="planner", latency=0.2)
    sim.script(first, agent="planner", latency=0.2, times=1)
    for worker in ("researcher", "writer", "synthesizer"):
        sim.script(lambda r: "OUT " + r.messages[0]["content"], agent=worker, latency=0.0)
    g = Orchestrator({"researcher": "You research.", "writer": "You write."}).graph(
        "Brief me.", simulator=sim
    )

    def brief(item: Subtask) -> str:
        return f"{item.id} by {item.worker}"

    g.map("briefs", brief, over="plan.subtasks")
    result = g.run(store=None)
    assert result.ok, result.errors
    assert result.outputs["briefs"] == ["a by researcher", "bad by writer"]
    sources = {e["node"] for e in streamed_expands(result)}
    assert sources == {"plan", "briefs[*]"}
    done = position(result, "node_complete", "plan")
    assert position(result, "node_start", "briefs[0]") < done
    assert position(result, "node_start", "a") < done
    assert result.records["briefs[1]~superseded"].status in ("done", "skipped")  # b, redefined
    assert set(result.records["briefs"].depends_on) == {"briefs[*]", "briefs[0]", "briefs[1]"}
    assert sum(1 for r in sim.requests if r.messages[0]["content"] == "Research owls.") == 1


# ------------------------------------------------------------------ off, keys, resume
def test_stream_false_is_the_barrier_with_the_same_keys(tmp_path: Path) -> None:
    results = {}
    for stream in (True, False):
        sim = simulator(Subjects(items=ITEMS))
        results[stream] = jokes_graph(sim, stream=stream).run(store=tmp_path / f"s{stream}")
        assert results[stream].ok, results[stream].errors
    off = results[False]
    done = position(off, "node_complete", "subjects")
    assert all(position(off, "node_start", f"jokes[{i}]") > done for i in range(3))
    assert not streamed_expands(off)
    assert len(streamed_expands(results[True])) == 3
    keys = {s: {n: r.key for n, r in results[s].records.items()} for s in results}
    assert keys[True] == keys[False]
    assert results[True].outputs == results[False].outputs


def test_a_map_with_a_condition_waits_for_the_whole_list() -> None:
    sim = simulator(Subjects(items=ITEMS))
    result = jokes_graph(sim, when=lambda subjects: len(subjects.items) > 1).run(store=None)
    assert result.ok, result.errors
    assert not streamed_expands(result)
    done = position(result, "node_complete", "subjects")
    assert all(position(result, "node_start", f"jokes[{i}]") > done for i in range(3))


def test_resume_after_a_streamed_and_retired_run_recomputes_nothing(tmp_path: Path) -> None:
    first_reply = '{"items": ["grumpy old owls", "cats in boxes", "dogs that sing", "fish"]}'
    sim = simulator(first_reply, Subjects(items=ITEMS))
    g = jokes_graph(sim)
    first = g.run(store=tmp_path / "store")
    assert first.ok, first.errors
    count = len(sim.requests)
    again = g.run(store=tmp_path / "store")
    assert again.ok, again.errors
    assert len(sim.requests) == count  # nothing asked again
    assert set(again.status.values()) == {"cached"}
    assert not [e for e in again.events if e["event"] == "node_start"]
    assert again.outputs["jokes"] == first.outputs["jokes"]
    for i in range(3):
        assert again.records[f"jokes[{i}]"].key == first.records[f"jokes[{i}]"].key
