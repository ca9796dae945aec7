"""benchmarks/startup.py runs and reports what it claims (figures are never asserted)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.startup import first_node_probe, import_breakdown

TINY = """
from dagagents import Graph

graph = Graph("tiny")
graph.add_step("one", lambda: 1)
"""


def test_the_probe_and_the_import_breakdown(tmp_path: Path) -> None:
    graph = tmp_path / "tiny.py"
    graph.write_text(TINY)
    cpu, imported = first_node_probe(str(graph))
    assert cpu > 0
    assert imported["heavy"] == [] and imported["modules"] > 100
    found = import_breakdown(str(graph), 1)
    groups = {k: v for k, v in found.items() if k != "total"}
    assert {"networkx", "pydantic", "dagagents"} <= set(groups)
    assert abs(sum(groups.values()) - found["total"]) < 1
