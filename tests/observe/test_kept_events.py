"""`RunResult.events` reads as the trace's records whether or not anything watched the run:
unwatched events are kept compactly and become records when read, in order, each once."""

from __future__ import annotations

from typing import Any

from dagagents import Graph
from dagagents.observe.trace import TRACE_VERSION


def _graph() -> Graph:
    g = Graph("kept")
    g.add_step("a", lambda: 1)
    g.add_step("b", lambda a: a + 1)
    return g


def _shape(events: Any) -> list[tuple[str, str | None]]:
    return [(e["event"], e.get("node")) for e in events]


def test_unwatched_events_read_as_trace_records_in_order() -> None:
    result = _graph().run(store=None)
    events = result.events
    assert _shape(events) == [
        ("run_start", None),
        ("node_start", "a"),
        ("node_complete", "a"),
        ("node_start", "b"),
        ("message", None),
        ("node_complete", "b"),
        ("run_end", None),
    ]
    run_id = events[0]["run"]
    for e in events:
        assert e["v"] == TRACE_VERSION and e["run"] == run_id == result.run_id
        assert isinstance(e["ts"], float) and isinstance(e["t"], float)
        assert not any(key.startswith("(") for key in e)  # no compact-entry key shows
    assert events[-1]["event"] == "run_end" and events[-1]["counts"] == {"done": 2}
    assert events[1] is events[1]  # made once, then the same record
    assert events[1:3] == [events[1], events[2]] and events[-7] == events[0]
    assert events == list(events) and len(events) == 7
    times = [e["t"] for e in events]
    assert times == sorted(times)


def test_a_watched_run_keeps_the_same_records_its_listener_saw() -> None:
    seen: list[dict[str, Any]] = []
    result = _graph().run(store=None, listener=seen.append)
    assert list(result.events) == seen
    assert _shape(result.events) == _shape(_graph().run(store=None).events)


def test_no_events_kept_when_asked_not_to() -> None:
    result = _graph().run(store=None, keep_events=False)
    assert result.events == [] and len(result.events) == 0 and result.ok
