"""The scheduler core alone, in the style of CPython's Lib/test/test_graphlib.py.

`EagerSorter` is driven by hand (pop_ready / done / fail), without a run loop: its orders,
its guards (a wrong call raises ValueError and changes nothing) and its growth.
"""

from __future__ import annotations

import copy

import networkx as nx
import pytest

from dagagents.engine.scheduler import EagerSorter, remaining_path_lengths


def sorter(edges: list[tuple[str, str]], nodes: tuple[str, ...] = ()) -> EagerSorter:
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    return EagerSorter(graph, remaining_path_lengths(graph, lambda _: 1.0))


def ready_groups(s: EagerSorter) -> list[tuple[str, ...]]:
    """Like graphlib's static_order_with_groups: all ready nodes, then mark them all done."""
    groups = []
    while s.is_active():
        group = []
        while s.has_ready():
            group.append(s.pop_ready())
        for node in group:
            s.done(node)
        groups.append(tuple(sorted(group)))
    return groups


def snapshot(s: EagerSorter) -> dict[str, object]:
    return copy.deepcopy(
        {
            "state": s.state,
            "waiting": s._waiting,
            "ready": sorted(s._ready),
            "queues": {k: list(q) for k, q in s._queues.items()},
            "open": s._open,
        }
    )


# ------------------------------------------------------------------ orders
def test_simple_graph_groups() -> None:
    s = sorter([("1", "2"), ("1", "3"), ("2", "4"), ("3", "4"), ("4", "5")])
    assert ready_groups(s) == [("1",), ("2", "3"), ("4",), ("5",)]


def test_no_dependencies_all_ready_at_once() -> None:
    s = sorter([], nodes=("a", "b", "c"))
    assert ready_groups(s) == [("a", "b", "c")]


def test_empty_graph_is_not_active() -> None:
    s = sorter([])
    assert not s.is_active()
    assert not s.has_ready()


def test_a_node_is_ready_the_moment_its_last_dependency_is_done() -> None:
    s = sorter([("a", "c"), ("b", "c")])
    first, second = s.pop_ready(), s.pop_ready()
    assert s.done(first) == []
    assert s.done(second) == ["c"]


def test_longest_remaining_path_goes_first() -> None:
    s = sorter([("long", "x"), ("x", "y")], nodes=("short",))
    assert s.pop_ready() == "long"


def test_fail_skips_exactly_the_descendants() -> None:
    s = sorter([("a", "b"), ("b", "c"), ("root", "d")], nodes=("a", "root"))
    nodes = {s.pop_ready(), s.pop_ready()}
    assert nodes == {"a", "root"}
    assert sorted(s.fail("a")) == ["b", "c"]
    assert s.done("root") == ["d"]
    assert s.pop_ready() == "d"
    s.done("d")
    assert not s.is_active()
    assert s.state == {
        "a": "failed",
        "b": "skipped",
        "c": "skipped",
        "root": "done",
        "d": "done",
    }


# ------------------------------------------------------------------ guards
def test_done_on_a_node_never_handed_out_raises_and_changes_nothing() -> None:
    s = sorter([("a", "b")])
    before = snapshot(s)
    with pytest.raises(ValueError, match="was not passed out"):
        s.done("a")  # ready, but never popped
    with pytest.raises(ValueError, match="was not passed out"):
        s.done("b")  # still waiting for a
    assert snapshot(s) == before


def test_done_on_an_unknown_node_raises_and_changes_nothing() -> None:
    s = sorter([("a", "b")])
    s.pop_ready()
    before = snapshot(s)
    with pytest.raises(ValueError, match="was not added"):
        s.done("nosuch")
    with pytest.raises(ValueError, match="was not added"):
        s.fail("nosuch")
    with pytest.raises(ValueError, match="was not added"):
        s.cancelled("nosuch")
    assert snapshot(s) == before
    assert s.is_active()


