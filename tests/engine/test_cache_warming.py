"""Cache warming through the real SDK against the fake server, judged by the server's accounting."""

from __future__ import annotations

import pytest
from _anthropic_support import provider_for, run_graph

from dagagents import Agent, Graph
from dagagents.testing import FakeAnthropic, fake_anthropic_fixture  # noqa: F401

HANDBOOK = "You are a careful analyst. Cite sources; state uncertainty. " * 400  # ~6,000 tokens


def fanout(system: str, workers: int = 8) -> Graph:
    analyst = Agent("analyst", model="claude-sonnet-4-6", system=system, max_tokens=64)
    g = Graph("fanout")
    for i in range(workers):
        g.task(f"w{i}", analyst, f"Question {i}: what matters most?")
    return g


def test_eight_workers_write_the_shared_prefix_once_and_read_it_seven_times(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.latency = 0.3
    result = run_graph(fanout(HANDBOOK), provider=provider_for(fake_anthropic), concurrency=8)
    assert result.ok, result.errors
    totals = fake_anthropic.usage_totals()
    assert totals["messages"] == 8
    assert totals["cache_writes"] == 1 and totals["cache_reads"] == 7
    assert totals["cache_read_input_tokens"] == 7 * totals["cache_creation_input_tokens"]
    assert totals["cache_creation_input_tokens"] > 5500
    # No follower reached the server before the leader's response had begun.
    calls = fake_anthropic.message_requests
    leader = next(r for r in calls if r.usage and r.usage["cache_creation_input_tokens"])
    assert leader.begun is not None
    assert all(r.started >= leader.begun for r in calls if r is not leader)
    # The trace says who led, who followed, how big the prefix was and how long they waited.
    (warm,) = [e for e in result.events if e["event"] == "cache_warm"]
    question = (leader.body or {})["messages"][0]["content"]
    assert warm["leader"] == "w" + question.split(":")[0].removeprefix("Question ")
    assert sorted(warm["followers"]) == sorted(n for n in result.outputs if n != warm["leader"])
    assert warm["prefix_tokens"] > 5500 and warm["wait"] > 0


def test_without_warming_every_parallel_worker_writes_the_prefix_and_pays_for_it(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.latency = 0.3
    cold = run_graph(
        fanout(HANDBOOK), provider=provider_for(fake_anthropic), concurrency=8, cache_warming=False
    )
    assert cold.ok, cold.errors
    totals = fake_anthropic.usage_totals()
    assert totals["cache_writes"] == 8 and totals["cache_reads"] == 0
    assert not [e for e in cold.events if e["event"] == "cache_warm"]
    with FakeAnthropic(latency=0.3) as fresh:  # a server with an empty cache
        warmed = run_graph(fanout(HANDBOOK), provider=provider_for(fresh), concurrency=8)
    assert warmed.cost_usd <= 0.35 * cold.cost_usd


def test_warming_is_skipped_below_the_minimum_cacheable_length(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.latency = 0.3
    short = "Be brief and exact. " * 250  # ~1,250 tokens: under claude-sonnet-4-6's 2,048
    result = run_graph(fanout(short), provider=provider_for(fake_anthropic), concurrency=8)
    assert result.ok, result.errors
    calls = fake_anthropic.message_requests
    assert len(calls) == 8
    first_begun = min(r.begun for r in calls if r.begun is not None)
    assert all(r.started < first_begun for r in calls)  # nobody waited
    assert fake_anthropic.usage_totals()["cache_writes"] == 0
    assert not [e for e in result.events if e["event"] == "cache_warm"]


def test_a_failed_leader_hands_the_lead_to_a_follower(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.latency = 0.2
    fake_anthropic.fail(400, times=1, message="bad request for the first caller")
    result = run_graph(fanout(HANDBOOK, workers=4), provider=provider_for(fake_anthropic))
    assert sorted(result.status.values()) == ["done", "done", "done", "failed"]
    totals = fake_anthropic.usage_totals()
    assert totals["cache_writes"] == 1 and totals["cache_reads"] == 2


def test_a_shared_document_marked_with_agent_cache_is_written_once(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.latency = 0.2
    contract = "Clause: the supplier delivers on time. " * 700  # ~6,000 tokens
    reader = Agent("reader", model="claude-sonnet-4-6", system="Answer briefly.", cache=contract)
    g = Graph("document")
    for i in range(4):
        g.task(f"q{i}", reader, f"Question {i} about the contract.")
    result = run_graph(g, provider=provider_for(fake_anthropic), concurrency=4)
    assert result.ok, result.errors
    first = (fake_anthropic.message_requests[0].body or {})["messages"][0]["content"]
    assert first[0] == {"type": "text", "text": contract, "cache_control": {"type": "ephemeral"}}
    assert first[1]["text"].startswith("Question ")
    totals = fake_anthropic.usage_totals()
    assert totals["cache_writes"] == 1 and totals["cache_reads"] == 3
    assert result.savings["cache_usd"] > 0


def test_agent_cache_is_part_of_the_fingerprint_and_bounded() -> None:
    from pydantic import ValidationError

    plain = Agent("a", system="s")
    assert "cache" not in plain.fingerprint()  # existing checkpoint keys do not change
    assert Agent("a", system="s", cache="doc").fingerprint()["cache"] == ["doc"]
    with pytest.raises(ValidationError, match="at most 2 cached documents"):
        Agent("a", cache=["x", "y", "z"])
    offline = Graph("offline")
    offline.task("t", Agent("a", cache="A long document."), "Summarise it.")
    assert offline.run(provider="simulated", store=None).ok


def test_estimate_shows_what_warming_and_batching_save() -> None:
    from dagagents.observe.estimate import estimate

    g = fanout(HANDBOOK)
    g.task("short", Agent("short", model="claude-sonnet-4-6", system="Be brief."), "Hi.")
    e = estimate(g, concurrency=8)
    (shared,) = e.shared_prefixes
    assert shared.nodes == [f"w{i}" for i in range(8)] and shared.tokens > 5500
    # Seven writes at $3.75/MTok become reads at $0.30/MTok.
    assert shared.saving == pytest.approx(7 * shared.tokens * (3.75 - 0.30) / 1e6)
    assert e.batch_cost == pytest.approx(e.cost / 2)
    assert not estimate(fanout("Be brief. " * 100)).shared_prefixes  # below the minimum


def test_a_follower_stops_waiting_after_the_stated_most_seconds(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.latency = 1.0  # the leader's response begins after 1 s ...
    result = run_graph(
        fanout(HANDBOOK, workers=3),
        provider=provider_for(fake_anthropic),
        cache_warming=0.2,  # ... but followers wait at most 0.2 s
    )
    assert result.ok, result.errors
    gave_up = [e for e in result.events if e["event"] == "cache_warm" and e.get("gave_up")]
    assert len(gave_up) == 2 and all(e["wait"] >= 0.2 for e in gave_up)
    assert fake_anthropic.usage_totals()["cache_writes"] == 3  # each wrote it after all


def test_the_critical_path_rule_sends_a_critical_follower_at_once_and_lets_one_with_slack_wait(
    fake_anthropic: FakeAnthropic,
) -> None:
    from dagagents import CacheWarming

    fake_anthropic.latency = 0.3
    analyst = Agent("analyst", model="claude-sonnet-4-6", system=HANDBOOK, max_tokens=64)
    g = Graph("paths")
    # Two calls on the longest path (the scheduler starts them first; one leads) and one whose
    # remaining path is short: it has about 19 s of slack, the other follower none.
    g.task("long_a", analyst, "Question long_a.", estimate=20)
    g.task("long_b", analyst, "Question long_b.", estimate=20)
    g.task("short", analyst, "Question short.", estimate=1)
    # A second of delay declared worth $100: no prefix saving pays for delaying the run.
    rule = CacheWarming(usd_per_second=100.0)
    result = run_graph(g, provider=provider_for(fake_anthropic), cache_warming=rule)
    assert result.ok, result.errors
    warm = [e for e in result.events if e["event"] == "cache_warm"]
    (released,) = [e for e in warm if e.get("released")]
    (began,) = [e for e in warm if not e.get("released")]
    assert {began["leader"], released["node"]} == {"long_a", "long_b"}
    assert released["released"] == "critical_path"
    assert released["slack"] < 0.1  # none, but for the moment between the two nodes' starts
    assert released["expected_wait"] > 0 and 0 < released["saving_usd"] < 100.0
    assert began["followers"] == ["short"]
    # Event order at the server: the critical follower went before the leader's response
    # began; the follower with slack only after it.
    by_node = {
        (r.body or {})["messages"][0]["content"].split()[1].rstrip("."): r
        for r in fake_anthropic.message_requests
    }
    leader = by_node[began["leader"]]
    assert leader.begun is not None
    assert by_node[released["node"]].started < leader.begun <= by_node["short"].started
    totals = fake_anthropic.usage_totals()
    assert (totals["cache_writes"], totals["cache_reads"]) == (2, 1)
    # `trace summary` says who went at once and why.
    from dagagents.observe.summary import RunData, summarize

    lines = summarize(RunData.from_result(result)).warming
    assert any(
        line.startswith(f"{released['node']} went at once (critical path: slack 0.0")
        for line in lines
    )
    assert f"{began['leader']} wrote a ~" in lines[-1] and "1 call(s) waited" in lines[-1]


def test_the_rule_weighs_the_followers_of_one_leader_together() -> None:
    from dagagents.engine.cache_warming import should_wait

    one = 4096 * (1.25 - 0.10) / 1e6  # a Haiku 4.5 prefix at its minimum: ~$0.0047 a follower
    assert not should_wait(1.0, 0.0, [(0.0, one)], usd_per_second=0.01)  # alone: not worth 1 s
    assert should_wait(1.0, 0.0, [(0.0, one)] * 7, usd_per_second=0.01)  # seven together: worth it
    assert should_wait(1.0, 1.5, [(1.5, one)], usd_per_second=1e6)  # slack covers the wait
    assert should_wait(1.0, 0.0, [(0.0, one)], usd_per_second=0)  # time declared free
    # A follower with slack saves without delaying anyone, so it does not pay for the delay.
    assert not should_wait(1.0, 0.0, [(0.0, one), (5.0, 10.0)], usd_per_second=0.01)


def test_cache_warming_options_are_checked() -> None:
    from dagagents import CacheWarming
    from dagagents.errors import UserError

    with pytest.raises(UserError, match="cache_warming must be True, False, the most seconds"):
        fanout("x").run(provider="simulated", store=None, cache_warming=-1)
    with pytest.raises(UserError, match="CacheWarming usd_per_second must be 0 or more"):
        CacheWarming(usd_per_second=-0.5)


def test_estimate_applies_the_critical_path_rule() -> None:
    from dagagents import CacheWarming
    from dagagents.observe.estimate import estimate

    analyst = Agent("analyst", model="claude-sonnet-4-6", system=HANDBOOK, max_tokens=64)
    writer = Agent("writer", model="claude-sonnet-4-6", system="Write at length.", max_tokens=4000)
    g = Graph("paths")
    for name in ("long_a", "long_b"):  # each followed by a long write: the critical paths
        g.task(name, analyst, f"Question {name}.")
        g.task(f"{name}_report", writer, "Report.", depends_on=[name])
    g.task("short", analyst, "Question short.")  # nothing below it: plenty of slack
    assert estimate(g).nodes["long_a_report"].duration > 1.0  # more than one first token

    (default,) = estimate(g).shared_prefixes
    assert default.released == [] and default.delay == pytest.approx(1.0)
    each = default.tokens * (3.75 - 0.30) / 1e6
    assert default.saving == pytest.approx(2 * each)
    (dear,) = estimate(g, warming=CacheWarming(usd_per_second=100.0)).shared_prefixes
    assert dear.released == ["long_b"] and dear.delay == 0.0  # short still waits, for free
    assert dear.saving == pytest.approx(each)
    # `dagagents estimate` says so.
    import io

    from rich.console import Console

    from dagagents.cli.commands.estimate import estimate_renderable

    out = io.StringIO()
    Console(file=out, width=400).print(
        estimate_renderable(estimate(g, warming=CacheWarming(usd_per_second=100.0)))
    )
    assert "reads it once" in out.getvalue()
    assert "long_b on the critical path would not wait" in out.getvalue()
