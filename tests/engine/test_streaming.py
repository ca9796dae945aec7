"""Token streaming as a user watches it: deltas reach listeners and `astream` before the node
completes (event order, not timing), add up to the output, and never reach the JSONL trace;
the Anthropic path streams over SSE through the real SDK against the loopback fake server."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from _anthropic_support import provider_for, run_graph
from rich.console import Console

from dagagents import Agent, Graph, SimulatedProvider, Store
from dagagents.observe.progress import LiveProgress
from dagagents.testing import FakeAnthropic, fake_anthropic_fixture  # noqa: F401

AGENT = Agent("w", model="claude-haiku-4-5", system="Be brief.", max_tokens=120)


def chain() -> Graph:
    g = Graph("stream")
    g.task("first", AGENT, "Tell me about owls.")
    g.task("second", AGENT, "Expand on: {first}", depends_on=["first"])
    return g


def check_order(events: list[dict[str, Any]], outputs: dict[str, Any]) -> None:
    """Each node's tokens come after its start and before its completion, and add up."""
    for node, output in outputs.items():
        kinds = [e["event"] for e in events if e.get("node") == node]
        tokens = [i for i, k in enumerate(kinds) if k == "token"]
        assert len(tokens) > 1, f"{node} streamed {len(tokens)} deltas"
        assert kinds.index("node_start") < tokens[0]
        assert tokens[-1] < kinds.index("node_complete")
        text = "".join(e["text"] for e in events if e.get("node") == node and e["event"] == "token")
        assert text == output


async def test_astream_yields_tokens_before_the_node_completes(tmp_path: Any) -> None:
    g = chain()
    seen: list[dict[str, Any]] = []
    result = None
    async for item in g.astream(provider=SimulatedProvider(time_scale=0.01), store=tmp_path / "st"):
        if isinstance(item, dict):
            seen.append(item)
        else:
            result = item
    assert result is not None and result.ok
    check_order(seen, result.outputs)
    assert seen[0]["event"] == "run_start" and seen[-1]["event"] == "run_end"
    # The trace on disk and the result's events hold no token events (traces stay small).
    stored = Store(tmp_path / "st").read_trace(result.run_id)
    assert stored and not [e for e in stored if e["event"] == "token"]
    assert not [e for e in result.events if e["event"] == "token"]


async def test_astream_break_cancels_the_run(tmp_path: Any) -> None:
    g = chain()
    stream = g.astream(provider=SimulatedProvider(time_scale=0.05), store=tmp_path)
    async with contextlib.aclosing(stream):
        async for item in stream:
            if isinstance(item, dict) and item["event"] == "token":
                break
    manifest = Store(tmp_path).read_manifest()
    assert manifest["status"] == "interrupted"


def test_anthropic_path_streams_over_sse(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.stream_delay = 0.001
    events: list[dict[str, Any]] = []
    provider = provider_for(fake_anthropic)
    result = run_graph(chain(), provider=provider, listener=events.append)
    assert result.ok, result.errors
    assert [r.stream for r in fake_anthropic.requests] == [True, True]
    check_order(events, result.outputs)


def test_no_token_listener_no_streaming(fake_anthropic: FakeAnthropic) -> None:
    class Quiet:
        wants_tokens = False

        def __call__(self, event: dict[str, Any]) -> None:
            assert event["event"] != "token"

    result = run_graph(chain(), provider=provider_for(fake_anthropic), listener=Quiet())
    assert result.ok
    assert [r.stream for r in fake_anthropic.requests] == [False, False]


def test_live_view_shows_the_tail_of_a_running_node() -> None:
    console = Console(file=io.StringIO(), width=120, force_terminal=True)
    view = LiveProgress(console, "g")
    view({"event": "run_start", "nodes": 1, "t": 0.0})
    view({"event": "node_start", "node": "a", "t": 0.0})
    for word in ["The ", "owl ", "hunts ", "at ", "dusk."]:
        view({"event": "token", "node": "a", "text": word, "t": 0.1})
    console.print(view.render())
    assert "The owl hunts at dusk." in console.file.getvalue()  # type: ignore[attr-defined]
