"""Streamed plans read delta by delta (`plan.SubtaskReader`, `Orchestrator.streamed_expansion`):
the same subtasks, in the same order, as reading the reply so far whole, each checked once.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dagagents import Agent, Orchestrator
from dagagents.model.plan import SubtaskReader, streamed_subtasks

WORKERS = ("researcher", "writer")


def sub(sid: str, worker: str = "researcher", task: str = "Do [it] {now}.", deps=()) -> dict:
    return {"id": sid, "worker": worker, "task": task, "depends_on": list(deps)}


PLAN = json.dumps(
    {
        "synthesis_instructions": 'Say "why", then ]}.',
        "subtasks": [
            sub("a"),
            sub("b", worker="poet"),  # unknown worker: never streams, nor does d
            sub("c", worker="writer", deps=("a",)),
            sub("d", deps=("b",)),
            sub("a", task="a duplicate"),
            sub("e", deps=("c", "a")),
        ],
    },
    indent=2,
)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_delta_by_delta_equals_the_reply_so_far_read_whole(data: st.DataObject) -> None:
    points = sorted(data.draw(st.sets(st.integers(1, len(PLAN) - 1), max_size=40)))
    bounds = [0, *points, len(PLAN)]
    reader = SubtaskReader(WORKERS)
    got: list[str] = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        got.extend(s.id for s in reader.feed(PLAN[start:end]))
        whole = [s.id for s in streamed_subtasks(PLAN[:end], WORKERS)]
        assert got == whole == list(reader.accepted)
    assert got == ["a", "c", "e"]


def test_the_orchestrator_reads_only_what_was_added_and_a_new_reply_afresh() -> None:
    orch = Orchestrator(workers=[Agent("researcher"), Agent("writer")])
    half = PLAN[: PLAN.index('"id": "c"')]
    assert [n.name for n in orch.streamed_expansion(half).nodes] == ["a"]
    assert [n.name for n in orch.streamed_expansion(PLAN).nodes] == ["a", "c", "e"]
    # a repaired reply does not extend the last one: read from its start
    repaired = PLAN.replace('"id": "a"', '"id": "z"', 1).replace('"a"]', '"z"]')
    names = [n.name for n in orch.streamed_expansion(repaired).nodes]
    assert names == [s.id for s in streamed_subtasks(repaired, WORKERS)]
    assert names[0] == "z"
