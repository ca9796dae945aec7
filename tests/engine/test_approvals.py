"""Human approvals as a user meets them: the run waits (exit 3, the manifest names the waiting
nodes), other branches keep going, a decision recorded in the store lets the next run continue
(across a restart and a SIGKILL), two approvals resolve in either order, a rejection skips
exactly its descendants, and an in-process approver decides without stopping."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_env, dagagents_cmd, run_dagagents

from dagagents import Agent, ApprovalRequest, Decision, Graph, SimulatedProvider, Store

GRAPH = """
import os
from dagagents import Agent, Graph, SimulatedProvider

graph = Graph("publish", simulator=SimulatedProvider(time_scale=float(os.environ.get("TS", "0"))))
writer = Agent("writer", model="claude-haiku-4-5", max_tokens=60)
graph.task("draft", writer, "Draft a note about owls.")
graph.task("side", writer, "Something independent.")
graph.approval("ok", depends_on=["draft"], prompt="Publish this draft?")

@graph.step
def publish(ok: str) -> dict:
    return {"published": ok}
"""


cli = run_dagagents


def two_way(store: Path) -> tuple[Graph, dict[str, Any]]:
    g = Graph("two", simulator=SimulatedProvider(time_scale=0))
    a = Agent("a", model="claude-haiku-4-5", max_tokens=40)
    g.task("x", a, "x?")
    g.task("y", a, "y?")
    g.approval("ax", depends_on=["x"])
    g.approval("ay", depends_on=["y"])

    @g.step
    def final(ax: str, ay: str) -> str:
        return ax + " | " + ay

    return g, {"store": store}


def test_cli_waits_exits_3_and_continues_after_approve(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    first = cli(tmp_path, "run", "g.py")
    assert first.returncode == 3, first.stderr
    st = Store(tmp_path / ".dagagents")
    manifest = st.read_manifest()
    assert manifest["status"] == "waiting"
    assert manifest["nodes"]["ok"]["status"] == "waiting"
    assert manifest["nodes"]["side"]["status"] == "done"  # other branches kept going
    assert "dagagents approve" in first.stderr and "Traceback" not in first.stderr
    run_id = manifest["run_id"]

    wrong = cli(tmp_path, "approve", run_id, "draft")
    assert wrong.returncode == 2
    assert "not waiting for approval" in wrong.stderr and "Traceback" not in wrong.stderr

    ok = cli(tmp_path, "approve", run_id, "ok")
    assert ok.returncode == 0, ok.stderr
    again = cli(tmp_path, "approve", run_id, "ok")
    assert again.returncode == 2 and "already been decided" in again.stderr

    second = cli(tmp_path, "run", "g.py")
    assert second.returncode == 0, second.stderr + second.stdout
    events = st.read_trace()
    hits = {e["node"] for e in events if e["event"] == "cache_hit"}
    assert {"draft", "side", "ok"} <= hits  # nothing paid twice
    draft = st.read_manifest()["nodes"]["draft"]
    shown = cli(tmp_path, "show", "publish", "--json")
    assert (
        json.loads(shown.stdout)["output"]["published"]
        == (json.loads(cli(tmp_path, "show", "draft", "--json").stdout)["output"])
    )
    assert draft["status"] == "cached"


def test_sigkill_while_waiting_then_approve_and_resume(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    # `--ui` waits in-process for the page's button; kill it hard while it waits.
    proc = subprocess.Popen(
        dagagents_cmd("run", "g.py", "--ui", "--ui-port", "0", "-q"),
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = tmp_path / ".dagagents" / "runs"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        traces = list(runs.glob("*/trace.jsonl")) if runs.exists() else []
        if traces and b"node_waiting" in traces[0].read_bytes():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the run never reached its approval node")
    time.sleep(0.3)  # the trace is flushed every 0.2 s
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    st = Store(tmp_path / ".dagagents")
    run_id = st.read_manifest()["run_id"]
    status = cli(tmp_path, "status")
    assert "killed" in status.stdout
    ok = cli(tmp_path, "approve", run_id, "ok")
    assert ok.returncode == 0, ok.stderr
    resumed = cli(tmp_path, "run", "g.py")
    assert resumed.returncode == 0, resumed.stderr
    hits = {e["node"] for e in st.read_trace() if e["event"] == "cache_hit"}
    assert {"draft", "ok"} <= hits


@pytest.mark.parametrize("order", [("ax", "ay"), ("ay", "ax")])
def test_two_approvals_resolve_in_either_order(tmp_path: Path, order: tuple[str, str]) -> None:
    g, opts = two_way(tmp_path / "st")
    first = g.run(**opts)
    assert sorted(first.waiting) == ["ax", "ay"]
    g.approve(first.run_id, order[0], value=f"{order[0]} yes", store=tmp_path / "st")
    second = g.run(**opts)
    assert second.waiting == [order[1]]
    assert second.status[order[0]] == "cached"
    assert second.outputs[order[0]] == f"{order[0]} yes"
    g.approve(second.run_id, order[1], store=tmp_path / "st")  # default: its input flows on
    third = g.run(**opts)
    assert third.ok and not third.waiting
    expected = {"ax": "ax yes" if order[0] == "ax" else third.outputs["x"]}
    expected["ay"] = "ay yes" if order[0] == "ay" else third.outputs["y"]
    assert third.outputs["final"] == f"{expected['ax']} | {expected['ay']}"


def test_rejection_skips_exactly_its_descendants(tmp_path: Path) -> None:
    g = Graph("reject", simulator=SimulatedProvider(time_scale=0))
    a = Agent("a", model="claude-haiku-4-5", max_tokens=40)
    g.task("x", a, "x?")
    g.approval("gate", depends_on=["x"])
    g.task("child", a, "after {gate}", depends_on=["gate"])
    g.task("grandchild", a, "after {child}", depends_on=["child"])
    g.task("sibling", a, "after {x}", depends_on=["x"])
    first = g.run(store=tmp_path)
    assert first.waiting == ["gate"]
    g.approve(first.run_id, "gate", approved=False, reason="not today", store=tmp_path)
    second = g.run(store=tmp_path)
    assert second.status == {
        "x": "cached",
        "gate": "failed",
        "child": "skipped",
        "grandchild": "skipped",
        "sibling": "done" if first.status["sibling"] != "done" else "cached",
    }
    assert second.errors["gate"] == "rejected: not today"
    assert "gate" in second.errors["grandchild"]


def test_in_process_approver_decides_without_stopping(tmp_path: Path) -> None:
    asked: list[ApprovalRequest] = []

    async def approver(request: ApprovalRequest) -> Decision:
        asked.append(request)
        if request.node == "ax":
            return Decision(approved=True, value="fine")
        return Decision(approved=False, reason="no")

    g, opts = two_way(tmp_path / "st")
    result = g.run(approver=approver, **opts)
    assert {r.node for r in asked} == {"ax", "ay"}
    assert asked[0].inputs and not result.waiting
    assert result.status["ax"] == "done" and result.outputs["ax"] == "fine"
    assert result.status["ay"] == "failed" and result.status["final"] == "skipped"
    # The decisions are in the store: the next run needs no approver.
    again = g.run(**opts)
    assert again.status["ax"] == "cached" and again.status["ay"] == "failed"
