"""No node waits for an import it does not need (issue 12, item 17): the simulated provider
needs no SDK at all, structured output included, and the run's clock starts with the run."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, cli_env

from dagagents.testing import (
    FakeAnthropic,
    fake_anthropic_fixture,  # noqa: F401 (the `fake_anthropic` fixture)
    text,
)

SCRIPT = """
import sys
sys.path.insert(0, {graphs!r})
from dagagents import Graph

graph = Graph.load({graph!r})
graph.simulator.time_scale = 0.01  # the demo's latencies, a hundred times faster
result = graph.run(store={store!r}, provider="simulated")
assert result.ok, result.errors
events = result.events
start = next(e for e in events if e["event"] == "run_start")
first = next(e for e in events if e["event"] == "node_start")
print("gap", first["t"] - start["t"])
print("t0", start["t"])
print("sdk", "anthropic" in sys.modules)
"""


def _run_demo(tmp_path: object) -> dict[str, str]:
    code = SCRIPT.format(
        graphs=str(ROOT / "graphs"),
        graph=str(ROOT / "graphs" / "market_report.py"),
        store=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=120
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def test_the_first_node_starts_within_a_tenth_of_a_second_of_run_start(tmp_path: object) -> None:
    """Event timestamps from the trace (event data, not the test's own wall clock)."""
    found = _run_demo(tmp_path)
    assert float(found["gap"]) < 0.1
    assert float(found["t0"]) < 0.1  # the run's clock counts from the run's first event


def test_a_simulated_run_with_structured_output_never_imports_the_sdk(tmp_path: object) -> None:
    assert _run_demo(tmp_path)["sdk"] == "False"


BLOCKED_IMPORT = """
import importlib.abc
import sys
import threading

from dagagents import Agent, Graph

released = threading.Event()


class HoldTheSdk(importlib.abc.MetaPathFinder):
    # The SDK's import waits until a step has run: a run that made nodes wait for the
    # import would never get there.
    def find_spec(self, name, path=None, target=None):
        if name == "anthropic":
            if not released.wait(60):
                raise ImportError("the step never ran while the SDK was being imported")
        return None


sys.meta_path.insert(0, HoldTheSdk())

graph = Graph("sdk-late")


@graph.step
def first() -> str:
    released.set()
    return "ran before the SDK was loaded"


graph.task("ask", Agent("w", model="claude-haiku-4-5", max_tokens=50), "Say hi.")
result = graph.run(store=None, provider="anthropic", concurrency=2)
assert result.ok, result.errors
print(result.outputs["first"])
print(result.outputs["ask"])
"""


def test_a_step_does_not_wait_for_the_sdk_import(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply(text("hi"))
    env = cli_env(
        ANTHROPIC_API_KEY="sk-ant-test-startup-0123456789", ANTHROPIC_BASE_URL=fake_anthropic.url
    )
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORT], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ran before the SDK was loaded", "hi"]
