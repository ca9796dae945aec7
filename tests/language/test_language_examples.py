"""The workflow examples in graphs/ run offline and do what their docstrings say."""

from __future__ import annotations

from pathlib import Path

import pytest

from dagagents import Graph

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


def run(name: str, **inputs: str):  # noqa: ANN201 - a RunResult
    graph = Graph.load(GRAPHS / f"{name}.py")
    return graph.run(inputs=inputs, store=None, provider="simulated")


@pytest.mark.parametrize(
    "name",
    [
        "map_reduce",
        "routing",
        "prompt_chaining",
        "evaluator_optimizer",
        "orchestrator_worker",
        "subgraph",
    ],
)
def test_example_runs_offline(name: str) -> None:
    result = run(name)
    assert result.ok, result.errors
    assert result.output


def test_examples_behave_as_described() -> None:
    mr = run("map_reduce")
    assert len(mr.outputs["jokes"]) == 4
    routed = run("routing", request="tell me a joke about ducks")
    assert routed.status["joke"] == "done"
    assert routed.status["poem"] == routed.status["story"] == "skipped"
    loop = run("evaluator_optimizer")
    assert len(loop.rounds("refine")) == 3
    ow = run("orchestrator_worker")
    assert len(ow.outputs["sections"]) == 3
    sub = run("subgraph")
    assert {"research.sources", "research.notes", "research"} <= set(sub.status)


def test_map_benchmark_and_langgraph_ports_run() -> None:
    import subprocess
    import sys

    from conftest import ROOT, cli_env

    quick = subprocess.run(
        [sys.executable, "-m", "benchmarks.map_overhead", "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=cli_env(),
        timeout=300,
    )
    assert quick.returncode == 0, quick.stderr
    assert "per-item / per-static-node" in quick.stdout
    ports = subprocess.run(
        [sys.executable, "-m", "benchmarks.langgraph_workflows"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=cli_env(),
        timeout=300,
    )
    assert ports.returncode == 0, ports.stderr
    assert len(ports.stdout.splitlines()) == 7
