"""`dagagents run` as a user runs it: exit codes, summary, Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

from conftest import ROOT, cli_env, dagagents_cmd, run_dagagents

from dagagents import Graph

GRAPH = """
import asyncio
from dagagents import Graph
graph = Graph("cli")

@graph.step
async def fetch() -> str:
    await asyncio.sleep(float(__import__("os").environ.get("FETCH_SLEEP", "0")))
    return "data"

@graph.step
def parse(fetch: str) -> int:
    if __import__("os").environ.get("BREAK_PARSE"):
        raise ValueError("row 3 has no date")
    return len(fetch)

@graph.step
def other() -> str:
    return "independent"
"""


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_dagagents(tmp_path, "run", *args, timeout=120, **env)


def test_exit_0_and_summary(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    proc = run_cli(tmp_path, "g.py", "--concurrency", "2")
    assert proc.returncode == 0, proc.stderr
    assert "3 done" in proc.stdout
    again = run_cli(tmp_path, "g.py")
    assert again.returncode == 0 and "3 cached" in again.stdout


def test_exit_1_when_a_node_fails(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    proc = run_cli(tmp_path, "g.py", BREAK_PARSE="1")
    assert proc.returncode == 1
    assert "failed: parse: ValueError: row 3 has no date" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ctrl_c_exits_130_and_keeps_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    proc = subprocess.Popen(
        dagagents_cmd("run", "g.py"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(FETCH_SLEEP="30"),
        cwd=tmp_path,
    )
    runs = tmp_path / ".dagagents" / "runs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        traces = list(runs.glob("*/trace.jsonl")) if runs.exists() else []
        if traces and b"node_start" in traces[0].read_bytes():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    manifest = json.loads(next(runs.glob("*/manifest.json")).read_text())
    assert manifest["status"] == "interrupted"
    assert "other" in manifest["nodes"]


def test_examples_run_offline(tmp_path: Path) -> None:
    for name in ("pipeline", "fanout", "debate"):
        proc = run_dagagents(
            tmp_path,
            "run",
            str(ROOT / "graphs" / f"{name}.py"),
            "-c",
            "8",
            "--no-store",
            timeout=180,
            DAGAGENTS_SIM_TIME_SCALE="0.1",
        )
        assert proc.returncode == 0, (name, proc.stderr)
        # Every node of the example ran, and the closing line says so.
        g = Graph.load(str(ROOT / "graphs" / f"{name}.py"))
        for node in g.specs:
            assert re.search(rf"done\s+{re.escape(node)}\b", proc.stdout + proc.stderr), (
                name,
                node,
            )
        assert f"{len(g.specs)} done" in proc.stdout + proc.stderr, name
