"""`--rerun` (CLI) and `rerun=` (API): any node of the last run, expanded ones included, and
glob patterns; a name that matches nothing is refused in one sentence (issue 12, item 13)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import run_dagagents

from dagagents import Expansion, Graph, Step, UserError

GRAPH = """
from dagagents import Expansion, Graph, Step


def plan() -> list[str]:
    return ["research_us", "research_eu", "trends"]


def grow(names: list[str]) -> Expansion:
    nodes = [Step(name=n, fn=(lambda n=n: f"notes on {n}")) for n in names]
    return Expansion(nodes=nodes, edges=[(n, "report") for n in names])


def report(plan: list[str], **notes: str) -> str:
    return " | ".join(notes[n] for n in plan)


graph = Graph("planned")
graph.add_step("plan", plan, expand=grow)
graph.add_step("report", report)
"""


def _graph(folder: Path) -> Graph:
    """The graph file the CLI test runs, loaded as the CLI loads it."""
    path = folder / "g.py"
    if not path.exists():
        path.write_text(GRAPH)
    return Graph.load(path)


def _computed(result: Any) -> set[str]:
    return {n for n, s in result.status.items() if s == "done"}


def test_rerun_accepts_an_expanded_node_of_the_last_run(tmp_path: Path) -> None:
    store = tmp_path / "st"
    first = _graph(tmp_path).run(store=store)
    assert first.ok and _computed(first) == {
        "plan",
        "research_us",
        "research_eu",
        "trends",
        "report",
    }
    again = _graph(tmp_path).run(store=store, rerun=["trends"])
    assert again.ok
    # `trends` is recomputed; its output is the same, so `report` stays cached (early cutoff).
    assert _computed(again) == {"trends"}
    assert again.outputs["report"] == first.outputs["report"]


def test_rerun_accepts_a_glob_pattern(tmp_path: Path) -> None:
    store = tmp_path / "st"
    _graph(tmp_path).run(store=store)
    again = _graph(tmp_path).run(store=store, rerun=["research*"])
    assert _computed(again) == {"research_us", "research_eu"}


def test_rerun_of_a_name_that_matches_no_node_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "st"
    _graph(tmp_path).run(store=store)
    with pytest.raises(
        UserError, match=r"^--rerun names unknown node 'nosuch' in graph 'planned'\.$"
    ):
        _graph(tmp_path).run(store=store, rerun=["nosuch"])
    with pytest.raises(UserError, match="unknown node 'zzz\\*'"):
        _graph(tmp_path).run(store=store, rerun=["zzz*"])


def test_cli_rerun_accepts_expanded_nodes_and_globs(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_dagagents(tmp_path, "run", "g.py", "-q", *args, timeout=120)

    assert cli().returncode == 0
    rerun = cli("--rerun", "trends", "--rerun", "research_*")
    assert rerun.returncode == 0, rerun.stderr
    unknown = cli("--rerun", "nosuch")
    assert unknown.returncode == 2
    assert "--rerun names unknown node 'nosuch' in graph 'planned'." in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_expanded_nodes_are_not_known_before_any_run(tmp_path: Path) -> None:
    graph = Graph("fresh")

    def grow(_: Any) -> Expansion:
        return Expansion(nodes=[Step(name="later", fn=lambda: 1)])

    graph.add_step("plan", lambda: 0, expand=grow)
    with pytest.raises(UserError, match="unknown node 'later'"):
        graph.run(store=tmp_path / "st", rerun=["later"])
