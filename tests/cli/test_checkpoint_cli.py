"""Checkpoints as a user meets them: `dagagents run` again after edits, `--rerun`, a corrupt
object, `status`, `gc`, Ctrl-C, and two runs sharing one store. Real subprocesses, real files."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

from conftest import cli_env, dagagents_cmd, run_dagagents
from stored import damage, stored_size

from dagagents import Store
from dagagents.store.codec import decode

GRAPH = """
import asyncio, os, time
from pathlib import Path
from dagagents import Agent, Graph, SimulatedProvider

graph = Graph("cli", simulator=SimulatedProvider(time_scale=float(os.environ.get("TS", "0"))))
agent = Agent("w", model="claude-haiku-4-5", max_tokens=80)
graph.task("facts", agent, "List three facts about owls.")
graph.task("summary", agent, "Summarise: {facts}", depends_on=["facts"])


@graph.step
def numbers() -> list[int]:
    return [1, 2, 3]  # EDIT-ME


@graph.step
async def report(summary: str, numbers: list[int]) -> dict:
    await asyncio.sleep(float(os.environ.get("REPORT_SLEEP", "0")))
    return {"words": len(summary.split()), "total": sum(numbers)}
"""


def write_graph(tmp_path: Path, text: str = GRAPH) -> None:
    (tmp_path / "g.py").write_text(text)


dagagents = run_dagagents


def last_run(tmp_path: Path, store: str = ".dagagents") -> tuple[set[str], set[str]]:
    """(nodes that ran, nodes that came from checkpoints) in the store's newest run."""
    events = Store(tmp_path / store).read_trace()
    ran = {e["node"] for e in events if e["event"] == "node_start"}
    hits = {e["node"] for e in events if e["event"] == "cache_hit"}
    return ran, hits


ALL = {"facts", "summary", "numbers", "report"}


def test_rerun_resumes_and_edits_rerun_exactly_what_changed(tmp_path: Path) -> None:
    write_graph(tmp_path)
    assert dagagents(tmp_path, "run", "g.py", "-q").returncode == 0
    assert last_run(tmp_path) == (ALL, set())

    proc = dagagents(tmp_path, "run", "g.py")
    assert proc.returncode == 0
    assert last_run(tmp_path) == (set(), ALL)
    assert "4 cached" in proc.stdout

    # An edited prompt: that node and its descendants.
    write_graph(tmp_path, GRAPH.replace("Summarise: {facts}", "Summarise briefly: {facts}"))
    assert dagagents(tmp_path, "run", "g.py", "-q").returncode == 0
    assert last_run(tmp_path) == ({"summary", "report"}, {"facts", "numbers"})

    # An edited step whose output is the same: it reruns, nothing below it does.
    edited = GRAPH.replace("Summarise: {facts}", "Summarise briefly: {facts}").replace(
        "return [1, 2, 3]  # EDIT-ME", "return sorted([3, 1, 2])  # same numbers"
    )
    write_graph(tmp_path, edited)
    assert dagagents(tmp_path, "run", "g.py", "-q").returncode == 0
    assert last_run(tmp_path) == ({"numbers"}, {"facts", "summary", "report"})


