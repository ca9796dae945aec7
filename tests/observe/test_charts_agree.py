"""Charts that do not mislead: one agent has one colour in every chart, a failed bar looks
like its legend, failure and critical path never share a border, and the path highlighted is
the one that actually set the wall time."""

from __future__ import annotations

import time
from pathlib import Path

from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgba

from dagagents import Agent, Graph, Script, SimulatedProvider
from dagagents.observe.bench import bench
from dagagents.observe.palette import CRITICAL_COLOUR, FAILED_COLOUR
from dagagents.observe.render import diagram_from_run, to_dot, to_mermaid
from dagagents.observe.report import write_report
from dagagents.observe.summary import RunData, load_run, realised_critical_path, summarize
from dagagents.observe.timeline import timeline_figure

FAST = {"ttft": 0.0, "tokens_per_second": 1e9, "jitter": 0.0}


def legend(fig: object) -> dict[str, object]:
    return {h.get_label(): h for h in fig.legends[0].legend_handles}  # type: ignore[attr-defined]


def agents_graph(name: str, agents: list[str]) -> Graph:
    g = Graph(name, simulator=SimulatedProvider(**FAST, scripts=[Script(respond="ok")]))
    for agent in agents:
        g.task(f"{agent}_task", Agent(agent), "go")
    return g


def test_one_agent_has_one_colour_in_every_chart() -> None:
    demo = agents_graph("demo", ["planner", "researcher", "analyst", "synthesizer"]).run(store=None)
    other = agents_graph("other", ["researcher", "zeta"]).run(store=None)
    timeline = legend(timeline_figure(demo))
    report = bench(agents_graph("other", ["researcher", "zeta"]), concurrency=2)
    bench_fig = legend(
        timeline_figure(
            report.median_run(report.parallel), compare_with=report.median_run(report.sequential)
        )
    )
    alone = legend(timeline_figure(other))
    colour = timeline["researcher"].get_facecolor()  # type: ignore[attr-defined]
    assert bench_fig["researcher"].get_facecolor() == colour  # type: ignore[attr-defined]
    assert alone["researcher"].get_facecolor() == colour  # type: ignore[attr-defined]
    # Agents in one picture never share a colour.
    faces = [
        timeline[a].get_facecolor() for a in ("planner", "researcher", "analyst", "synthesizer")
    ]  # type: ignore[attr-defined]
    assert len(set(faces)) == 4


def failing_graph() -> Graph:
    g = Graph("fails")

    def slow() -> int:
        time.sleep(0.05)
        return 1

    def boom(slow: int) -> int:
        raise ValueError("broken")

    g.add_step("slow", slow)
    g.add_step("boom", boom)
    g.add_step("fine", lambda: 2)
    return g


def test_a_failed_bar_is_drawn_as_its_legend_shows() -> None:
    result = failing_graph().run(store=None)
    assert result.status["boom"] == "failed"
    fig = timeline_figure(result)
    entry = legend(fig)["failed"]
    hatched = [
        c for c in fig.axes[0].collections if isinstance(c, PolyCollection) and c.get_hatch()
    ]
    assert len(hatched) == 1
    bar = hatched[0]
    assert entry.get_hatch() == bar.get_hatch()  # type: ignore[attr-defined]
    assert tuple(entry.get_facecolor()) == tuple(bar.get_facecolor()[0])  # type: ignore[attr-defined]
    assert tuple(entry.get_edgecolor()) == tuple(bar.get_edgecolor()[0])  # type: ignore[attr-defined]
    assert to_rgba(entry.get_hatchcolor()) == tuple(bar.get_hatchcolor()[0])  # type: ignore[attr-defined]


def test_a_failed_nodes_border_differs_from_the_critical_paths(tmp_path: Path) -> None:
    result = failing_graph().run(store=tmp_path / "store")
    run = load_run(result.run_id, tmp_path / "store")
    d = diagram_from_run(run)
    assert d.critical == ["slow", "boom"]  # the failure ended the chain that ran longest
    assert FAILED_COLOUR != CRITICAL_COLOUR
    dot = to_dot(d).source
    boom_line = next(line for line in dot.splitlines() if line.strip().startswith("boom "))
    slow_line = next(line for line in dot.splitlines() if line.strip().startswith("slow "))
    assert f'color="{FAILED_COLOUR}"' in boom_line and CRITICAL_COLOUR not in boom_line
    assert f'color="{CRITICAL_COLOUR}"' in slow_line
    mermaid = to_mermaid(d)
    assert f"classDef failed fill:#ffcdd2,stroke:{FAILED_COLOUR}" in mermaid
    critical_class = next(line for line in mermaid.splitlines() if line.endswith(" critical"))
    ids = {name: f"n{i}" for i, name in enumerate(d.nodes)}
    assert ids["slow"] in critical_class and ids["boom"] not in critical_class


def realised_graph() -> Graph:
    """With one slot, `b -> c` set the wall time, though `a` alone is the longest node."""
    g = Graph("realised")

    def a() -> str:
        time.sleep(0.6)
        return "a"

    def b() -> str:
        time.sleep(0.05)
        return "b"

    def c(b: str) -> str:
        time.sleep(0.05)
        return "c"

    g.add_step("a", a)
    g.add_step("b", b)
    g.add_step("c", c)
    return g


def test_report_highlights_the_realised_critical_path(tmp_path: Path) -> None:
    result = realised_graph().run(store=tmp_path / "store", concurrency=1)
    order = [e["node"] for e in result.events if e["event"] == "node_start"]
    assert order == ["b", "a", "c"]
    run = load_run(result.run_id, tmp_path / "store")
    path, _ = realised_critical_path(run)
    assert path == ["b", "c"]
    s = summarize(run)
    assert s.realised_path == ["b", "c"]
    assert s.critical_path == ["a"]  # the longest by node time: not what set the wall
    html = write_report(run, tmp_path / "report.html").read_text()
    assert "b → c" in html
    assert "b ★" in html and "c ★" in html and "a ★" not in html
    # The timeline outlines exactly the realised chain.
    fig = timeline_figure(run)
    rows = [n.name for n in RunData.start_order(run)]
    outlined = set()
    for coll in fig.axes[0].collections:
        if isinstance(coll, PolyCollection):
            for verts, edge in zip(coll.get_paths(), coll.get_edgecolor(), strict=False):
                row = round(float(verts.vertices[:4, 1].mean()))
                if tuple(edge[:3]) == to_rgba(CRITICAL_COLOUR)[:3]:  # alpha aside
                    outlined.add(rows[row])
    assert outlined == {"b", "c"}


def test_bench_reports_the_realised_critical_path() -> None:
    report = bench(realised_graph(), concurrency=1)
    assert report.realised_path == ["b", "c"]
    assert report.critical_path == ["a"]  # still the lower bound's longest chain
    assert report.to_json()["realised_critical_path"] == ["b", "c"]
