"""Batch mode through the real SDK against the fake server's Message Batches API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from _anthropic_support import KEY, provider_for, run_graph
from pydantic import BaseModel

from dagagents import Agent, Graph
from dagagents.engine.batches import BatchOptions
from dagagents.testing import FakeAnthropic, fake_anthropic_fixture, tool_call  # noqa: F401

FAST = BatchOptions(window=0.2, poll=0.05, poll_max=0.2)


def three_levels() -> Graph:
    worker = Agent("worker", model="claude-haiku-4-5", max_tokens=64)
    g = Graph("levels")
    g.task("brief", worker, "Write a brief about tides.")
    for i in range(3):
        g.task(f"part{i}", worker, f"Expand part {i} of: {{brief}}", depends_on=["brief"])
    g.task("final", worker, "Combine.", depends_on=["part0", "part1", "part2"])
    return g


def test_a_batch_run_gives_the_normal_outputs_with_one_request_per_node(
    fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    normal = run_graph(three_levels(), provider=provider_for(fake_anthropic))
    assert normal.ok, normal.errors
    direct = len(fake_anthropic.message_requests)
    fake_anthropic.batches.delay = 0.1
    batched = run_graph(
        three_levels(), provider=provider_for(fake_anthropic), batch=FAST, store=tmp_path
    )
    assert batched.ok, batched.errors
    assert batched.outputs == normal.outputs
    assert len(fake_anthropic.message_requests) == direct  # no direct calls in batch mode
    batches = fake_anthropic.batches.submitted
    assert [len(b.requests) for b in batches] == [1, 3, 1]  # the ready set, level by level
    custom_ids = [cid for b in batches for cid in b.custom_ids]
    assert len(custom_ids) == len(set(custom_ids)) == 5

    # Batch price: half of the normal run's cost, and the saving is reported. Node costs are
    # exact; the run's total is money rounded to $0.000001, so it matches to that.
    def spent(result: Any) -> float:
        return sum(r.cost_usd for r in result.records.values() if r.status == "done")

    assert spent(batched) == pytest.approx(spent(normal) / 2)
    assert batched.cost_usd == pytest.approx(normal.cost_usd / 2, abs=1e-6)
    assert batched.savings["batch_usd"] == pytest.approx(normal.cost_usd / 2)
    assert batched.savings["batch_calls"] == 5
    events = [e["event"] for e in batched.events]
    assert events.count("batch_submitted") == 3
    # `trace summary` (from the stored run) says what batching saved.
    from dagagents.observe.summary import load_run, summarize

    summary = summarize(load_run("latest", store=tmp_path))
    assert summary.batch_calls == 5
    assert summary.saved_by_batch == pytest.approx(batched.savings["batch_usd"])
    # Records of every batch are in the run's folder, all collected.
    records = list((tmp_path / "runs" / batched.run_id / "batches").glob("*.json"))
    assert len(records) == 3 and all('"collected"' in r.read_text() for r in records)


def test_tool_loops_and_structured_output_work_in_batches(fake_anthropic: FakeAnthropic) -> None:
    class Verdict(BaseModel):
        ok: bool
        reason: str

    def lookup(term: str) -> str:
        """Look a term up."""
        return f"{term} means water"

    fake_anthropic.reply(
        tool_call("lookup", {"term": "tide"}), "tide means water, so yes", pattern="tide"
    )
    g = Graph("tools")
    g.task("look", Agent("reader", model="claude-haiku-4-5", tools=[lookup]), "What is a tide?")
    g.task("judge", Agent("judge", model="claude-haiku-4-5", output=Verdict), "Judge.")
    result = run_graph(g, provider=provider_for(fake_anthropic), batch=FAST)
    assert result.ok, result.errors
    assert result.outputs["look"] == "tide means water, so yes"
    assert isinstance(result.outputs["judge"], Verdict)
    assert result.records["look"].calls == 2 and result.records["look"].batch_calls == 2
    sizes = [len(b.requests) for b in fake_anthropic.batches.submitted]
    assert sizes == [2, 1]  # the second turn of the tool loop is a request in the next batch


def test_errored_results_are_retried_in_a_later_batch_and_expired_ones_resubmitted_once(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.batches.fail("errored", pattern="^Alpha", error_type="overloaded_error")
    fake_anthropic.batches.fail("expired", pattern="^Beta")
    fake_anthropic.batches.fail("expired", pattern="^Gamma", times=2)
    fake_anthropic.batches.fail("errored", pattern="^Delta", error_type="invalid_request_error")
    worker = Agent("worker", model="claude-haiku-4-5")
    g = Graph("outcomes")
    for name in ("Alpha", "Beta", "Gamma", "Delta"):
        g.task(name.lower(), worker, f"{name} question.")
    result = run_graph(g, provider=provider_for(fake_anthropic), batch=FAST)
    assert result.status == {
        "alpha": "done",  # overloaded (529): retried by the retry policy, in the next batch
        "beta": "done",  # expired once: resubmitted
        "gamma": "failed",  # expired twice: failed with a sentence saying so
        "delta": "failed",  # invalid request (400): not retried
    }
    assert "expired twice" in result.errors["gamma"] and "24 hours" in result.errors["gamma"]
    assert "400 invalid_request_error" in result.errors["delta"]
    sizes = [len(b.requests) for b in fake_anthropic.batches.submitted]
    assert sizes == [4, 3]  # alpha, beta, gamma go again; delta does not
    assert [e["node"] for e in result.events if e["event"] == "retry"] == ["alpha"]


def test_the_budget_is_reserved_at_the_batch_price(fake_anthropic: FakeAnthropic) -> None:
    g = Graph("budget")
    g.task("one", Agent("w", model="claude-haiku-4-5", max_tokens=1000), "Hello.")
    # Worst case at the standard price: 1000 output tokens x $5/MTok = $0.005; batch: $0.0025.
    result = run_graph(g, provider=provider_for(fake_anthropic), batch=FAST, max_cost_usd=0.003)
    assert result.ok, result.errors
    refused = run_graph(g, provider=provider_for(fake_anthropic), max_cost_usd=0.003)
    assert refused.status["one"] == "failed" and "budget" in refused.errors["one"]


def test_batch_mode_needs_the_anthropic_provider() -> None:
    from dagagents.errors import UserError

    with pytest.raises(UserError, match="batch mode needs the Anthropic provider"):
        three_levels().run(provider="simulated", batch=True, store=None)


DRIVER = textwrap.dedent(
    """
    import sys
    from dagagents import Agent, Graph
    from dagagents.engine.batches import BatchOptions
    from dagagents.providers.anthropic import AnthropicProvider

    worker = Agent("worker", model="claude-haiku-4-5", max_tokens=64)
    g = Graph("killable")
    for i in range(4):
        g.task(f"w{i}", worker, f"Question {i}.")
    g.task("final", worker, "Combine.", depends_on=[f"w{i}" for i in range(4)])
    provider = AnthropicProvider(api_key=sys.argv[3], base_url=sys.argv[1])
    result = g.run(provider=provider, store=sys.argv[2], concurrency=8,
                   batch=BatchOptions(window=0.2, poll=0.05, poll_max=0.2))
    print("OK" if result.ok else result.errors, flush=True)
    """
)


def test_sigkill_while_a_batch_processes_then_gc_then_rerun_reattaches_and_pays_nothing_twice(
    fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    from dagagents.store import Store

    fake_anthropic.batches.delay = 3.0  # the first batch is still processing when we kill
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    store = tmp_path / "store"
    args = [sys.executable, str(script), fake_anthropic.url, str(store), KEY]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, env=dict(os.environ))
    deadline = time.monotonic() + 60
    while not list(store.glob("runs/*/batches/*.json")):
        assert proc.poll() is None, "the driver exited before submitting a batch"
        assert time.monotonic() < deadline, "no batch record was written"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (first,) = fake_anthropic.batches.submitted
    assert first.processing_status == "in_progress" and len(first.requests) == 4
    # gc keeping no runs at all still keeps the killed run's record of its batch.
    (killed,) = Store(store).list_runs()
    gc = Store(store).gc(keep_runs=0)
    assert gc.runs_removed == 0 and gc.runs_spared == 1
    assert Store(store).open_batches(killed) == [first.id]
    fake_anthropic.batches.delay = 0.1
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert rerun.stdout.strip() == "OK", rerun.stdout + rerun.stderr
    batches = fake_anthropic.batches.submitted
    # The rerun collected the killed run's batch and submitted only the next level.
    assert [len(b.requests) for b in batches] == [4, 1]
    for cid in first.custom_ids:
        assert fake_anthropic.batches.requests_for(cid) == [first.id]
    assert fake_anthropic.usage_totals()["messages"] == 5  # one answer per node, ever
    # Collected now: the killed run is an ordinary old run again, and gc may drop it.
    assert Store(store).open_batches(killed) == []
    assert Store(store).gc(keep_runs=1).runs_removed == 1


def test_cli_batch_flag_runs_through_batches_and_reports_the_saving(
    fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    graph = tmp_path / "g.py"
    graph.write_text(
        textwrap.dedent(
            """
            from dagagents import Agent, Graph
            worker = Agent("worker", model="claude-haiku-4-5", max_tokens=64)
            graph = Graph("cli-batch")
            graph.task("a", worker, "First question.")
            graph.task("b", worker, "Second question.")
            graph.task("c", worker, "Combine.", depends_on=["a", "b"])
            """
        )
    )
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake_anthropic.url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagagents",
            "run",
            str(graph),
            "--batch",
            "--batch-window",
            "0.1",
            "--store",
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [len(b.requests) for b in fake_anthropic.batches.submitted] == [2, 1]
    assert "by batching (3 batch calls)" in " ".join(done.stdout.split())
    assert KEY not in done.stdout + done.stderr


def test_per_minute_limits_do_not_throttle_batch_submission(
    fake_anthropic: FakeAnthropic,
) -> None:
    from dagagents import RateLimits

    worker = Agent("worker", model="claude-haiku-4-5", max_tokens=64)
    g = Graph("wide")
    for i in range(6):
        g.task(f"n{i}", worker, f"Item {i}.")
    # 1 request a minute would take 5 minutes directly; batches are not counted against it.
    result = run_graph(
        g, provider=provider_for(fake_anthropic), batch=FAST, rate_limits=RateLimits(rpm=1)
    )
    assert result.ok, result.errors
    assert [len(b.requests) for b in fake_anthropic.batches.submitted] == [6]
    assert not [e for e in result.events if e["event"] == "rate_limited"]


def test_a_recorded_batch_that_is_gone_is_submitted_again(
    fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    fake_anthropic.batches.delay = 30.0
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    store = tmp_path / "store"
    args = [sys.executable, str(script), fake_anthropic.url, str(store), KEY]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(store.glob("runs/*/batches/*.json")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (lost,) = fake_anthropic.batches.submitted
    del fake_anthropic.batches.batches[lost.id]  # e.g. archived: its results are gone
    fake_anthropic.batches.delay = 0.1
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert rerun.stdout.strip() == "OK", rerun.stdout + rerun.stderr
    assert [len(b.requests) for b in fake_anthropic.batches.submitted] == [4, 1]


class _Relay:
    """A provider of the user's own that relays to the Anthropic one and declares what it can
    do: batch mode and token counting go by the declaration, never by the provider's class."""

    name = "relay"

    def __init__(self, inner: Any, capabilities: Any) -> None:
        self.inner = inner
        self.capabilities = capabilities

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


