"""OpenTelemetry spans with GenAI semantic-convention attributes (skipped without the SDK)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventful import eventful_run

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk not installed (extra `otel`)")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402

from dagagents.observe.otel import export_trace  # noqa: E402
from dagagents.store import Store  # noqa: E402


def test_spans_from_a_stored_trace(tmp_path: Path) -> None:
    result = eventful_run(tmp_path / "st")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    export_trace(Store(tmp_path / "st").read_trace(result.run_id), provider)
    spans = exporter.get_finished_spans()
    by_name: dict[str, list] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)

    (run,) = by_name["invoke_workflow eventful"]
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.attributes["dagagents.status"] == "failed"
    assert run.status.status_code == StatusCode.ERROR
    assert {e.name for e in run.events} >= {"node_skipped"}

    (memo,) = by_name["invoke_agent writer"]
    assert memo.parent.span_id == run.context.span_id
    assert memo.attributes["gen_ai.agent.name"] == "writer"
    assert memo.attributes["gen_ai.request.model"] == "claude-opus-4-6"
    record = result.records["memo"]
    assert memo.attributes["gen_ai.usage.input_tokens"] == record.usage.input_tokens
    assert memo.attributes["gen_ai.usage.output_tokens"] == record.usage.output_tokens

    (fetch,) = by_name["invoke_agent flaky"]
    assert [e.name for e in fetch.events].count("retry") == 1
    (tool,) = by_name["execute_tool lookup"]
    (research,) = by_name["invoke_agent tooler"]
    assert tool.parent.span_id == research.context.span_id
    assert tool.attributes["gen_ai.tool.name"] == "lookup"
    chats = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(chats) == 4  # fetch, research x2 (tool turn + answer), memo
    assert all("gen_ai.usage.output_tokens" in s.attributes for s in chats)

    (parse,) = by_name["step parse"]
    assert parse.status.status_code == StatusCode.ERROR
    assert "row 3 has no date" in parse.status.description
    (cached,) = by_name["cache_hit background"]
    assert cached.attributes["dagagents.cache_hit"] is True
    # Spans sit inside their run, on the trace's own clock.
    for span in spans:
        assert run.start_time <= span.start_time <= span.end_time <= run.end_time
    # No prompt or output text is attached anywhere.
    text = " ".join(str(v) for s in spans for v in s.attributes.values())
    assert "Write the memo" not in text and "Fetch the numbers" not in text


def test_live_listener_during_a_run() -> None:
    from dagagents import Agent, Graph, SimulatedProvider
    from dagagents.observe.otel import OtelListener

    g = Graph("live")
    g.task("a", Agent("solo", max_tokens=100), "Say hi.")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    result = g.run(
        provider=SimulatedProvider(time_scale=0.0), store=None, listener=OtelListener(provider)
    )
    assert result.ok
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names == ["chat claude-sonnet-4-6", "invoke_agent solo", "invoke_workflow live"]
