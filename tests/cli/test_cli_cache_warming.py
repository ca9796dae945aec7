"""`--usd-per-second`: the cache-warming rule's worth of a second, from the command line."""

from __future__ import annotations

from pathlib import Path

import orjson
from _anthropic_support import KEY
from conftest import run_dagagents

from dagagents.testing import FakeAnthropic, fake_anthropic_fixture  # noqa: F401

# Two calls on the longest path (one leads) and one with ~19 s of slack, sharing a
# ~6,000-token Sonnet system prompt (as tests/engine/test_cache_warming.py).
GRAPH = """
from dagagents import Agent, Graph
handbook = "You are a careful analyst. Cite sources; state uncertainty. " * 400
analyst = Agent("analyst", model="claude-sonnet-4-6", system=handbook, max_tokens=64)
graph = Graph("paths")
graph.task("long_a", analyst, "Question long_a.", estimate=20)
graph.task("long_b", analyst, "Question long_b.", estimate=20)
graph.task("short", analyst, "Question short.", estimate=1)
"""


def test_a_dear_second_sends_the_critical_follower_at_once(
    fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    fake_anthropic.latency = 0.3
    (tmp_path / "g.py").write_text(GRAPH)
    proc = run_dagagents(
        tmp_path,
        *("run", "g.py", "--provider", "anthropic", "-q", "--usd-per-second", "100"),
        *("--trace", "t.jsonl"),
        ANTHROPIC_API_KEY=KEY,
        ANTHROPIC_BASE_URL=fake_anthropic.url,
    )
    assert proc.returncode == 0, proc.stderr
    events = [orjson.loads(line) for line in (tmp_path / "t.jsonl").read_bytes().splitlines()]
    warm = [e for e in events if e["event"] == "cache_warm"]
    assert [e["released"] for e in warm if e.get("released")] == ["critical_path"]
    assert fake_anthropic.usage_totals()["cache_writes"] == 2


def test_estimate_weighs_the_wait_at_the_given_rate(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    cheap = run_dagagents(tmp_path, "estimate", "g.py", "--usd-per-second", "0")
    dear = run_dagagents(tmp_path, "estimate", "g.py", "--usd-per-second", "100")
    assert cheap.returncode == dear.returncode == 0, cheap.stderr + dear.stderr
    assert "would not wait" not in cheap.stdout
    # As in the run: one of the two long calls goes at once; `short` has the slack to wait.
    text = " ".join(dear.stdout.split())
    assert "reads it once" in text and "long_b on the critical path would not wait" in text


def test_bad_rates_are_one_sentence_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    for args, says in [
        (("--usd-per-second", "-1"), "--usd-per-second must be 0 or more, got -1.0."),
        (("--usd-per-second", "nan"), "--usd-per-second must be 0 or more, got nan."),
        (
            ("--usd-per-second", "1", "--no-cache-warming"),
            "--usd-per-second weighs cache warming; it cannot go with --no-cache-warming.",
        ),
    ]:
        proc = run_dagagents(tmp_path, "run", "g.py", "--no-store", "-q", *args)
        assert proc.returncode == 2, proc.stderr
        assert says in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / ".dagagents").exists()
