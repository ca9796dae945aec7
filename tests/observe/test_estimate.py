"""`dagagents estimate`: predictions before spending, checked against the runs that follow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The planner's structured output imports the SDK on its first call (about a second); import it
# now so that one-off cost does not land inside the first run's timings only.
import anthropic  # noqa: F401
import networkx as nx
import orjson
import pytest
from conftest import ROOT, run_dagagents

from dagagents import Agent, Graph, SimulatedProvider, Store
from dagagents.observe.estimate import estimate, simulate_schedule

GRAPHS = ROOT / "graphs"


def test_list_schedule_matches_hand_computed_cases() -> None:
    chain = nx.DiGraph([("a", "b"), ("b", "c")])
    wide = nx.DiGraph()
    wide.add_nodes_from("wxyz")
    d = {"a": 1.0, "b": 2.0, "c": 3.0, "w": 4.0, "x": 3.0, "y": 2.0, "z": 1.0}
    assert max(e for _, e in simulate_schedule(chain, d, 8).values()) == 6.0
    assert max(e for _, e in simulate_schedule(wide, d, 8).values()) == 4.0
    assert max(e for _, e in simulate_schedule(wide, d, 1).values()) == 10.0
    # Two slots, longest first: w and x start; y takes x's slot at 3, z takes w's at 4.
    times = simulate_schedule(wide, d, 2)
    assert max(e for _, e in times.values()) == 5.0
    assert times["w"] == (0.0, 4.0) and times["x"] == (0.0, 3.0)
    assert times["y"] == (3.0, 5.0) and times["z"] == (4.0, 5.0)


def test_without_history_the_estimate_uses_token_budgets() -> None:
    graph = Graph.load(str(GRAPHS / "fanout.py"))
    e = estimate(graph, concurrency=8, store=Store(".dagagents"))
    assert e.from_history == 0 and not e.history_runs
    assert all(n.source == "budget" for n in e.nodes.values())
    # Five independent workers then the synthesis: wall = slowest worker + synthesis.
    workers = [e.nodes[n].duration for n in e.nodes if n != "synthesis"]
    assert e.wall == pytest.approx(max(workers) + e.nodes["synthesis"].duration)
    assert e.sequential == pytest.approx(sum(n.duration for n in e.nodes.values()))
    assert [n.name for n in e.coordination] == ["synthesis"]
    assert set(e.cost_by_model()) == {"claude-sonnet-4-6", "claude-opus-4-6"}
    assert e.cost > 0 and "Parallelism pays" in e.recommendation()
    sequential = estimate(graph, concurrency=1)
    assert sequential.wall == pytest.approx(e.sequential)


def test_a_chain_is_told_that_parallelism_saves_nothing() -> None:
    g = Graph("chain")
    agent = Agent("a", max_tokens=300)
    g.task("one", agent, "First.")
    g.task("two", agent, "Second: {one}", depends_on=["one"])
    g.task("three", agent, "Third: {two}", depends_on=["two"])
    e = estimate(g, concurrency=8)
    assert e.wall == pytest.approx(e.sequential)
    assert "pipeline" in e.recommendation()


def test_coordination_heavier_than_the_saving_is_called_out() -> None:
    g = Graph("tiny-fanout")
    worker = Agent("worker", max_tokens=50)
    boss = Agent("boss", model="claude-opus-4-6", max_tokens=2000)
    g.task("a", worker, "A.")
    g.task("b", worker, "B.")
    g.task("merge", boss, "Merge.", depends_on=["a", "b"], tags={"role": "synthesis"})
    e = estimate(g, concurrency=8)
    assert e.coordination_time > e.saved
    assert "Coordination costs more than parallelism saves" in e.recommendation()


def test_estimate_after_one_run_predicts_the_next_fanout_run(tmp_path: Path) -> None:
    graph = Graph.load(str(GRAPHS / "fanout.py"))
    store = Store(tmp_path / "st")
    # Long enough that a loaded machine's scheduling delays (tens of ms) stay small beside the
    # simulated latencies the estimate predicts.
    sim = SimulatedProvider(time_scale=0.3)
    first = graph.run(provider=sim, store=store, concurrency=3)
    predicted = estimate(graph, concurrency=3, store=store)
    assert predicted.from_history == len(graph)
    assert predicted.cost == pytest.approx(first.cost_usd, rel=1e-6)
    second = graph.run(provider=sim, store=store, concurrency=3, fresh=True)
    assert predicted.wall == pytest.approx(second.wall, rel=0.2)
    assert set(predicted.cached) == set(graph.specs)  # a non-fresh rerun would be all cached


def test_estimate_on_market_report_after_one_simulated_run(tmp_path: Path) -> None:
    graph = Graph.load(str(GRAPHS / "market_report.py"))
    assert graph.simulator is not None
    graph.simulator.time_scale = 0.1  # the demo's scripted latencies, ten times faster
    store = Store(tmp_path / "st")
    try:
        blind = estimate(graph, concurrency=8, store=store)
        assert blind.unseen_expansions and "run it once" in blind.recommendation()
        first = graph.run(store=store, concurrency=8)
        assert first.ok
        predicted = estimate(graph, concurrency=8, store=store)
        assert predicted.expanded_from == first.run_id
        assert set(predicted.nodes) == set(first.records)  # the planned subtasks are seen
        assert not predicted.unseen_expansions
        second = graph.run(store=store, concurrency=8, fresh=True)
        assert second.ok
    finally:
        graph.simulator.time_scale = 1.0
    assert predicted.wall == pytest.approx(second.wall, rel=0.2)
    assert predicted.sequential > predicted.wall
    assert {n.role for n in predicted.coordination} == {"planner", "synthesis"}


def write_expanding_graph(path: Path) -> None:
    path.write_text(
        "from dagagents import Expansion, Graph, Step\n"
        "graph = Graph('grows')\n"
        "def more(n):\n"
        "    return Expansion(nodes=[Step(name=f'part{i}', fn=lambda: i) for i in range(n)])\n"
        "@graph.step(expand=more)\n"
        "def plan() -> int:\n    return 3\n"
    )


def test_cli_estimate(tmp_path: Path) -> None:
    out = run_dagagents(
        Path.cwd(),
        "estimate",
        str(GRAPHS / "fanout.py"),
        "-c",
        "2",
        "--nodes",
        timeout=120,
        COLUMNS="200",
    )
    assert out.returncode == 0, out.stderr
    for needle in (
        "predicted, 2 at once",
        "sequential",
        "claude-opus-4-6",
        "coordination overhead",
        "recommendation:",
        "token budgets",
    ):
        assert needle in out.stdout
    grows = tmp_path / "grows.py"
    write_expanding_graph(grows)
    blind = run_dagagents(Path.cwd(), "estimate", str(grows))
    assert blind.returncode == 0 and "cannot see the planned subtasks" in blind.stdout
    bad = run_dagagents(Path.cwd(), "estimate", str(GRAPHS / "fanout.py"), "-c", "0")
    assert bad.returncode == 2 and "--concurrency" in bad.stderr and "Traceback" not in bad.stderr


def test_the_runtime_and_estimate_read_one_history_across_runs(tmp_path: Path) -> None:
    """A node cached in the newest run carries the duration its checkpoint recorded: both the
    runtime's priorities and `estimate` take it from there, and read no older run. A manifest
    written before cached nodes kept it sends both back to the run that computed the node."""
    from dagagents.engine.checkpoints import previous_durations
    from dagagents.observe.estimate import read_history

    g = Graph("history")
    g.add_step("a", lambda: 1)
    g.add_step("b", lambda a: a + 1, depends_on=["a"])
    store = Store(tmp_path / "st")
    first = g.run(store=store)
    second = g.run(store=store, rerun=["b"])
    assert second.status == {"a": "cached", "b": "done"}
    assert second.records["a"].compute_seconds == first.records["a"].duration
    durations = previous_durations(store, "history", g.specs)
    assert durations == {"a": first.records["a"].duration, "b": second.records["b"].duration}
    history = read_history(store, "history", set(g.specs))
    assert history.durations == durations
    assert history.runs == [second.run_id]

    path = tmp_path / "st" / store.manifest_path(second.run_id)
    manifest = orjson.loads(path.read_bytes())
    del manifest["nodes"]["a"]["compute_seconds"]  # as a manifest from before it was kept
    path.write_bytes(orjson.dumps(manifest))
    assert previous_durations(store, "history", g.specs) == durations
    history = read_history(store, "history", set(g.specs))
    assert history.durations == durations
    assert history.runs == [second.run_id, first.run_id]


def test_a_resume_reads_one_manifest_however_many_resumes_came_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each all-cached rerun used to add a manifest without durations, so the next run's start
    read back through every one of them (up to 20 whole-run parses)."""
    from dagagents.engine.checkpoints import previous_durations

    g = Graph("resumes")
    g.add_step("a", lambda: 1)
    g.add_step("b", lambda a: a + 1, depends_on=["a"])
    store = Store(tmp_path / "st")
    first = g.run(store=store)
    for _ in range(4):
        assert set(g.run(store=store).status.values()) == {"cached"}
    read: list[str] = []
    real = Store._manifest_or_none

    def counted(self: Store, run_id: str) -> dict[str, Any] | None:
        read.append(run_id)
        return real(self, run_id)

    monkeypatch.setattr(Store, "_manifest_or_none", counted)
    durations = previous_durations(store, "resumes", g.specs)
    assert durations == {n: r.duration for n, r in first.records.items()}
    assert len(read) == 1


def test_a_declared_duration_is_used_as_the_runtime_uses_it() -> None:
    """`estimate=` orders the runtime's priorities when no earlier run timed the node; the
    estimate predicts the same schedule from it."""
    agent = Agent("a", max_tokens=64)
    g = Graph("declared")
    g.task("slow", agent, "Q1.", estimate=20)
    g.task("quick", agent, "Q2.")
    e = estimate(g, concurrency=1)
    assert (e.nodes["slow"].duration, e.nodes["slow"].source) == (20, "declared")
    assert e.nodes["quick"].source == "budget"
    assert e.wall >= 20
