"""OpenTelemetry spans for runs, nodes, model calls and tool calls (the optional `otel` extra).

Built from trace events, so live runs (`graph.run(listener=OtelListener())`) and stored traces
(`export_trace(events)`) give the same spans. Attribute names follow the OpenTelemetry GenAI
semantic conventions (`gen_ai.operation.name`, `gen_ai.request.model`,
`gen_ai.usage.input_tokens`, ...); dagagents-specific facts use the `dagagents.` prefix.
Span times are the trace's own timestamps, so a replayed trace lines up with the original run.
Prompts, outputs and tool arguments are never attached (they may hold private data).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dagagents.errors import UserError

INSTALL_HINT = (
    "OpenTelemetry is not installed; install the extra with `pip install 'dagagents[otel]'`."
)
_PROVIDERS = {"anthropic": "anthropic", "simulated": "dagagents.simulated"}


def _otel() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - depends on the environment
        raise UserError(INSTALL_HINT) from None
    return trace


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _usage_attributes(usage: dict[str, Any] | None) -> dict[str, int]:
    if not usage:
        return {}
    return {
        "gen_ai.usage.input_tokens": int(usage.get("input_tokens") or 0),
        "gen_ai.usage.output_tokens": int(usage.get("output_tokens") or 0),
        "gen_ai.usage.cache_creation.input_tokens": int(
            usage.get("cache_creation_input_tokens") or 0
        ),
        "gen_ai.usage.cache_read.input_tokens": int(usage.get("cache_read_input_tokens") or 0),
    }


class OtelListener:
    """A trace listener that turns events into spans: one per run (`invoke_workflow`), one per
    node (`invoke_agent` or a step), one per model call (`chat`) and tool call (`execute_tool`).

    `tracer_provider` defaults to the global one (configure exporters there as usual).
    """

    wants_tokens = False  # spans need no text deltas, so its runs do not stream for it

    def __init__(self, tracer_provider: Any = None) -> None:
        from dagagents import __version__

        self._trace = _otel()
        self.tracer = self._trace.get_tracer(
            "dagagents", __version__, tracer_provider=tracer_provider
        )
        self.run_span: Any = None
        self.nodes: dict[str, Any] = {}
        self.provider = ""

    def _ctx(self, parent: Any) -> Any:
        return self._trace.set_span_in_context(parent) if parent is not None else None

    def _span(self, name: str, parent: Any, start: float, attributes: dict[str, Any]) -> Any:
        return self.tracer.start_span(
            name,
            context=self._ctx(parent),
            start_time=_ns(start),
            attributes={k: v for k, v in attributes.items() if v is not None},
        )

    def _error(self, span: Any, message: str, error_type: str = "error") -> None:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, message))
        span.set_attribute("error.type", error_type)

    def _tool_span(self, event: dict[str, Any], node: str, ts: float) -> None:
        duration = float(event.get("duration") or 0.0)
        span = self._span(
            f"execute_tool {event.get('tool', '')}",
            self.nodes.get(node, self.run_span),
            ts - duration,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": event.get("tool"),
                "gen_ai.tool.type": "function",
                "dagagents.node": node,
            },
        )
        if event.get("error"):
            self._error(span, str(event["error"]), "tool_error")
        span.end(end_time=_ns(ts))

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        ts = float(event["ts"])
        node = event.get("node")
        if kind == "run_start":
            self.provider = _PROVIDERS.get(event.get("provider", ""), event.get("provider", ""))
            self.run_span = self._span(
                f"invoke_workflow {event.get('graph', '')}",
                None,
                ts,
                {
                    "gen_ai.operation.name": "invoke_workflow",
                    "gen_ai.workflow.name": event.get("graph"),
                    "gen_ai.provider.name": self.provider,
                    "dagagents.run_id": event.get("run"),
                    "dagagents.concurrency": event.get("concurrency"),
                    "dagagents.nodes": event.get("nodes"),
                },
            )
        elif kind == "node_start" and node:
            agent = event.get("agent")
            name = f"invoke_agent {agent}" if agent else f"step {node}"
            self.nodes[node] = self._span(
                name,
                self.run_span,
                ts,
                {
                    "gen_ai.operation.name": "invoke_agent" if agent else None,
                    "gen_ai.agent.name": agent,
                    "gen_ai.request.model": event.get("model"),
                    "gen_ai.provider.name": self.provider if agent else None,
                    "dagagents.node": node,
                    "dagagents.node.kind": event.get("kind"),
                },
            )
        elif kind == "llm_call" and node:
            duration = float(event.get("duration") or 0.0)
            span = self._span(
                f"chat {event.get('model', '')}",
                self.nodes.get(node, self.run_span),
                ts - duration,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": self.provider,
                    "gen_ai.request.model": event.get("model"),
                    "gen_ai.response.model": event.get("model"),
                    "gen_ai.response.finish_reasons": [str(event.get("stop_reason"))],
                    "dagagents.node": node,
                    "dagagents.attempts": event.get("attempts"),
                    "dagagents.cost_usd": event.get("cost"),
                    **_usage_attributes(event.get("usage")),
                },
            )
            span.end(end_time=_ns(ts))
        elif kind == "tool_call" and node:
            self._tool_span(event, node, ts)
        elif kind == "retry" and node in self.nodes:
            self.nodes[node].add_event(
                "retry",
                {
                    "dagagents.attempt": int(event.get("attempt") or 0),
                    "dagagents.wait": float(event.get("wait") or 0.0),
                    "error.type": str(event.get("kind") or "error"),
                    "exception.message": str(event.get("error")),
                },
                timestamp=_ns(ts),
            )
        elif kind == "message" and event.get("dst") in self.nodes:
            self.nodes[event["dst"]].add_event(
                "message", {"dagagents.src": str(event.get("src"))}, timestamp=_ns(ts)
            )
        elif kind == "cache_hit" and node:
            span = self._span(
                f"cache_hit {node}",
                self.run_span,
                ts,
                {
                    "dagagents.node": node,
                    "dagagents.cache_hit": True,
                    "dagagents.saved_cost_usd": event.get("saved_cost"),
                },
            )
            span.end(end_time=_ns(ts))
        elif kind == "node_complete" and node in self.nodes:
            span = self.nodes.pop(node)
            span.set_attributes(
                {
                    k: v
                    for k, v in {
                        "gen_ai.response.model": event.get("model"),
                        "dagagents.cost_usd": event.get("cost"),
                        "dagagents.simulated": event.get("simulated"),
                        **_usage_attributes(event.get("usage")),
                    }.items()
                    if v is not None
                }
            )
            span.end(end_time=_ns(ts))
        elif kind == "node_error" and node:
            span = self.nodes.pop(node, None)
            if span is not None:
                self._error(span, str(event.get("error")), "node_failed")
                span.end(end_time=_ns(ts))
        elif kind in ("node_skipped", "expand", "warning") and self.run_span is not None:
            attributes = {
                f"dagagents.{k}": str(v)
                for k, v in event.items()
                if k not in ("v", "event", "run", "ts", "t") and v is not None
            }
            self.run_span.add_event(kind, attributes, timestamp=_ns(ts))
        elif kind == "run_end" and self.run_span is not None:
            for span in self.nodes.values():  # anything still open was interrupted
                span.end(end_time=_ns(ts))
            self.nodes.clear()
            self.run_span.set_attributes(
                {
                    "dagagents.status": str(event.get("status")),
                    "dagagents.wall": float(event.get("wall") or 0.0),
                    "dagagents.cost_usd": float(event.get("cost") or 0.0),
                }
            )
            if event.get("status") != "done":
                self._error(
                    self.run_span, f"run {event.get('status')}", "run_" + str(event.get("status"))
                )
            self.run_span.end(end_time=_ns(ts))
            self.run_span = None


def export_trace(events: Iterable[dict[str, Any]], tracer_provider: Any = None) -> None:
    """Replay a stored trace (e.g. `Store.read_trace(run)`) as spans."""
    listener = OtelListener(tracer_provider)
    for event in events:
        listener(event)