def test_cli_rerun_and_fresh(tmp_path: Path) -> None:
    write_graph(tmp_path)
    assert dagagents(tmp_path, "run", "g.py", "-q").returncode == 0
    # Deterministic provider: facts' new output equals the old one, so early cutoff applies.
    assert dagagents(tmp_path, "run", "g.py", "-q", "--rerun", "facts").returncode == 0
    assert last_run(tmp_path) == ({"facts"}, {"summary", "numbers", "report"})
    proc = dagagents(tmp_path, "run", "g.py", "-q", "--rerun", "numbers", "--rerun", "report")
    assert proc.returncode == 0
    assert last_run(tmp_path) == ({"numbers", "report"}, {"facts", "summary"})
    assert dagagents(tmp_path, "run", "g.py", "-q", "--fresh").returncode == 0
    assert last_run(tmp_path) == (ALL, set())

    proc = dagagents(tmp_path, "run", "g.py", "-q", "--rerun", "sumary")
    assert proc.returncode == 2
    assert "unknown node 'sumary'" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupt_object_is_reported_and_recomputed(tmp_path: Path) -> None:
    write_graph(tmp_path)
    assert dagagents(tmp_path, "run", "g.py", "-q").returncode == 0
    store = Store(tmp_path / ".dagagents")
    key = store.read_manifest()["nodes"]["summary"]["key"]
    damage(store, key, "truncate")

    proc = dagagents(tmp_path, "run", "g.py")

    assert proc.returncode == 0
    assert re.search(r"warning: summary: checkpoint \w+ is corrupt .*recomputing", proc.stderr)
    assert last_run(tmp_path) == ({"summary"}, {"facts", "numbers", "report"})
    assert store.verify() == {}


def test_status_shows_last_run_and_what_a_rerun_computes(tmp_path: Path) -> None:
    write_graph(tmp_path)
    assert dagagents(tmp_path, "run", "g.py", "-q").returncode == 0
    store = Store(tmp_path / ".dagagents")
    manifest = store.read_manifest()

    proc = dagagents(tmp_path, "status")
    assert proc.returncode == 0, proc.stderr
    assert manifest["run_id"] in proc.stdout and "done" in proc.stdout
    for name, node in manifest["nodes"].items():
        assert re.search(rf"{name}\s+│ done\s+│ {node['key'][:12]}", proc.stdout)
    assert "a rerun would compute 0 node(s): none" in proc.stdout

    # Damage one checkpoint: status (with or without the graph) says what would run.
    damage(store, manifest["nodes"]["summary"]["key"], "empty")
    proc = dagagents(tmp_path, "status")
    assert "a rerun would compute 1 node(s): summary" in proc.stdout
    assert "below them only if their inputs change: report" in proc.stdout
    write_graph(tmp_path, GRAPH.replace("List three facts", "List four facts"))
    proc = dagagents(tmp_path, "status", "--graph", "g.py")
    assert "a rerun would compute 1 node(s): facts" in proc.stdout
    assert "only if their inputs change: report, summary" in proc.stdout

    # A run named by a prefix that matches nothing: one sentence, exit 2.
    proc = dagagents(tmp_path, "status", "nope")
    assert proc.returncode == 2 and "no runs matching 'nope'" in proc.stderr


def test_gc_keeps_what_kept_runs_need_and_reports_bytes(tmp_path: Path) -> None:
    store = Store(tmp_path / ".dagagents")
    write_graph(tmp_path)
    assert dagagents(tmp_path, "run", "g.py", "-q").returncode == 0
    first = store.read_manifest()["nodes"]
    v2 = GRAPH.replace("List three facts", "List four facts")
    write_graph(tmp_path, v2)
    assert dagagents(tmp_path, "run", "g.py", "-q").returncode == 0
    second = store.read_manifest()["nodes"]
    # numbers is shared by both runs; the rest of run 1 only it needs.
    only_first = {n["key"] for n in first.values()} - {n["key"] for n in second.values()}
    assert len(only_first) == 3
    freeable = sum(stored_size(store, k) for k in only_first)
    old_run = store.list_runs()[0]
    freeable += sum(p.stat().st_size for p in (tmp_path / ".dagagents/runs" / old_run).iterdir())

    proc = dagagents(tmp_path, "gc", "--keep-runs", "1")

    assert proc.returncode == 0, proc.stderr
    assert f"removed 3 object(s) and 1 run(s), freed {freeable:,} bytes" in proc.stdout
    assert {k for k, _ in store.iter_objects()} == {n["key"] for n in second.values()}
    assert dagagents(tmp_path, "run", "g.py", "-q").returncode == 0
    assert last_run(tmp_path) == (set(), ALL)  # the kept run still resumes in full

    proc = dagagents(tmp_path, "gc", "--keep-runs", "-1")
    assert proc.returncode == 2 and "--keep-runs must be 0 or more" in proc.stderr


