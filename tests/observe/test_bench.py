"""`dagagents bench`: parallel vs sequential against the lower bound, simulated or replayed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import cli_env, dagagents_cmd

from dagagents import Agent, Graph, SimulatedProvider
from dagagents.observe.bench import bench

GRAPH = """
from dagagents import Agent, Graph, SimulatedProvider
sim = SimulatedProvider(ttft=0.02, tokens_per_second=4000, jitter=0.0)
a = Agent("worker", model="claude-haiku-4-5", max_tokens=200)
graph = Graph("benchme", simulator=sim)
for k in range(4):
    graph.task(f"w{k}", a, f"part {k}")
graph.task("join", a, "combine", depends_on=[f"w{k}" for k in range(4)])
"""


def small_graph() -> Graph:
    g = Graph("fan", simulator=SimulatedProvider(ttft=0.02, tokens_per_second=4000, jitter=0.0))
    a = Agent("worker", model="claude-haiku-4-5", max_tokens=200)
    for k in range(3):
        g.task(f"w{k}", a, f"part {k}")
    g.task("join", a, "combine", depends_on=["w0", "w1", "w2"])
    return g


def test_report_figures_are_consistent() -> None:
    report = bench(small_graph(), concurrency=2, repeat=2)
    assert len(report.parallel) == len(report.sequential) == 2
    assert all(r.ok for r in (*report.parallel, *report.sequential))
    run = report.median_run(report.parallel)
    durations = {n: r.duration for n, r in run.records.items()}
    assert report.total_work == pytest.approx(sum(durations.values()))
    assert report.critical_path[-1] == "join" and report.critical_path[0].startswith("w")
    assert report.critical_time == pytest.approx(sum(durations[n] for n in report.critical_path))
    assert report.lower_bound == max(report.critical_time, report.total_work / 2)
    # Sequential really ran one node at a time.
    seq = report.median_run(report.sequential)
    spans = sorted(seq.timings.values())
    assert all(a[1] <= b[0] + 1e-6 for a, b in zip(spans, spans[1:], strict=False))


def test_cli_writes_png_and_json_and_replays_a_recorded_run(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    env = cli_env()
    proc = subprocess.run(
        dagagents_cmd("bench", "g.py", "-c", "2", "--json", "b.json", "-o", "t.png"),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "lower bound" in proc.stdout and "speedup" in proc.stdout
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figures = json.loads((tmp_path / "b.json").read_text())
    assert figures["lower_bound"] == max(figures["critical_time"], figures["total_work"] / 2)

    run = subprocess.run(
        dagagents_cmd("run", "g.py", "-q"),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    proc = subprocess.run(
        dagagents_cmd("bench", "g.py", "-c", "4", "--from-run", "latest", "--json", "r.json"),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    replay = json.loads((tmp_path / "r.json").read_text())
    assert replay["mode"].startswith("replay of run")
    assert (tmp_path / "bench-benchme.png").is_file()


def test_cli_replay_of_another_graph_is_refused(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    (tmp_path / "h.py").write_text(GRAPH.replace('Graph("benchme"', 'Graph("other"'))
    env = cli_env()
    subprocess.run(
        dagagents_cmd("run", "h.py", "-q"), env=env, cwd=tmp_path, timeout=120, check=True
    )
    proc = subprocess.run(
        dagagents_cmd("bench", "g.py", "--from-run", "latest"),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "is of graph 'other', not 'benchme'" in proc.stderr
