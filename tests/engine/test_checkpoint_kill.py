"""The kill test: SIGKILL a real `dagagents run` while some nodes are done and others are in
flight, rerun it, and check that nothing finished is paid for twice and the answer is the same
as an uninterrupted run's."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import cli_env, dagagents_cmd

from dagagents import Store
from dagagents.store import TMP_PREFIX
from dagagents.store.codec import decode

GRAPH = '''
import asyncio, os
from dagagents import Agent, Graph, SimulatedProvider

SLOW = float(os.environ["SLOW"])  # in flight at the kill; instant on the rerun


def mark(name: str) -> None:
    """Record that a body started (append: one small write, nothing buffered)."""
    with open(os.environ["STARTS"], "a") as fh:
        fh.write(name + "\\n")


sim = SimulatedProvider(time_scale=0.01)
sim.script("a considered answer", agent="deep", latency=SLOW / 0.01)
graph = Graph("killme", simulator=sim)
quick = Agent("quick", model="claude-haiku-4-5", max_tokens=60)
deep = Agent("deep", model="claude-opus-4-6", max_tokens=200)

for i in range(4):
    graph.task(f"ask{i}", quick, f"Question {i}: name a colour and a number.")


def make_fast(i: int):
    async def fast(**inputs: str) -> dict:
        mark(f"fast{i}")
        await asyncio.sleep(0.01)
        return {"i": i, "words": sum(len(v.split()) for v in inputs.values())}

    return fast


def make_slow(j: int):
    async def slow() -> int:
        mark(f"slow{j}")
        await asyncio.sleep(SLOW)
        return j * 10

    return slow


for i in range(4):
    graph.add_step(f"fast{i}", make_fast(i), depends_on=[f"ask{i}"])
for j in range(3):
    graph.add_step(f"slow{j}", make_slow(j), depends_on=[])
graph.task("ponder", deep, "Think hard about {ask0}", depends_on=["ask0"])


async def join(**inputs) -> dict:
    mark("join")
    return {k: inputs[k] for k in sorted(inputs) if not k.startswith("ponder")} | {
        "ponder": len(inputs["ponder"])
    }


graph.add_step(
    "join", join, depends_on=[*(f"fast{i}" for i in range(4)), "slow0", "slow1", "slow2", "ponder"]
)
'''

FAST = {f"ask{i}" for i in range(4)} | {f"fast{i}" for i in range(4)}
SLOW = {"slow0", "slow1", "slow2", "ponder"}
ALL = FAST | SLOW | {"join"}


def run_env(tmp_path: Path, slow: float, starts: str) -> dict[str, str]:
    return cli_env(SLOW=str(slow), STARTS=str(tmp_path / starts))


def events(store: Store, run: str) -> list[dict[str, Any]]:
    return store.read_trace(run)


def final_outputs(store: Store) -> dict[str, Any]:
    """Each node's output as the newest run's manifest points to it in the store."""
    manifest = store.read_manifest()
    assert manifest["status"] == "done"
    out = {}
    for name, node in manifest["nodes"].items():
        stored = store.get(node["key"])
        assert stored is not None, name
        out[name] = decode(stored.value)
    return out


def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    store = Store(tmp_path / "st")
    proc = subprocess.Popen(
        dagagents_cmd("run", "g.py", "-q", "--store", "st", "-c", "16"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=run_env(tmp_path, 300.0, "starts-1"),
        cwd=tmp_path,
    )
    try:
        # Kill once the fast nodes are checkpointed and the slow ones have started.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            starts = (
                set((tmp_path / "starts-1").read_text().split())
                if (tmp_path / "starts-1").exists()
                else set()
            )
            if len(store.iter_objects()) >= len(FAST) and {"slow0", "slow1", "slow2"} <= starts:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.02)
        else:
            raise AssertionError("the run never reached the kill point")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    # What the kill left: the checkpoints that existed, and bodies that had started.
    at_kill = {key for key, _ in store.iter_objects()}
    started_1 = set((tmp_path / "starts-1").read_text().split())
    killed_trace = store.read_trace(store.list_runs()[-1])  # agent starts, as far as flushed
    started_1 |= {e["node"] for e in killed_trace if e["event"] == "node_start"}
    assert store.verify() == {}  # every object under a real name is whole
    killed_run = store.list_runs()[-1]
    assert store.read_manifest(killed_run)["status"] == "running"  # never finished

    rerun = subprocess.run(
        dagagents_cmd("run", "g.py", "-q", "--store", "st", "-c", "16"),
        capture_output=True,
        text=True,
        env=run_env(tmp_path, 0.05, "starts-2"),
        cwd=tmp_path,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    trace = events(store, store.list_runs()[-1])
    hits = {e["node"]: e["key"] for e in trace if e["event"] == "cache_hit"}
    completes = {e["node"]: e["key"] for e in trace if e["event"] == "node_complete"}
    ran_again = {e["node"] for e in trace if e["event"] == "node_start"}

    # No node whose checkpoint existed at the kill runs again: every such key was a hit.
    assert set(hits.values()) == at_kill
    assert not set(completes.values()) & at_kill
    done_at_kill = set(hits)
    assert done_at_kill >= FAST and not done_at_kill & SLOW
    # At most the in-flight nodes run again (plus those that had not started at all).
    in_flight = started_1 - done_at_kill
    assert {"slow0", "slow1", "slow2"} <= in_flight
    assert ran_again & started_1 <= in_flight
    assert ran_again == ALL - done_at_kill
    assert set((tmp_path / "starts-2").read_text().split()) == {"slow0", "slow1", "slow2", "join"}

    # The same answer as an uninterrupted run in another store.
    reference = subprocess.run(
        dagagents_cmd("run", "g.py", "-q", "--store", "ref", "-c", "16"),
        capture_output=True,
        text=True,
        env=run_env(tmp_path, 0.05, "starts-ref"),
        cwd=tmp_path,
        timeout=120,
    )
    assert reference.returncode == 0, reference.stderr
    ref_store = Store(tmp_path / "ref")
    assert final_outputs(store) == final_outputs(ref_store)
    ref_keys = {n: v["key"] for n, v in ref_store.read_manifest()["nodes"].items()}
    keys = {n: v["key"] for n, v in store.read_manifest()["nodes"].items()}
    assert keys == ref_keys

    # Nothing partial that a later run would read: temp files (if the kill left any) are
    # never listed, every object verifies, and there is exactly one per node.
    assert store.verify() == {}
    assert sorted(k for k, _ in store.iter_objects()) == sorted(keys.values())
    for leftover in (tmp_path / "st/objects").rglob(f"{TMP_PREFIX}*"):
        assert leftover.parent.name + leftover.name not in keys.values()

    # `status` on the killed run says what was finished and what was cut off.
    status = subprocess.run(
        dagagents_cmd("status", killed_run, "--store", "st"),
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert "killed" in status.stdout
    for name in ("slow0", "slow1", "slow2"):
        assert any(name in line and "killed" in line for line in status.stdout.splitlines())


MANY = """
import time
from dagagents import Graph