def test_unserialisable_output_fails_naming_node_and_type(tmp_path: Path) -> None:
    write_graph(tmp_path, GRAPH.replace("return [1, 2, 3]  # EDIT-ME", "return {1, 2, 3}"))
    proc = dagagents(tmp_path, "run", "g.py")
    assert proc.returncode == 1
    assert "node 'numbers' returned an output of type set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ctrl_c_exits_130_writes_manifest_and_resumes(tmp_path: Path) -> None:
    write_graph(tmp_path)
    store = Store(tmp_path / ".dagagents")
    proc = subprocess.Popen(
        dagagents_cmd("run", "g.py", "-q"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(REPORT_SLEEP="60"),
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # report starts once the other three are stored
            started = store.list_runs() and any(
                e.get("node") == "report" for e in store.read_trace()
            )
            if started and len(store.iter_objects()) == 3:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("report never started")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    manifest = store.read_manifest()
    assert manifest["status"] == "interrupted"
    states = {n: node["status"] for n, node in manifest["nodes"].items()}
    assert states == {"facts": "done", "summary": "done", "numbers": "done", "report": "cancelled"}

    assert dagagents(tmp_path, "run", "g.py", "-q").returncode == 0
    assert last_run(tmp_path) == ({"report"}, {"facts", "summary", "numbers"})


CONCURRENT = '''
import time
from pathlib import Path
from dagagents import Agent, Graph, SimulatedProvider

graph = Graph("shared", simulator=SimulatedProvider(time_scale=0.2))
agent = Agent("w", model="claude-haiku-4-5", max_tokens=60)


@graph.step
def barrier() -> str:
    """The first run waits here until the second has started, so they really overlap (the
    second never runs this step itself: it waits for the first's copy, in flight)."""
    deadline = time.monotonic() + 60
    while len(list(Path("shared/runs").iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return "go"


for i in range(6):
    graph.task(f"part{i}", agent, f"Part {i} of the answer, after {{barrier}}", depends_on=["barrier"])


@graph.step
def join(part0: str, part1: str, part2: str, part3: str, part4: str, part5: str) -> list[int]:
    return [len(p) for p in (part0, part1, part2, part3, part4, part5)]
'''


def test_two_concurrent_runs_share_one_store(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(CONCURRENT)
    procs = [
        subprocess.Popen(
            dagagents_cmd("run", "g.py", "-q", "--store", "shared"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs

    store = Store(tmp_path / "shared")
    runs = store.list_runs()
    assert len(runs) == 2
    manifests = [store.read_manifest(r) for r in runs]
    assert all(m["status"] == "done" for m in manifests)
    # Both really ran at the same time.
    (a_start, a_end), (b_start, b_end) = [
        (m["started"], m["started"] + m["wall"]) for m in manifests
    ]
    assert a_start < b_end and b_start < a_end
    # Identical work is stored once: one object per node, every one intact, no temp files.
    keys = [{n: node["key"] for n, node in m["nodes"].items()} for m in manifests]
    assert keys[0] == keys[1]
    assert sorted(k for k, _ in store.iter_objects()) == sorted(keys[0].values())
    assert not list((tmp_path / "shared").rglob(".tmp-*"))
    assert store.verify() == {}
    # A third run resumes everything, with the same answer both runs got.
    assert dagagents(tmp_path, "run", "g.py", "-q", "--store", "shared").returncode == 0
    assert last_run(tmp_path, "shared")[0] == set()
    joined = decode(store.get(keys[0]["join"]).value)  # type: ignore[union-attr]
    assert len(joined) == 6 and all(n > 0 for n in joined)
