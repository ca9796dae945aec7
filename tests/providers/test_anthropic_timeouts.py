"""Per-call timeouts and retries in one place, through the real SDK against the fake server.

A user's own `AsyncAnthropic(timeout=...)` keeps its timeout and loses its own retries; a
provider without any timeout gets one that grows with `max_tokens`; the CLI's `--timeout`
bounds each call; a 401 is reported once.
"""

from __future__ import annotations

from pathlib import Path

import anthropic
from _anthropic_support import KEY, provider_for, run_graph
from conftest import run_dagagents

from dagagents import Agent, Graph
from dagagents.engine.retry import RetryPolicy
from dagagents.providers.anthropic import AnthropicProvider, default_call_timeout
from dagagents.testing import FakeAnthropic, fake_anthropic_fixture  # noqa: F401

ONE_TRY = RetryPolicy(max_attempts=1)
TWO_TRIES = RetryPolicy(max_attempts=2, initial=0.01, max_wait=0.02, seed=1)


def one_task(agent: Agent | None = None) -> Graph:
    g = Graph("one")
    g.task("ask", agent or Agent("a", max_tokens=64), "hello")
    return g


def users_client(api: FakeAnthropic, **kw: object) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=KEY, base_url=api.url, **kw)  # type: ignore[arg-type]


def test_users_client_timeout_is_honoured(fake_anthropic: FakeAnthropic) -> None:
    provider = AnthropicProvider(client=users_client(fake_anthropic, timeout=1.0))
    result = run_graph(one_task(), provider=provider, retry=ONE_TRY)
    assert result.ok, result.errors
    assert fake_anthropic.message_requests[-1].headers["x-stainless-timeout"] == "1.0"


def test_users_client_timeout_ends_a_hung_call(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.slow(5.0)
    provider = AnthropicProvider(client=users_client(fake_anthropic, timeout=0.3))
    result = run_graph(one_task(), provider=provider, retry=ONE_TRY)
    assert result.status["ask"] == "failed"
    assert "timed out" in result.errors["ask"]


def test_agent_timeout_wins_over_users_client(fake_anthropic: FakeAnthropic) -> None:
    provider = AnthropicProvider(client=users_client(fake_anthropic, timeout=1.0))
    result = run_graph(one_task(Agent("a", max_tokens=64, timeout=7)), provider=provider)
    assert result.ok, result.errors
    assert fake_anthropic.message_requests[-1].headers["x-stainless-timeout"] == "7.0"


def test_users_client_does_not_retry_on_its_own(fake_anthropic: FakeAnthropic) -> None:
    """SDK default max_retries=2 must not apply: one 429 is one retry, counted and traced."""
    fake_anthropic.fail(429, retry_after=0)
    provider = AnthropicProvider(client=users_client(fake_anthropic))
    result = run_graph(one_task(), provider=provider, retry=TWO_TRIES)
    assert result.ok, result.errors
    requests = fake_anthropic.message_requests
    assert [r.headers["x-stainless-retry-count"] for r in requests] == ["0", "0"]
    retries = [e for e in result.events if e["event"] == "retry"]
    assert len(retries) == 1 == len(requests) - 1


def test_users_client_gives_up_after_one_attempt_when_asked(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.fail(500)
    fake_anthropic.fail(500)
    provider = AnthropicProvider(client=users_client(fake_anthropic))
    result = run_graph(one_task(), provider=provider, retry=ONE_TRY)
    assert result.status["ask"] == "failed"
    assert len(fake_anthropic.message_requests) == 1


def test_default_call_timeout_grows_with_max_tokens(fake_anthropic: FakeAnthropic) -> None:
    provider = provider_for(fake_anthropic)
    result = run_graph(one_task(Agent("a", max_tokens=1024)), provider=provider)
    assert result.ok, result.errors
    sent = float(fake_anthropic.message_requests[-1].headers["x-stainless-timeout"])
    assert sent == default_call_timeout(1024)
    assert default_call_timeout(256) < sent < default_call_timeout(8192) <= 600.0


GRAPH = """
from dagagents import Agent, Graph
graph = Graph("cli_timeout")
graph.task("ask", Agent("a", max_tokens=64), "hello")
"""


def test_cli_timeout_bounds_each_call(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    fake_anthropic.slow(30.0, times=None)
    (tmp_path / "g.py").write_text(GRAPH)
    proc = run_dagagents(
        tmp_path,
        "run",
        "g.py",
        "--provider",
        "anthropic",
        "--timeout",
        "0.5",
        "--retries",
        "2",
        timeout=120,
        ANTHROPIC_API_KEY=KEY,
        ANTHROPIC_BASE_URL=fake_anthropic.url,
    )
    assert proc.returncode == 1, proc.stderr
    assert "timed out after 0.5 s" in proc.stderr
    assert "gave up after 2 attempts" in proc.stderr
    assert "Traceback" not in proc.stderr


AUTH_GRAPH = """
from dagagents import Agent, Graph
graph = Graph("cli_auth")
agent = Agent("a", max_tokens=32)
for i in range(6):
    graph.task(f"root{i}", agent, f"question {i}")
"""


def test_auth_failure_is_reported_once(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    fake_anthropic.api_key = KEY
    (tmp_path / "g.py").write_text(AUTH_GRAPH)
    proc = run_dagagents(
        tmp_path,
        "run",
        "g.py",
        "--provider",
        "anthropic",
        "-c",
        "2",
        timeout=120,
        ANTHROPIC_API_KEY="sk-ant-wrong-key-000000",
        ANTHROPIC_BASE_URL=fake_anthropic.url,
    )
    assert proc.returncode == 1, proc.stderr
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1, proc.stderr
    assert "401" in failed[0]
    assert proc.stdout.count("authentication failed") >= 4
    assert "Traceback" not in proc.stderr
