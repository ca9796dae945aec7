"""The live web view in a real browser: Playwright driving Debian's chromium against
`dagagents run --ui` (a slow simulated run, and one on the real SDK path against the fake
server's 429) and `dagagents ui` over a store. The page must never load anything from outside
127.0.0.1; a screenshot is kept as a test artefact."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, cli_env, dagagents_cmd

from dagagents.observe.ui.browser import browser_page

ARTEFACTS = ROOT / "test-artifacts"
KEY = "sk-ant-test-web-view-never-shows-this-0042"

SLOW = """
from dagagents import Agent, Graph, SimulatedProvider

sim = SimulatedProvider(ttft=0.3, tokens_per_second=20, jitter=0, min_output_tokens=60,
                        max_output_tokens=70)
graph = Graph("watch", simulator=sim)
writer = Agent("writer", model="claude-haiku-4-5", system="You write.", max_tokens=100)
graph.task("a", writer, "Write about owls.")
graph.task("b", writer, "Write about larks.")
graph.task("c", writer, "Improve: {a}", depends_on=["a"])

@graph.step
def words(c: str, b: str) -> int:
    return len(c.split()) + len(b.split())
"""

FAST = """
from dagagents import Agent, Graph

graph = Graph("limits")
writer = Agent("writer", model="claude-haiku-4-5", max_tokens=100)
for name in ("x", "y"):
    graph.task(name, writer, f"Write about {name}.")
