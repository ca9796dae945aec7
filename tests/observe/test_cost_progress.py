"""The live view and the summary table show batches, warming and savings."""

from __future__ import annotations

import io
from typing import Any

from _anthropic_support import provider_for, run_graph
from rich.console import Console

from dagagents import Agent, Graph
from dagagents.engine.batches import BatchOptions
from dagagents.observe.progress import LiveProgress, PlainProgress, summary_table
from dagagents.observe.runs import NodeRecord, RunResult
from dagagents.providers.base import Usage
from dagagents.testing import FakeAnthropic, fake_anthropic_fixture  # noqa: F401


def rendered(thing: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(thing)
    return out.getvalue()


def test_live_view_shows_batches_and_the_nodes_waiting_in_them() -> None:
    view = LiveProgress(Console(file=io.StringIO()), "g")
    events = [
        {"event": "run_start", "nodes": 3},
        {"event": "node_start", "node": "a"},
        {"event": "node_start", "node": "b"},
        {"event": "batch_wait", "node": "a", "custom_id": "x"},
        {
            "event": "batch_submitted",
            "batch_id": "msgbatch_0123456789",
            "requests": 2,
            "nodes": ["a", "b"],
        },
        {"event": "batch_status", "batch_id": "msgbatch_0123456789", "status": "in_progress"},
    ]
    for event in events:
        view(event)
    text = rendered(view.render())
    assert "batches: 1 submitted, 1 processing, 0 ended" in text
    assert "in batch 23456789" in text
    view({"event": "batch_status", "batch_id": "msgbatch_0123456789", "status": "ended"})
    assert "1 submitted, 0 processing, 1 ended" in rendered(view.render())


def test_summary_table_says_what_caching_and_batching_saved() -> None:
    record = NodeRecord(
        "w0",
        status="done",
        agent="analyst",
        model="claude-sonnet-4-6",
        usage=Usage(input_tokens=10, output_tokens=5, cache_read_input_tokens=6000),
        cost_usd=0.001,
        calls=1,
        saved_cache_usd=0.0162,
        saved_batch_usd=0.001,
        batch_calls=1,
    )
    result = RunResult("g", "run1", {"w0": record}, {"w0": "x"}, 1.0, 8, "anthropic")
    caption = " ".join(rendered(summary_table(result)).split())
    assert "saved $0.0162 by prompt caching (6,000 tokens read, 0 written)" in caption
    assert "$0.0010 by batching (1 batch calls)" in caption


def test_live_view_of_a_batch_run_through_the_real_sdk(fake_anthropic: FakeAnthropic) -> None:
    """Rendered at the moment each batch is seen processing, and at the end."""
    fake_anthropic.batches.delay = 0.5  # each batch is polled at least once while processing
    worker = Agent("worker", model="claude-haiku-4-5", max_tokens=32)
    g = Graph("levels")
    g.task("a", worker, "First question.")
    g.task("b", worker, "Second question.")
    g.task("c", worker, "Combine.", depends_on=["a", "b"])
    view = LiveProgress(Console(file=io.StringIO()), "levels")
    processing: list[str] = []

    def listen(event: dict[str, Any]) -> None:
        view(event)
        if event["event"] == "batch_status" and event["status"] == "in_progress":
            processing.append(rendered(view.render()))

    log = io.StringIO()
    plain = PlainProgress(Console(file=log, width=200, color_system=None))

    def both(event: dict[str, Any]) -> None:
        listen(event)
        plain(event)

    fast = BatchOptions(window=0.1, poll=0.05, poll_max=0.2)
    result = run_graph(g, provider=provider_for(fake_anthropic), batch=fast, listener=both)
    assert result.ok, result.errors
    first, second = processing
    assert "batches: 1 submitted, 1 processing, 0 ended" in first
    rows = {
        line.split()[0]: line for line in first.splitlines() if line.split()[:1] in (["a"], ["b"])
    }
    batch_id = fake_anthropic.batches.submitted[0].id
    for name in ("a", "b"):
        assert f"in batch {batch_id[-8:]} · processing" in rows[name]
    assert "batches: 2 submitted, 1 processing, 1 ended" in second
    assert "· processing" in next(line for line in second.splitlines() if line.startswith("c "))
    assert "batches: 2 submitted, 0 processing, 2 ended" in rendered(view.render())
    # The plain log (pipes, CI) says when each batch went and how it ended.
    words = [line.split()[1:] for line in log.getvalue().splitlines() if " batch " in line]
    first_id, second_id = (b.id for b in fake_anthropic.batches.submitted)
    assert words == [
        ["batch", first_id, "submitted:", "2", "request(s)", "for", "a,", "b"],
        ["batch", first_id, "processing"],
        ["batch", first_id, "ended"],
        ["batch", second_id, "submitted:", "1", "request(s)", "for", "c"],
        ["batch", second_id, "processing"],
        ["batch", second_id, "ended"],
    ]