def test_batches_and_token_counting_follow_declared_capabilities(
    fake_anthropic: FakeAnthropic,
) -> None:
    import dataclasses

    from dagagents.errors import UserError
    from dagagents.providers.base import ANTHROPIC_CAPABILITIES

    relay = _Relay(provider_for(fake_anthropic), ANTHROPIC_CAPABILITIES)
    result = run_graph(three_levels(), provider=relay, batch=FAST)
    assert result.ok, result.errors
    assert [len(b.requests) for b in fake_anthropic.batches.submitted] == [1, 3, 1]
    counted = run_graph(three_levels(), provider=relay, count_tokens=True)
    assert [e["node"] for e in counted.events if e["event"] == "token_count"] == ["brief"]

    def counts() -> int:
        return sum(r.path == "/v1/messages/count_tokens" for r in fake_anthropic.requests)

    assert counts() == 1
    undeclared = dataclasses.replace(ANTHROPIC_CAPABILITIES, batches=False, counts_tokens=False)
    plain = _Relay(provider_for(fake_anthropic), undeclared)
    with pytest.raises(UserError, match="batch mode needs the Anthropic provider"):
        run_graph(three_levels(), provider=plain, batch=FAST)
    direct = run_graph(three_levels(), provider=plain, count_tokens=True)
    assert direct.ok, direct.errors
    assert [e for e in direct.events if e["event"] == "warning"][0]["message"].startswith(
        "token counting skipped"
    )
    assert counts() == 1  # the relay that does not declare it never asked the endpoint