graph = Graph("many")


def make(i: int):
    def body() -> str:
        time.sleep(0.003)  # a steady stream of writes for a second or two
        return f"{i}:" + "x" * 40_000  # big enough that a kill can land mid-write

    return body


for i in range(1000):
    graph.add_step(f"n{i}", make(i), depends_on=[])
"""


def test_sigkill_during_checkpoint_writes_leaves_no_partial_object(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(MANY)
    store = Store(tmp_path / "st")
    proc = subprocess.Popen(
        dagagents_cmd("run", "g.py", "-q", "--store", "st", "-c", "4"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cli_env(),
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # writes are in full swing
            if len(store.iter_objects()) >= 100:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    at_kill = {key for key, _ in store.iter_objects()}
    assert 0 < len(at_kill) < 1000
    assert store.verify() == {}

    rerun = subprocess.run(
        dagagents_cmd("run", "g.py", "-q", "--store", "st", "-c", "32"),
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "warning" not in rerun.stderr  # no corrupt object was met
    trace = store.read_trace()
    hits = {e["key"] for e in trace if e["event"] == "cache_hit"}
    assert hits == at_kill
    assert final_outputs(store) == {f"n{i}": f"{i}:" + "x" * 40_000 for i in range(1000)}
    assert store.verify() == {}