"""


class Proc:
    """A CLI subprocess whose output lines are read on a thread (so waiting can time out)."""

    def __init__(self, args: list[str], cwd: Path, **env: str) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=cli_env(PYTHONUNBUFFERED="1", **env),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"never printed {pattern!r}; output:\n{''.join(self.seen)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()


def statuses(page: object) -> dict[str, str]:
    pairs = page.eval_on_selector_all(  # type: ignore[attr-defined]
        "g.node", "els => els.map(e => [e.dataset.node, e.dataset.status])"
    )
    return dict(pairs)


def test_watch_a_slow_run_live(tmp_path: Path, procs: list[Proc]) -> None:
    (tmp_path / "g.py").write_text(SLOW)
    with browser_page() as (page, outside):
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
        run = Proc(
            dagagents_cmd("run", "g.py", "--ui", "--ui-port", "0", "-c", "1", "--ui-linger", "60"),
            tmp_path,
        )
        procs.append(run)
        url = run.wait_for(r"watching run: (\S+)").group(1)
        assert url.startswith("http://127.0.0.1:")
        page.goto(url)
        b = 'g.node[data-node="b"]'
        # One slot: `a` (heading the longer path) runs first while `b` waits its turn.
        page.wait_for_selector(f'{b}[data-status="queued"]', timeout=60_000)
        page.wait_for_selector(f'{b}[data-status="running"]', timeout=60_000)
        page.click(b)
        stream = "document.querySelector('#drawer-stream').textContent.length"
        page.wait_for_function(f"{stream} > 0", timeout=30_000)
        first = page.evaluate(stream)
        page.wait_for_function(f"{stream} > {first}", timeout=30_000)
        assert page.evaluate("document.querySelector('#drawer').dataset.node") == "b"
        assert "Write about larks." in page.inner_text("#drawer-prompt")
        page.wait_for_selector(f'{b}[data-status="done"]', timeout=60_000)
        page.wait_for_selector("body[data-ended]", timeout=120_000)
        assert set(statuses(page).values()) == {"done"}
        # The drawer's output is the stored one; the finished run shows its critical path.
        page.wait_for_function(
            "document.querySelector('#drawer-output').textContent.includes('larks')"
        )
        assert page.query_selector_all("g.node.critical")
        assert "ideal schedule" in page.inner_text("#ideal-note")
        ARTEFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / "web_view_live_run.png"), full_page=True)
        assert len(navigations) == 1, navigations  # live updates, never a reload
        assert outside == []


def test_limits_panel_counts_a_429(tmp_path: Path, procs: list[Proc]) -> None:
    (tmp_path / "g.py").write_text(FAST)
    api = Proc(
        [
            sys.executable,
            "-m",
            "dagagents.testing",
            "--port",
            "0",
            "--latency",
            "0.3",
            "--stream-delay",
            "0.05",
            "--fail",
            "429:1:0.5",
        ],
        tmp_path,
    )
    procs.append(api)
    base = api.wait_for(r"(http://127\.0\.0\.1:\d+)").group(1)
    with browser_page() as (page, outside):
        run = Proc(
            dagagents_cmd("run", "g.py", "--ui", "--ui-port", "0", "--ui-linger", "60"),
            tmp_path,
            ANTHROPIC_API_KEY=KEY,
            ANTHROPIC_BASE_URL=base,
        )
        procs.append(run)
        page.goto(run.wait_for(r"watching run: (\S+)").group(1))
        page.wait_for_function("document.querySelector('#count-429').textContent === '1'")
        page.wait_for_selector("body[data-ended]", timeout=120_000)
        assert set(statuses(page).values()) == {"done"}
        assert page.inner_text("#count-429") == "1"
        page.click('g.node[data-node="x"]')
        page.wait_for_function("document.querySelector('#drawer-output').textContent.length > 20")
        assert KEY not in page.content()
        assert outside == []


def test_batches_and_the_nodes_waiting_in_them(tmp_path: Path, procs: list[Proc]) -> None:
    from dagagents.testing import FakeAnthropic

    (tmp_path / "g.py").write_text(FAST)
    # Each batch takes 2 s to process at the fake server: long enough to be seen processing.
    with FakeAnthropic(batch_delay=2.0) as api, browser_page() as (page, outside):
        base = api.url
        run = Proc(
            dagagents_cmd(
                "run",
                "g.py",
                "--batch",
                "--batch-window",
                "0.1",
                "--ui",
                "--ui-port",
                "0",
                "--ui-linger",
                "60",
            ),
            tmp_path,
            ANTHROPIC_API_KEY=KEY,
            ANTHROPIC_BASE_URL=base,
        )
        procs.append(run)
        page.goto(run.wait_for(r"watching run: (\S+)").group(1))
        page.click('g.node[data-node="y"]')
        row = page.wait_for_selector('#batch-list tr[data-state="processing"]', timeout=60_000)
        # Both calls wait in that one batch: the panel lists them, the graph marks them, and
        # the open drawer says which batch its node waits in.
        assert row.inner_text().split("\t")[-1].strip() == "x, y"
        assert "1 submitted · 1 processing · 0 ended" in page.inner_text("#batch-summary")
        page.wait_for_selector('g.node[data-node="x"][data-batch="processing"]')
        page.wait_for_function(
            "document.querySelector('#drawer-meta').textContent.includes('(processing)')"
        )
        assert "in batch msgbatch_" in page.inner_text("#drawer-meta")
        page.wait_for_selector("body[data-ended]", timeout=120_000)
        assert set(statuses(page).values()) == {"done"}
        assert "1 submitted · 0 processing · 1 ended" in page.inner_text("#batch-summary")
        assert page.query_selector('#batch-list tr[data-state="ended"]')
        assert not page.query_selector("g.node[data-batch]")  # nobody waits any more
        ARTEFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / "web_view_batches.png"), full_page=True)
        assert KEY not in page.content()
        assert outside == []


APPROVAL = """
from dagagents import Agent, Graph, SimulatedProvider

