"""Issue 12, the run's side of the store: a full or read-only store is one sentence and loses
nothing already saved (items 8), and two processes on one store never pay twice for a node one
of them is computing (item 25). Real tmpfs mounts, real subprocesses, the real SDK against the
fake Messages API."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import cli_env, dagagents_cmd, run_dagagents

from dagagents import Store
from dagagents.engine.leases import Leases
from dagagents.testing import FakeAnthropic


def _graph_text(parts: int = 12, filler: str = '"x" * 30_000') -> str:
    """`parts` steps of ~30 KB each and a `total` that reads them all (a step's parameters
    are its dependencies, so they are spelled out)."""
    names = [f"part{i:02d}" for i in range(parts)]
    return f"""
from dagagents import Graph

graph = Graph("big")


def make(i: int):
    def part() -> str:
        return f"{{i:02d}}" + {filler}

    return part


for i in range({parts}):
    graph.add_step(f"part{{i:02d}}", make(i))


@graph.step
def total({", ".join(f"{n}: str" for n in names)}) -> int:
    return {" + ".join(f"len({n})" for n in names)}
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_dagagents(
        tmp_path, "run", "g.py", *args, timeout=300, TMPDIR=str(tmp_path / "elsewhere")
    )


def _latest_statuses(store: Path) -> dict[str, str]:
    manifest = Store(store, create=False).read_manifest()
    return {name: node["status"] for name, node in manifest["nodes"].items()}


def test_a_full_store_is_one_sentence_and_a_rerun_computes_only_what_was_not_saved(
    tmp_path: Path, small_disk: Path, remount: Callable[[Path, str], None]
) -> None:
    (tmp_path / "g.py").write_text(_graph_text())
    (tmp_path / "elsewhere").mkdir()
    store = small_disk / "s"
    first = _run(tmp_path, "--store", str(store), "-c", "1")
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr and "OSError" not in first.stderr
    lines = [line for line in first.stderr.splitlines() if "could not be saved" in line]
    assert len(lines) == 1, first.stderr
    unsaved = int(lines[0].split(": ")[-1].split()[0])
    assert f"store '{store}' is full: " in lines[0] and 0 < unsaved < 13
    st = Store(store, create=False)
    assert st.verify() == {}  # every object that was saved is intact
    saved = len(st.iter_objects())
    assert saved + unsaved == 13
    # space is freed: the rerun computes exactly what was not saved
    remount(small_disk, "size=4m")
    second = _run(tmp_path, "--store", str(store), "-c", "1")
    assert second.returncode == 0, second.stderr
    statuses = _latest_statuses(store)
    assert sum(s == "done" for s in statuses.values()) == unsaved
    assert sum(s == "cached" for s in statuses.values()) == saved


def test_a_read_only_store_serves_a_cached_rerun_and_says_what_it_cannot_save(
    tmp_path: Path, small_disk: Path, remount: Callable[[Path, str], None]
) -> None:
    (tmp_path / "g.py").write_text(_graph_text(3))
    (tmp_path / "elsewhere").mkdir()
    store = small_disk / "s"
    assert _run(tmp_path, "--store", str(store)).returncode == 0
    remount(small_disk, "ro")
    cached = _run(tmp_path, "--store", str(store))
    assert cached.returncode == 0, cached.stderr
    assert "Traceback" not in cached.stderr
    assert "read-only" in cached.stderr and "elsewhere" in cached.stderr  # where the trace went
    traces = list((tmp_path / "elsewhere").rglob("trace.jsonl"))
    assert len(traces) == 1 and b"cache_hit" in traces[0].read_bytes()
    # a node that must be computed cannot be saved: one sentence, exit 1
    (tmp_path / "g.py").write_text(_graph_text(3, filler='"y" * 10'))
    computed = _run(tmp_path, "--store", str(store))
    assert computed.returncode == 1 and "Traceback" not in computed.stderr
    assert f"store '{store}' is read-only: 4 nodes could not be saved" in computed.stderr.replace(
        "\n", ""
    )


FORTY = """
from dagagents import Agent, Graph

graph = Graph("forty")
agent = Agent("w", model="claude-haiku-4-5", max_tokens=30)
for i in range(20):
    graph.task(f"a{i:02d}", agent, f"Fact number {i} about owls.")
    graph.task(f"b{i:02d}", agent, f"Shorten: {{a{i:02d}}}", depends_on=[f"a{i:02d}"])
"""


def test_two_processes_on_one_store_pay_once_for_in_flight_nodes(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(FORTY)
    with FakeAnthropic(latency=0.3) as api:
        env = cli_env(ANTHROPIC_API_KEY="sk-ant-test-lease", ANTHROPIC_BASE_URL=api.url)
        command = dagagents_cmd(
            "run", "g.py", "-q", "--provider", "anthropic", "--store", "shared", "-c", "8"
        )
        procs = [
            subprocess.Popen(
                command,
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        requests = len(api.message_requests)
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    assert requests == 40  # not 80: what one process was computing, the other awaited
    store = Store(tmp_path / "shared", create=False)
    runs = store.list_runs()
    assert len(runs) == 2
    statuses = [
        {n: r["status"] for n, r in store.read_manifest(run)["nodes"].items()} for run in runs
    ]
    done = sum(s == "done" for st in statuses for s in st.values())
    assert done == 40  # each node computed by exactly one of the two runs
    assert not list((tmp_path / "shared").rglob(".lease-*"))  # every lease released
    assert os.environ.get("ANTHROPIC_API_KEY") is None and sys.executable


def test_a_claim_waits_for_the_holder_and_then_takes_its_output(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    key = "ab" + "1" * 62
    order: list[str] = []

    async def scenario() -> tuple[str | None, str | None]:
        mine, theirs = Leases(store), Leases(store)

        def found() -> str | None:
            got = store.get(key)
            return None if got is None else got.value.decode()

        first = await mine.claim(key, found)
        order.append("first holds")

        async def finish() -> None:
            await asyncio.sleep(0.2)
            order.append("first stores")
            store.put(key, b'"answer"', {})
            mine.release(key)

        waiter = asyncio.create_task(theirs.claim(key, found, poll=0.01))
        await finish()
        second = await waiter
        order.append("second has it")
        return first, second

    first, second = asyncio.run(scenario())
    assert first is None and second == '"answer"'
    assert order == ["first holds", "first stores", "second has it"]
    assert not Path(store.lease_path(key)).exists()
