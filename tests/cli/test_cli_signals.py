"""Ctrl-C and SIGTERM sent to a real `dagagents run` process.

One word for a stopped node everywhere (`cancelled` in the live lines and the manifest); exit
says what it still waits for when a sync step is running; a second Ctrl-C exits at once with
130 and no traceback; SIGTERM is handled like Ctrl-C (manifest "interrupted", exit 143).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import cli_env, dagagents_cmd

GRAPH = """
import asyncio, time
from dagagents import Graph
graph = Graph("signals")

@graph.step
def quick() -> int:
    return 1

@graph.step
async def slow_async(quick: int) -> int:
    await asyncio.sleep(600)
    return 2

@graph.step
def slow_sync(quick: int) -> int:
    time.sleep({sync_sleep})
    return 3
"""


class Running:
    """A `dagagents run` whose output is read as it comes (so a test can wait for a line)."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            dagagents_cmd("run", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            cwd=cwd,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    def wait_for(self, where: list[str], text: str, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        while not any(text in line for line in where):
            assert self.proc.poll() is None, ("exited early", self.out, self.err)
            assert time.monotonic() < deadline, (f"never printed {text!r}", self.out, self.err)
            time.sleep(0.05)

    def finish(self, limit: float = 120.0) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=limit)
        for reader in self._readers:
            reader.join(timeout=10)
        return code, "".join(self.out), "".join(self.err)


def wait_until_started(tmp_path: Path, *nodes: str) -> None:
    """Until the trace on disk shows these nodes started."""
    runs = tmp_path / ".dagagents" / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        traces = list(runs.glob("*/trace.jsonl")) if runs.exists() else []
        if traces:
            started = set()
            for line in traces[0].read_text().splitlines():
                try:
                    event = json.loads(line)
                except ValueError:  # a line still being written
                    continue
                if event.get("event") == "node_start":
                    started.add(event.get("node"))
            if started.issuperset(nodes):
                return
        time.sleep(0.05)
    raise AssertionError(f"{nodes} never started")


def manifest(tmp_path: Path) -> dict[str, object]:
    path = next((tmp_path / ".dagagents" / "runs").glob("*/manifest.json"))
    return json.loads(path.read_text())


def test_ctrl_c_says_cancelled_in_live_lines_and_manifest(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH.format(sync_sleep=0))
    run = Running(tmp_path, "g.py", "-c", "4")
    wait_until_started(tmp_path, "slow_async")
    run.proc.send_signal(signal.SIGINT)
    code, out, err = run.finish()
    assert code == 130, err
    assert "Traceback" not in err
    assert "cancelled" in out and "slow_async" in out
    live = [line for line in out.splitlines() if "slow_async" in line and "s  " in line]
    assert any(line.split()[1] == "cancelled" for line in live), live
    assert not any(line.split()[1] == "failed" for line in live), live
    m = manifest(tmp_path)
    assert m["status"] == "interrupted"
    assert m["nodes"]["slow_async"]["status"] == "cancelled"  # type: ignore[index]


def test_exit_names_the_sync_step_it_waits_for_and_second_ctrl_c_exits_at_once(
    tmp_path: Path,
) -> None:
    (tmp_path / "g.py").write_text(GRAPH.format(sync_sleep=600))
    run = Running(tmp_path, "g.py", "-c", "4")
    wait_until_started(tmp_path, "slow_sync")
    run.proc.send_signal(signal.SIGINT)
    run.wait_for(run.err, "waiting for step 'slow_sync' to return")
    run.proc.send_signal(signal.SIGINT)  # the step would sleep 600 s: only this ends it
    code, out, err = run.finish()
    assert code == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "press Ctrl-C again to exit now" in err
    assert manifest(tmp_path)["status"] == "interrupted"


def test_sigterm_is_handled_like_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH.format(sync_sleep=0))
    run = Running(tmp_path, "g.py", "-c", "4")
    wait_until_started(tmp_path, "slow_async")
    run.proc.send_signal(signal.SIGTERM)
    code, out, err = run.finish()
    assert code == 143, err
    assert "Traceback" not in err
    assert "terminated: finished nodes are checkpointed" in err
    m = manifest(tmp_path)
    assert m["status"] == "interrupted"
    assert m["nodes"]["slow_async"]["status"] == "cancelled"  # type: ignore[index]
    assert m["nodes"]["quick"]["status"] == "done"  # type: ignore[index]
