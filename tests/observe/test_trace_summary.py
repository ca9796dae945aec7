"""The trace of an eventful run, and `trace summary` figures checked against the trace by hand."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import cli_env, dagagents_cmd, run_dagagents
from eventful import eventful_run

from dagagents.observe.summary import RunData, load_run, summarize
from dagagents.observe.trace import TRACE_VERSION

NODE_EVENTS = ("node_ready", "node_start", "cache_hit", "node_complete", "node_error")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("eventful") / "store"
    result = eventful_run(store)
    assert result.status == {
        "background": "cached",
        "fetch": "done",
        "research": "done",
        "parse": "failed",
        "chart": "skipped",
        "memo": "done",
    }
    return store


def stored_events(store: Path) -> list[dict[str, Any]]:
    (run,) = [
        d
        for d in (store / "runs").iterdir()
        if orjson.loads((d / "manifest.json").read_bytes())["graph"] == "eventful"
    ]
    lines = (run / "trace.jsonl").read_bytes().splitlines()
    return [orjson.loads(line) for line in lines]


def test_trace_holds_exactly_the_events_in_a_valid_order(run_dir: Path) -> None:
    events = stored_events(run_dir)
    kinds = Counter(e["event"] for e in events)
    # Exactly one of each thing that happened, no more.
    assert kinds["retry"] == 1
    assert kinds["cache_hit"] == 1
    assert kinds["tool_call"] == 1
    assert kinds["node_error"] == 1
    assert kinds["node_skipped"] == 1
    assert kinds["run_start"] == kinds["run_end"] == 1
    assert kinds["node_complete"] == 3  # fetch, research, memo
    assert {e["node"] for e in events if e["event"] == "node_start"} == {
        "fetch",
        "research",
        "parse",
        "memo",
    }
    by = {k: [e for e in events if e["event"] == k][0] for k in ("retry", "cache_hit", "tool_call")}
    assert by["retry"]["node"] == "fetch" and by["retry"]["error"] == "overloaded"
    assert by["cache_hit"]["node"] == "background"
    assert by["tool_call"]["node"] == "research" and by["tool_call"]["tool"] == "lookup"
    error = next(e for e in events if e["event"] == "node_error")
    assert error["node"] == "parse" and "row 3 has no date" in error["error"]
    skip = next(e for e in events if e["event"] == "node_skipped")
    assert skip["node"] == "chart" and skip["because"] == "parse"

    # Every event carries the schema fields; time never runs backwards.
    for e in events:
        assert e["v"] == TRACE_VERSION and e["run"] == events[0]["run"]
        assert isinstance(e["ts"], float) and isinstance(e["t"], float)
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    assert events[0]["event"] == "run_start" and events[-1]["event"] == "run_end"

    # Per node: start (or a cache hit), then its outcome; retries and tool calls happen while
    # the node runs. `node_ready` comes first only for a node that waits before it starts:
    # the agents claim their lease in the store; the step and the cache hit start at once.
    index = {(e["event"], e.get("node")): i for i, e in enumerate(events)}

    def at(kind: str, node: str) -> int:
        return index[(kind, node)]

    for node in ("fetch", "research", "memo"):
        assert at("node_ready", node) < at("node_start", node)
    assert [e["node"] for e in events if e["event"] == "node_ready"] == sorted(
        ("fetch", "research", "memo"), key=lambda n: at("node_ready", n)
    )
    assert ("node_start", "background") not in index  # a cache hit takes no slot
    assert at("node_start", "fetch") < at("retry", "fetch") < at("node_complete", "fetch")
    assert (
        at("node_start", "research") < at("tool_call", "research") < at("node_complete", "research")
    )
    assert at("node_complete", "fetch") < at("node_start", "parse") < at("node_error", "parse")
    assert at("node_error", "parse") < at("node_skipped", "chart")
    assert not any(e.get("node") == "chart" for e in events if e["event"] in NODE_EVENTS)
    # A message along an edge follows its source's outcome and its destination's start.
    done_at = {
        e["node"]: i for i, e in enumerate(events) if e["event"] in ("node_complete", "cache_hit")
    }
    for i, e in enumerate(events):
        if e["event"] == "message":
            assert done_at[e["src"]] < i and at("node_start", e["dst"]) < i
    messages = {(e["src"], e["dst"]) for e in events if e["event"] == "message"}
    assert messages == {
        ("background", "research"),
        ("fetch", "parse"),
        ("research", "memo"),
        ("fetch", "memo"),
    }


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    pos = (len(values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def test_summary_figures_equal_those_computed_from_the_trace(run_dir: Path) -> None:
    events = stored_events(run_dir)
    summary = summarize(load_run("latest", run_dir))
    trace_only = summarize(RunData.from_events(events))

    # By hand from the events.
    agent_of = {e["node"]: e.get("agent") for e in events if e["event"] == "node_start"}
    complete = [e for e in events if e["event"] == "node_complete"]
    cost: dict[str, float] = {}
    tokens: dict[str, tuple[int, int]] = {}
    durations: dict[str, list[float]] = {}
    for e in complete:
        agent = agent_of[e["node"]]
        cost[agent] = cost.get(agent, 0.0) + e["cost"]
        i, o = tokens.get(agent, (0, 0))
        tokens[agent] = (i + e["usage"]["input_tokens"], o + e["usage"]["output_tokens"])
        durations.setdefault(agent, []).append(e["duration"])
    start_t = {e["node"]: e["t"] for e in events if e["event"] == "node_start"}
    node_time = sum(e["duration"] for e in complete) + sum(
        e["t"] - start_t[e["node"]] for e in events if e["event"] == "node_error"
    )
    run_start = events[0]
    wall = events[-1]["wall"]
    calls = Counter(e["node"] for e in events if e["event"] == "llm_call")

    for s in (summary, trace_only):
        assert s.wall == pytest.approx(wall)
        assert s.concurrency == run_start["concurrency"] == 2
        assert s.cost == pytest.approx(sum(e["cost"] for e in complete))
        assert s.cost == pytest.approx(events[-1]["cost"])
        by_agent = {a.agent: a for a in s.agents if a.nodes}
        assert set(by_agent) == set(cost) == {"flaky", "tooler", "writer"}
        for agent, stats in by_agent.items():
            assert stats.cost == pytest.approx(cost[agent])
            assert (stats.input_tokens, stats.output_tokens) == tokens[agent]
            assert stats.p50 == pytest.approx(percentile(durations[agent], 50), abs=1e-4)
            assert stats.p95 == pytest.approx(percentile(durations[agent], 95), abs=1e-4)
        assert by_agent["tooler"].calls == calls["research"] == 2  # tool turn + answer
        assert by_agent["tooler"].tools == {"lookup": 1}
        assert by_agent["flaky"].retries == 1
        assert s.cache_hits == 1
        assert s.node_time == pytest.approx(node_time, abs=2e-3)
        assert s.efficiency == pytest.approx(node_time / (wall * 2), abs=0.02)
        assert s.failures == [("parse", "ValueError: row 3 has no date")]
        assert s.skipped == [("chart", "parse")]
        assert [r["node"] for r in s.retries] == ["fetch"]
        assert s.slowest[0].name == max(complete, key=lambda e: e["duration"])["node"]

        # Critical path by hand: longest duration-weighted chain over the delivered edges.
        dur = {e["node"]: e["duration"] for e in complete}
        dur["parse"] = next(e["t"] for e in events if e["event"] == "node_error") - start_t["parse"]
        chains = {
            ("fetch", "memo"): dur["fetch"] + dur["memo"],
            ("research", "memo"): dur["research"] + dur["memo"],
            ("fetch", "parse"): dur["fetch"] + dur["parse"],
        }
        best = max(chains, key=chains.__getitem__)
        assert s.critical_time == pytest.approx(chains[best], abs=2e-3)
        assert [n for n in s.critical_path if n != "background"] == list(best)
        assert s.critical_share == pytest.approx(chains[best] / wall, abs=0.02)


def test_trace_summary_cli_on_store_run_and_on_trace_file(run_dir: Path, tmp_path: Path) -> None:
    env = cli_env(COLUMNS="200")
    out = subprocess.run(
        dagagents_cmd("trace", "summary", "--store", str(run_dir)),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in (
        "per agent",
        "tooler",
        "critical path",
        "parallel efficiency",
        "row 3 has no date",
        "because parse",
        "overloaded",
        "lookupx1",
    ):
        assert needle in text
    # A bare trace file copied elsewhere (no manifest beside it) gives the same figures.
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in stored_events(run_dir)))
    bare = subprocess.run(
        dagagents_cmd("trace", "summary", str(copy)),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bare.returncode == 0, bare.stderr
    assert "row 3 has no date" in bare.stdout and "tooler" in bare.stdout
    shown = subprocess.run(
        dagagents_cmd("trace", "show", "--store", str(run_dir), "--node", "fetch"),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert shown.returncode == 0 and "retry" in shown.stdout and "overloaded" in shown.stdout


def test_trace_summary_user_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"event": "run_start"}\nnot json\n')
    out = run_dagagents(Path.cwd(), "trace", "summary", str(bad))
    assert out.returncode == 2
    assert "line 2 is not JSON" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "empty").mkdir()
    empty_store = run_dagagents(Path.cwd(), "trace", "summary", "--store", str(tmp_path / "empty"))
    assert empty_store.returncode == 2 and "has no runs yet" in empty_store.stderr
    # a store that is not there is named as such, and reading it does not create it
    no_store = run_dagagents(Path.cwd(), "trace", "summary", "--store", str(tmp_path / "none"))
    assert no_store.returncode == 2 and "no store at" in no_store.stderr
    assert not (tmp_path / "none").exists()


def test_a_run_without_a_final_manifest_is_summarised_from_its_trace(
    run_dir: Path, tmp_path: Path
) -> None:
    events = stored_events(run_dir)
    cut = next(i for i, e in enumerate(events) if e["event"] == "node_complete")
    partial = events[: cut + 1]  # killed after the first node finished
    manifest = {"version": 1, "graph": "eventful", "run_id": partial[0]["run"], "status": "running"}
    data = RunData.from_manifest(manifest, partial)
    assert data.status == "running or killed"
    s = summarize(data)
    assert s.counts.get("done") == 1 and s.wall == pytest.approx(partial[-1]["t"])
    assert "running" in {n.status for n in data.nodes.values()}  # started, never finished
