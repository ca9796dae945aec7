"""The incremental reader of a streamed list (`partial.ListReader`): fed a reply delta by delta,
it yields exactly the items a full re-parse of the reply so far yields, each once, and never
reads the reply again, so what a delta costs does not grow with the list.

An item counts as complete once the next item begins or the list closes; whatever follows an
invalid item waits for the whole reply; a leading Markdown fence is tolerated.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagagents.model.partial import ListReader, complete_items

# Strings full of what a boundary scan could trip on: brackets, braces, quotes, commas,
# colons, backslashes (so escapes), and non-ASCII (escaped or not by the writer).
TRICKY = st.text(alphabet=st.sampled_from('ab []{}",:\\/\n\t\u00e9\u4e2d\U0001f600'), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TRICKY
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY, inner, max_size=3),
    max_leaves=8,
)
ITEM_LISTS = st.lists(VALUES, max_size=8)


def dumps(value: Any, style: int) -> str:
    """Three writers: compact, spaced, indented (with or without escaped non-ASCII)."""
    if style == 0:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if style == 1:
        return json.dumps(value)
    return json.dumps(value, indent=2, ensure_ascii=False)


def reply(items: list[Any], field: str | None, style: int, fence: bool) -> str:
    body = {"before": "x", field: items, "after": [1, "]"]} if field else items
    text = dumps(body, style)
    return f"```json\n{text}\n```" if fence else text


def cuts(text: str, data: st.DataObject) -> list[str]:
    """`text` cut into random deltas (single characters included)."""
    points = sorted(
        data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=len(text) // 2 + 1))
    )
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def fed(reader: ListReader, deltas: list[str]) -> list[tuple[list[Any], bool]]:
    """The reader's state after each delta (items so far, closed), checking each item is
    yielded exactly once."""
    states = []
    got: list[Any] = []
    for delta in deltas:
        got.extend(reader.feed(delta))
        assert got == reader.items
        states.append((list(reader.items), reader.closed))
    return states


def reparse(prefix: str, field: str | None) -> tuple[list[Any], bool]:
    """A fresh reader given the whole reply so far at once."""
    reader = ListReader(field)
    reader.feed(prefix)
    return reader.items, reader.closed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=ITEM_LISTS,
    field=st.sampled_from([None, "items"]),
    style=st.integers(0, 2),
    fence=st.booleans(),
    data=st.data(),
)
def test_delta_by_delta_equals_a_full_reparse(
    items: list[Any], field: str | None, style: int, fence: bool, data: st.DataObject
) -> None:
    text = reply(items, field, style, fence)
    deltas = cuts(text, data)
    states = fed(ListReader(field), deltas)
    prefix = ""
    for delta, (got, closed) in zip(deltas, states, strict=True):
        prefix += delta
        assert (got, closed) == reparse(prefix, field), prefix
        # pydantic_core's partial parse of the whole reply so far (the reader's predecessor)
        # never has an item the reader lacks, and lags it by at most the list's last item
        # (it counts that one only once the enclosing object closes or has a later key).
        whole, whole_closed = complete_items(prefix, field)
        assert whole == got[: len(whole)] and len(got) - len(whole) <= 1, prefix
        assert closed or not whole_closed
    assert states[-1] == (items, True)


@settings(max_examples=100, deadline=None)
@given(items=ITEM_LISTS, style=st.integers(0, 2), data=st.data())
def test_an_item_is_complete_exactly_when_the_next_begins(
    items: list[Any], style: int, data: st.DataObject
) -> None:
    """Ground truth from the writer: item i is complete once the text reaches the first
    character of item i+1 (or the closing bracket, for the last)."""
    parts = [dumps(item, style) for item in items]
    text = "[" + ", ".join(parts) + "]"
    ends, at = [], 1
    for i, part in enumerate(parts):
        at += len(part) + (2 if i < len(parts) - 1 else 0)
        ends.append(at)  # the index of the next item's first character, or of `]`
    reader = ListReader(None)
    prefix = ""
    for delta in cuts(text, data):
        reader.feed(delta)
        prefix += delta
        assert reader.items == items[: sum(1 for end in ends if end < len(prefix))]
        assert reader.closed == (len(prefix) == len(text))


def test_the_examples_of_complete_items() -> None:
    """The cases `complete_items` is documented by, read one character at a time."""
    cases = [
        ('{"subtasks": [{"id": "a", "worker": "w", "task": "do x"}', "subtasks", [], False),
        ('{"subtasks": [{"id": "a"}, {"i', "subtasks", [{"id": "a"}], False),
        (
            '{"subtasks": [{"id": "a"}, {"id": "b"}], "s',
            "subtasks",
            [{"id": "a"}, {"id": "b"}],
            True,
        ),
        ("[1, 2, 3", None, [1, 2], False),
        ("[1, 2, 3]", None, [1, 2, 3], True),
        ("[]", None, [], True),
        ('```json\n{"subtasks": [{"id": "a"}, {', "subtasks", [{"id": "a"}], False),
        ('```\n[1, "```", 2]\n```', None, [1, "```", 2], True),
    ]
    for text, field, items, closed in cases:
        reader = ListReader(field)
        for char in text:
            reader.feed(char)
        assert (reader.items, reader.closed) == (items, closed), text


@pytest.mark.parametrize(
    "text",
    ["not json", "Here it is: [1, 2]", "[1, 2]", '{"other": 1}', '{"subtasks": 3, "x": [1, 2]}'],
)
def test_nothing_usable_stops_the_reader(text: str) -> None:
    reader = ListReader("subtasks")
    for char in text:
        reader.feed(char)
    assert (reader.items, reader.closed, reader.stopped) == ([], False, True)


def test_an_invalid_item_and_everything_after_it_wait() -> None:
    reader = ListReader(None)
    assert reader.feed('[1, {"a": 2}, tru, 4, 5]') == [1, {"a": 2}]
    assert reader.stopped and not reader.closed
    assert reader.feed(", 6]") == []
    reader = ListReader(None)
    assert reader.feed("[1, , 2]") == [1] and reader.stopped


def test_restart_reads_a_new_reply_from_its_start() -> None:
    reader = ListReader("xs")
    assert reader.feed('{"xs": [1, 2, 3') == [1, 2]
    reader.restart()
    assert reader.feed('{"xs": ["a", "b"]}') == ["a", "b"]
    assert reader.items == ["a", "b"] and reader.closed


def test_an_escape_split_across_deltas() -> None:
    reader = ListReader(None)
    for delta in ['["a\\', '"]', '", "\\u00', "e9\\\\", '"', ", 3]"]:
        reader.feed(delta)
    assert reader.items == ['a"]', "\u00e9\\", 3] and reader.closed


def test_a_key_written_with_escapes_is_found() -> None:
    reader = ListReader("items")
    assert reader.feed('{"it\\u0065ms": [1, 2]}') == [1, 2]


def test_memory_stays_one_item_long() -> None:
    """Text before the current item is dropped: a long list never accumulates."""
    reader = ListReader("xs")
    reader.feed('{"xs": [')
    for i in range(2000):
        reader.feed(f'"item {i} with [brackets]", ')
    assert len(reader.items) == 1999
    assert len(reader._buf) < 64
