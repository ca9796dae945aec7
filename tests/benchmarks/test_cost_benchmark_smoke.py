"""benchmarks/cost.py at tiny latencies, so its code cannot rot. Costs come from the fake
server's accounting and are deterministic; wall-time checks are not asserted here."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import cost


def test_cost_benchmark_runs_every_graph_and_mode(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    cost.main(["--ttft", "0.05", "--batch-delay", "0.05", "--json", str(out)])
    report = json.loads(out.read_text())
    rows = {(r["graph"], r["mode"]): r for r in report["rows"]}
    assert len(rows) == 6
    assert rows[("fanout", "warmed")]["cache_writes"] == 1
    assert rows[("fanout", "normal")]["cache_writes"] == 8
    assert report["checks"]["fanout warmed input cost / normal (<= 0.35)"] <= 0.35
    assert report["checks"]["fanout batch cost / normal (<= 0.51)"] <= 0.51
    assert report["checks"]["demo batch cost / normal (<= 0.51)"] <= 0.51
    assert rows[("demo", "batch")]["messages"] == rows[("demo", "normal")]["messages"]
