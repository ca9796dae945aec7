"""The pure part of streamed plans: which subtasks of a plan still being written may start.

An item of a partial JSON list counts only once the next item began or the list closed (the
last element of a partial parse may be truncated); each subtask must be valid on its own.
"""

from __future__ import annotations

import json

import pytest

from dagagents.model.partial import complete_items
from dagagents.model.plan import Plan, Subtask, streamed_subtasks

WORKERS = ("researcher", "writer")


def plan_json(*subtasks: dict, indent: int | None = None, instructions_first: bool = False) -> str:
    data = {"subtasks": list(subtasks), "synthesis_instructions": "Combine them."}
    if instructions_first:
        data = {"synthesis_instructions": data["synthesis_instructions"], **data}
    return json.dumps(data, indent=indent)


def sub(sid: str, worker: str = "researcher", task: str = "Do the part.", deps=()) -> dict:
    return {"id": sid, "worker": worker, "task": task, "depends_on": list(deps)}


PLAN = (
    sub("market", task='Size the market, with "quotes" and {braces} and ] and }.'),
    sub("risks", worker="writer"),
    sub("summary", worker="writer", deps=("market", "risks")),
)


# ------------------------------------------------------------------ complete_items
def test_a_truncated_last_element_is_not_complete() -> None:
    text = '{"subtasks": [{"id": "a", "worker": "w", "task": "do x"}'
    assert complete_items(text, "subtasks") == ([], False)
    text = '{"subtasks": [{"id": "a", "worker": "w", "task": "do x"}, {"i'
    assert complete_items(text, "subtasks") == ([{"id": "a", "worker": "w", "task": "do x"}], False)


def test_the_next_sibling_or_the_list_closing_completes_an_item() -> None:
    base = '{"subtasks": [{"id": "a"}, {"id": "b"}'
    assert complete_items(base, "subtasks")[0] == [{"id": "a"}]
    # a key after the list: closed, every item complete
    closed = base + '], "synthesis_instructions": "x'
    assert complete_items(closed, "subtasks") == ([{"id": "a"}, {"id": "b"}], True)
    # the whole reply is complete JSON
    assert complete_items(base + "]}", "subtasks") == ([{"id": "a"}, {"id": "b"}], True)


@pytest.mark.parametrize(
    "text", ["", "   ", "not json", "[1, 2]", '{"other": 1}', '{"subtasks": 3}']
)
def test_nothing_usable_yet(text: str) -> None:
    assert complete_items(text, "subtasks") == ([], False)


def test_a_top_level_list_and_a_fence() -> None:
    assert complete_items("[1, 2, 3", None) == ([1, 2], False)
    assert complete_items("[1, 2, 3]", None) == ([1, 2, 3], True)
    assert complete_items('```json\n{"subtasks": [{"id": "a"}, {', "subtasks")[0] == [{"id": "a"}]


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("instructions_first", [False, True])
def test_every_prefix_yields_a_prefix_of_the_final_items(
    indent: int | None, instructions_first: bool
) -> None:
    """Byte by byte, the complete items only grow, each exactly as in the final plan."""
    text = plan_json(*PLAN, indent=indent, instructions_first=instructions_first)
    final = list(PLAN)
    seen = 0
    for end in range(len(text) + 1):
        items, closed = complete_items(text[:end], "subtasks")
        assert items == final[: len(items)], text[:end]
        assert len(items) >= seen
        seen = len(items)
        if len(items) < len(final):
            assert not closed
    assert seen == len(final)


def test_an_item_is_complete_before_the_plan_ends() -> None:
    text = plan_json(*PLAN)
    cut = text.index('{"id": "risks"') + 1  # the second subtask has only begun
    assert [s.id for s in streamed_subtasks(text[:cut], WORKERS)] == ["market"]


# ------------------------------------------------------------------ streamed_subtasks
def ids(text: str, **kw) -> list[str]:
    return [s.id for s in streamed_subtasks(text, WORKERS, **kw)]


def test_valid_subtasks_stream_in_plan_order() -> None:
    text = plan_json(*PLAN)
    assert ids(text) == ["market", "risks", "summary"]
    got = streamed_subtasks(text, WORKERS)
    assert got == Plan.model_validate_json(text).subtasks
    assert isinstance(got[0], Subtask)


def test_an_unknown_worker_never_streams_nor_do_its_dependants() -> None:
    text = plan_json(sub("a", worker="poet"), sub("b", deps=("a",)), sub("c"))
    assert ids(text) == ["c"]


def test_a_dependency_not_yet_seen_waits_for_the_whole_plan() -> None:
    text = plan_json(sub("b", deps=("a",)), sub("a"), sub("c", deps=("b",)))
    assert ids(text) == ["a"]


def test_duplicate_reserved_and_malformed_ids_and_empty_tasks_are_refused() -> None:
    text = plan_json(
        sub("a"),
        sub("a", worker="writer"),  # duplicate: the first stays
        sub("plan"),
        sub("9lives"),
        sub("blank", task="   "),
        sub("self", deps=("self",)),
        {"id": "extra", "worker": "writer", "task": "x", "colour": "red"},  # schema error
        {"id": "nodeps", "worker": "writer"},  # no task
        sub("ok", deps=("a",)),
    )
    assert ids(text, reserved=("plan", "synthesis")) == ["a", "ok"]
    assert streamed_subtasks(text, WORKERS)[0].worker == "researcher"


def test_no_more_than_max_subtasks() -> None:
    text = plan_json(*(sub(f"s{i}") for i in range(5)))
    assert ids(text, max_subtasks=3) == ["s0", "s1", "s2"]


def test_a_truncated_subtask_never_streams() -> None:
    text = plan_json(sub("a"), sub("b", task="A long task text"))
    cut = text.index("long task")
    assert ids(text[:cut]) == ["a"]
