"""benchmarks/streamed_plans.py at a tiny time scale, so its code cannot rot: every run
passes, the barrier runs start no subtask (map item) before their plan (list) is done, the
simulated streamed runs do. Wall-time ratios are not asserted here (they are the benchmark's business), nor is
the SDK's order at this scale: thousands of tokens a second make the client's per-event work,
not the model, pace the plan there."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import streamed_plans


def test_streamed_plans_benchmark_runs_every_graph_provider_and_mode(tmp_path: Path) -> None:
    out = tmp_path / "streamed.json"
    streamed_plans.main(["--scale", "0.02", "--server", "thread", "--json", str(out)])
    report = json.loads(out.read_text())
    rows = {(r["graph"], r["provider"], r["streamed"]): r for r in report["rows"]}
    assert len(rows) == 12
    for (graph, provider, streamed), row in rows.items():
        assert row["subtasks"] == (7 if graph == "demo" else 12)
        if not streamed:
            assert row["started_before_plan_done"] == 0
        elif provider == "simulated":
            assert row["started_before_plan_done"] >= 1
    assert len(report["checks"]) == 12