graph = Graph("steer", simulator=SimulatedProvider(ttft=0.2, tokens_per_second=100))
writer = Agent("writer", model="claude-haiku-4-5", max_tokens=60)
graph.task("draft", writer, "Draft a note about owls.")
graph.approval("ok", depends_on=["draft"], prompt="Publish this draft?")
graph.task("publish", writer, "Publish: {ok}", depends_on=["ok"])
"""


def test_approve_in_the_page_and_the_run_continues(tmp_path: Path, procs: list[Proc]) -> None:
    (tmp_path / "g.py").write_text(APPROVAL)
    with browser_page() as (page, outside):
        run = Proc(dagagents_cmd("run", "g.py", "--ui", "--ui-port", "0"), tmp_path)
        procs.append(run)
        page.goto(run.wait_for(r"watching run: (\S+)").group(1))
        page.wait_for_selector('g.node[data-node="ok"][data-status="waiting"]', timeout=60_000)
        item = page.wait_for_selector('#approval-list li[data-node="ok"]')
        assert "Publish this draft?" in item.inner_text()
        assert page.inner_text("#run-status") == "waiting"
        item.query_selector("button.approve").click()
        page.wait_for_selector("body[data-ended]", timeout=60_000)
        assert statuses(page) == {"draft": "done", "ok": "done", "publish": "done"}
        assert page.is_hidden("#approvals")
        ARTEFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / "web_view_approved.png"), full_page=True)
        assert outside == []
    assert run.proc.wait(60) == 0


def test_ui_serves_a_store_and_replays_finished_runs(tmp_path: Path, procs: list[Proc]) -> None:
    (tmp_path / "g.py").write_text(FAST)
    done = subprocess.run(
        dagagents_cmd("run", "g.py", "-q"), cwd=tmp_path, env=cli_env(), capture_output=True
    )
    assert done.returncode == 0, done.stderr
    ui = Proc(dagagents_cmd("ui", "--port", "0"), tmp_path)
    procs.append(ui)
    url = ui.wait_for(r"web view: (\S+)").group(1)
    with browser_page() as (page, outside):
        page.goto(url)
        page.wait_for_selector("#runs tbody tr")
        assert "limits" in page.inner_text("#runs")
        page.click("#runs tbody a")
        page.wait_for_selector("body[data-ended]")
        assert statuses(page) == {"x": "done", "y": "done"}
        page.click('g.node[data-node="y"]')
        page.wait_for_function("document.querySelector('#drawer-output').textContent.length > 20")
        assert "Write about y." in page.inner_text("#drawer-prompt")
        assert outside == []


def test_beyond_loopback_needs_the_printed_token(tmp_path: Path, procs: list[Proc]) -> None:
    import urllib.error
    import urllib.request

    ui = Proc(dagagents_cmd("ui", "--port", "0", "--host", "0.0.0.0"), tmp_path)
    procs.append(ui)
    url = ui.wait_for(r"web view: (\S+)").group(1)
    assert "token=" in url
    bare = url.split("?")[0] + "api/runs"
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(bare, timeout=10)
    assert denied.value.code == 403
    token = url.split("token=")[1]
    with urllib.request.urlopen(f"{bare}?token={token}", timeout=10) as ok:
        assert ok.status == 200


def test_ui_approves_a_run_that_ended_waiting(tmp_path: Path, procs: list[Proc]) -> None:
    (tmp_path / "g.py").write_text(APPROVAL.replace("ttft=0.2", "ttft=0.0, time_scale=0"))
    waited = subprocess.run(
        dagagents_cmd("run", "g.py", "-q"), cwd=tmp_path, env=cli_env(), capture_output=True
    )
    assert waited.returncode == 3, waited.stderr
    ui = Proc(dagagents_cmd("ui", "--port", "0"), tmp_path)
    procs.append(ui)
    url = ui.wait_for(r"web view: (\S+)").group(1)
    with browser_page() as (page, outside):
        page.goto(url)
        page.wait_for_selector("#runs tbody tr .pill.waiting")
        page.click("#runs tbody a")
        page.wait_for_selector("body[data-ended]")
        page.click('#approval-list li[data-node="ok"] button.approve')
        page.wait_for_selector('g.node[data-node="ok"][data-status="approved"]')
        assert outside == []
    resumed = subprocess.run(
        dagagents_cmd("run", "g.py", "-q"), cwd=tmp_path, env=cli_env(), capture_output=True
    )
    assert resumed.returncode == 0, resumed.stderr
