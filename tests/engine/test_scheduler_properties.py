"""Property tests of the eager scheduler on random DAGs (hypothesis).

Every node runs exactly once and never before all its dependencies finished; the number
running at once never exceeds `concurrency`; after failures exactly the descendants of the
failed nodes are skipped and everything else completes.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from dagagents import Graph


@st.composite
def random_dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]], list[int], set[int]]:
    n = draw(st.integers(min_value=1, max_value=24))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=3 * n)) if pairs else []
    sleeps = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    failing = draw(st.sets(st.integers(0, n - 1), max_size=3))
    return n, edges, sleeps, failing


class Recorder:
    """Observes the run from inside the steps."""

    def __init__(self) -> None:
        self.clock = itertools.count()
        self.started: dict[str, list[int]] = {}
        self.finished: dict[str, int] = {}
        self.running = 0
        self.peak = 0


def build(
    n: int, edges: list[tuple[int, int]], sleeps: list[int], failing: set[int], rec: Recorder
) -> Graph:
    g = Graph("random")
    preds: dict[int, list[str]] = {i: [] for i in range(n)}
    for i, j in edges:
        preds[j].append(f"n{i}")
    for i in range(n):
        name = f"n{i}"

        async def body(_name: str = name, _i: int = i, **deps: Any) -> str:
            rec.started.setdefault(_name, []).append(next(rec.clock))
            rec.running += 1
            rec.peak = max(rec.peak, rec.running)
            try:
                await asyncio.sleep(sleeps[_i] / 1000)
                if _i in failing:
                    raise RuntimeError(f"boom in {_name}")
                return _name
            finally:
                rec.running -= 1
                rec.finished[_name] = next(rec.clock)

        g.add_step(name, body, depends_on=preds[i])
    return g


@settings(max_examples=60, deadline=None)
@given(dag=random_dags(), concurrency=st.integers(1, 6))
def test_random_dag_invariants(
    dag: tuple[int, list[tuple[int, int]], list[int], set[int]], concurrency: int
) -> None:
    n, edges, sleeps, failing = dag
    rec = Recorder()
    graph = build(n, edges, sleeps, failing, rec)
    result = graph.run(concurrency=concurrency, store=None)

    g = nx.DiGraph()
    g.add_nodes_from(f"n{i}" for i in range(n))
    g.add_edges_from((f"n{i}", f"n{j}") for i, j in edges)
    failed = {f"n{i}" for i in failing}
    # A failing node below another failing node is never reached: it is skipped.
    reached_failures = {f for f in failed if not (nx.ancestors(g, f) & failed)}
    skipped = set().union(*(nx.descendants(g, f) for f in reached_failures)) if failed else set()

    assert rec.peak <= concurrency
    for node in g:
        if node in skipped:
            assert result.status[node] == "skipped"
            assert node not in rec.started
            assert result.records[node].because in reached_failures
        elif node in reached_failures:
            assert result.status[node] == "failed"
            assert f"boom in {node}" in (result.records[node].error or "")
        else:
            assert result.status[node] == "done"
            assert result.outputs[node] == node
        if node in rec.started:
            assert len(rec.started[node]) == 1, f"{node} ran more than once"
            for dep in g.predecessors(node):
                assert rec.finished[dep] < rec.started[node][0], f"{node} started before {dep}"


def test_longest_remaining_path_goes_first() -> None:
    """With one slot, the root heading the longer chain starts before the short one."""
    order: list[str] = []
    g = Graph("priority")

    def make(name: str):  # noqa: ANN202
        async def body(**_: Any) -> str:
            order.append(name)
            return name

        return body

    g.add_step("short", make("short"))
    g.add_step("long", make("long"))
    prev = "long"
    for k in range(4):
        g.add_step(f"long{k}", make(f"long{k}"), depends_on=[prev])
        prev = f"long{k}"
    g.run(concurrency=1, store=None)
    assert order.index("long") < order.index("short")
