"""SIGKILL a real `dagagents run` inside a map (some items finished, some in flight) and inside a
loop (rounds 1-2 finished, round 3 in flight); the rerun asks no finished item or round again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import cli_env, dagagents_cmd

from dagagents import Store

GRAPH = """
import os, time
from dagagents import Graph

SLOW = float(os.environ["SLOW"])


def mark(name: str) -> None:
    with open(os.environ["STARTS"], "a") as fh:
        fh.write(name + "\\n")


graph = Graph("killmap", output="count")
graph.input("words", default=["a", "b", "c", "slow1", "slow2"])


def work(item: str) -> str:
    mark("item:" + item)
    if item.startswith("slow"):
        time.sleep(SLOW)
    return item.upper()


graph.map("loud", work, over="words")

body = Graph("body", output="step")
body.input("n", default=1)


@body.step
def step(n: int) -> int:
    mark(f"round:{n}")
    if n >= 3:
        time.sleep(SLOW)
    return n + 1


graph.loop("count", body, until=lambda step: step > 4, max_rounds=6, carry={"n": "step"})
"""


def starts(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_sigkill_inside_a_map_and_a_loop_then_resume(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    store = Store(tmp_path / "st")
    first = tmp_path / "starts-1"
    proc = subprocess.Popen(
        dagagents_cmd("run", "g.py", "-q", "--store", "st", "-c", "8"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env(SLOW="300", STARTS=str(first)),
        cwd=tmp_path,
    )
    finished: set[str] = set()
    try:
        deadline = time.monotonic() + 90
        want = {"loud[0]", "loud[1]", "loud[2]", "count[1]", "count[2]"}
        while time.monotonic() < deadline:
            runs = store.list_runs()
            if runs:
                trace = store.read_trace(runs[-1])
                finished = {e["node"] for e in trace if e["event"] == "node_complete"}
            marks = set(starts(first))
            if want <= finished and {"item:slow1", "item:slow2", "round:3"} <= marks:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        else:
            raise AssertionError(f"the run never reached the kill point ({sorted(finished)})")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert sorted(starts(first)) == sorted(
        ["item:a", "item:b", "item:c", "item:slow1", "item:slow2", "round:1", "round:2", "round:3"]
    )

    second = tmp_path / "starts-2"
    rerun = subprocess.run(
        dagagents_cmd("run", "g.py", "-q", "--store", "st", "-c", "8"),
        capture_output=True,
        text=True,
        env=cli_env(SLOW="0.05", STARTS=str(second)),
        cwd=tmp_path,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    # Only the items and the round that were in flight, and the rounds after it.
    assert sorted(starts(second)) == ["item:slow1", "item:slow2", "round:3", "round:4"]
    trace = store.read_trace(store.list_runs()[-1])
    hits = {e["node"] for e in trace if e["event"] == "cache_hit"}
    assert {"loud[0]", "loud[1]", "loud[2]", "count[1]", "count[2]", "count[1].step"} <= hits
    manifest = store.read_manifest()
    assert manifest["status"] == "done"
    assert manifest["nodes"]["count[4]"]["status"] == "done"
    assert "count[5]" not in manifest["nodes"]
