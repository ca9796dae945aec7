"""The API key appears in no trace, checkpoint, log line, error message or CLI output."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _anthropic_support import KEY, provider_for, run_graph

from dagagents import Agent, Graph
from dagagents.testing import (
    FakeAnthropic,
    fake_anthropic_fixture,  # noqa: F401 (the `fake_anthropic` fixture)
    find_secret,
    tool_call,
    tool_results,
)


def leaky_tool(query: str) -> str:
    """A tool that fails."""
    raise RuntimeError(f"backend refused {query}")


def test_key_never_leaves_the_request(
    fake_anthropic: FakeAnthropic, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx2's debug logs included
    fake_anthropic.api_key = KEY  # requests without the key get a 401
    fake_anthropic.fail(429, retry_after=0.05, pattern="^retry")
    fake_anthropic.fail(400, times=None, pattern="^broken", message="prompt is malformed")
    fake_anthropic.reply(
        tool_call("leaky_tool", {"query": "q"}), pattern="^tool", when=lambda r: not tool_results(r)
    )
    worker = Agent("worker", model="claude-haiku-4-5")
    g = Graph("secrets")
    g.task("fine", worker, "fine please")
    g.task("retried", worker, "retry please")
    g.task("broken", worker, "broken please")
    g.task("tooling", Agent("tooler", tools=[leaky_tool]), "tool please")
    store, trace = tmp_path / "store", tmp_path / "trace.jsonl"
    result = run_graph(g, provider=provider_for(fake_anthropic), store=store, trace=trace)
    assert result.status == {
        "fine": "done",
        "retried": "done",
        "broken": "failed",
        "tooling": "done",
    }
    assert all(r.auth == "bearer" for r in fake_anthropic.requests)  # the key really was sent
    assert any(r.levelname == "DEBUG" for r in caplog.records)  # and debug logging was on
    assert find_secret(KEY, f"Authorization: Bearer {KEY}")  # the search itself works
    places = [store, trace, caplog.text, result.errors, result.events, repr(result)]
    places += [repr(r) for r in fake_anthropic.requests]
    assert find_secret(KEY, *places) == []


GRAPH = """
from dagagents import Agent, Graph

graph = Graph("cli-secrets")
worker = Agent("worker", model="claude-haiku-4-5")
graph.task("ok", worker, "fine please")
graph.task("bad", worker, "broken please")
"""


def test_cli_output_and_store_hold_no_key(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    fake_anthropic.api_key = KEY
    fake_anthropic.fail(401, times=None, pattern="^broken", message="invalid x-api-key")
    graph_file = tmp_path / "g.py"
    graph_file.write_text(GRAPH)
    env = {
        "PATH": str(Path(sys.executable).parent),
        "PYTHONPATH": os.environ["PYTHONPATH"],  # the checkout under test (see conftest)
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": fake_anthropic.url,
        "ANTHROPIC_LOG": "debug",  # the SDK's own debug logging, to stderr
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagagents",
            "run",
            str(graph_file),
            "--provider",
            "anthropic",
            "--store",
            str(tmp_path / "store"),
            "--trace",
            str(tmp_path / "t.jsonl"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr  # one node failed (the 401), one finished
    assert "invalid x-api-key" in proc.stderr
    assert "HTTP Request" in proc.stderr or "Request options" in proc.stderr  # debug log on
    assert (
        find_secret(KEY, proc.stdout, proc.stderr, tmp_path / "store", tmp_path / "t.jsonl") == []
    )