def test_double_done_raises_and_does_not_release_a_successor_early() -> None:
    s = sorter([("a", "c"), ("b", "c")])
    a, b = s.pop_ready(), s.pop_ready()
    s.done(a)
    before = snapshot(s)
    with pytest.raises(ValueError, match="already marked done"):
        s.done(a)
    assert snapshot(s) == before
    assert not s.has_ready()  # c still waits for b, which is still running
    assert s.done(b) == ["c"]


def test_fail_or_cancel_after_done_raises() -> None:
    s = sorter([], nodes=("a",))
    s.done(s.pop_ready())
    before = snapshot(s)
    with pytest.raises(ValueError, match="already marked done"):
        s.fail("a")
    with pytest.raises(ValueError, match="already marked done"):
        s.cancelled("a")
    assert snapshot(s) == before


def test_done_on_a_skipped_node_raises() -> None:
    s = sorter([("a", "b")])
    s.fail(s.pop_ready())
    with pytest.raises(ValueError, match="already marked skipped"):
        s.done("b")


def test_pop_ready_with_nothing_ready_raises() -> None:
    s = sorter([("a", "b")])
    s.pop_ready()
    with pytest.raises(ValueError, match="no node is ready"):
        s.pop_ready()


# ------------------------------------------------------------------ growth
def test_add_grows_the_graph_while_it_runs() -> None:
    s = sorter([("plan", "synth")])
    plan = s.pop_ready()
    skipped = s.add(["w1", "w2"], [("plan", "w1"), ("plan", "w2"), ("w1", "synth")], {})
    assert skipped == []
    assert sorted(s.done(plan)) == ["w1", "w2"]
    assert ready_groups(s) == [("w1", "w2"), ("synth",)]


def test_add_refuses_a_node_that_exists_and_changes_nothing() -> None:
    s = sorter([("a", "b")])
    before = snapshot(s)
    with pytest.raises(ValueError, match="already added"):
        s.add(["b", "c"], [], {})
    assert snapshot(s) == before


def test_add_refuses_an_edge_into_a_started_node_or_from_nowhere() -> None:
    s = sorter([], nodes=("a",))
    s.pop_ready()
    before = snapshot(s)
    with pytest.raises(ValueError, match="already running"):
        s.add(["x"], [("x", "a")], {})
    with pytest.raises(ValueError, match="never added"):
        s.add(["x"], [("ghost", "x")], {})
    assert snapshot(s) == before


def test_add_below_a_failed_node_skips_the_new_nodes() -> None:
    s = sorter([], nodes=("a", "b"))
    s.fail(s.pop_ready())
    failed = next(n for n, st in s.state.items() if st == "failed")
    assert s.add(["c"], [(failed, "c")], {}) == [("c", failed)]
    assert s.state["c"] == "skipped"


def test_equal_priorities_come_out_in_the_order_they_became_ready() -> None:
    """Ready nodes of one priority share a FIFO queue: first ready, first out, and a node of
    higher priority that becomes ready later still goes before all of them."""
    graph = nx.DiGraph()
    graph.add_nodes_from(["w1", "w2", "w3", "gate"])
    graph.add_edge("gate", "urgent")
    priority = {"w1": 1.0, "w2": 1.0, "w3": 1.0, "gate": 9.0, "urgent": 5.0}
    s = EagerSorter(graph, priority)
    assert s.pop_ready() == "gate"
    assert s.pop_ready() == "w1"
    s.done("gate")  # "urgent" (5.0) is ready now, behind w2 and w3 in time, not in priority
    assert s.top_ready() == 5.0
    assert [s.pop_ready() for _ in range(3)] == ["urgent", "w2", "w3"]
    assert not s.has_ready() and s.top_ready() == 0.0


def test_a_skipped_node_leaves_the_ready_queue() -> None:
    s = sorter([("a", "b")], nodes=("c", "d"))
    a = s.pop_ready()  # the longest path first: a -> b
    assert a == "a"
    s.skip(["c"])
    assert [s.pop_ready()] == ["d"] and not s.has_ready()
    s.fail("a")
    assert s.state["b"] == "skipped" and s.state["c"] == "skipped"
