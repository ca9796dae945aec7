"""What a node produced and what it was asked: read back from the store for `show`, the HTML
report and the web view.

Outputs live in the store's objects under the key the run's manifest (or trace) records; an
agent node's object also carries the rendered prompt and system prompt it sent (its meta), so a
cached node shows the prompt that produced it. Nothing here reads the environment, and the
meta never holds request headers or keys, so nothing shown can leak one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from dagagents.store import CorruptObject, Store, codec

PREVIEW_CHARS = 80


@dataclass
class NodeDetail:
    """One node's record plus, when its object is in the store, its output and prompt."""

    name: str
    status: str
    kind: str = "node"
    key: str | None = None
    agent: str | None = None
    model: str | None = None
    has_output: bool = False
    output: Any = None
    prompt: str | None = None
    system: str | None = None
    note: str | None = None
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The output as a person reads it: text as is, anything else as indented JSON."""
        if not self.has_output:
            return ""
        return output_text(self.output)

    @property
    def preview(self) -> str:
        """One line: the start of the output, else why there is none."""
        if self.has_output:
            line = " ".join(self.text.split())
            return line if len(line) <= PREVIEW_CHARS else line[: PREVIEW_CHARS - 1] + "…"
        return self.note or ""

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.name,
            "status": self.status,
            "kind": self.kind,
            "key": self.key,
            "agent": self.agent,
            "model": self.model,
            "output": untag(self.output) if self.has_output else None,
            "prompt": self.prompt,
            "system": self.system,
            "note": self.note,
        }


def output_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(untag(value), option=orjson.OPT_INDENT_2).decode()


def untag(value: Any) -> Any:
    """A stored output with the codec's pydantic class tags replaced by the model's fields."""
    if isinstance(value, list):
        return [untag(v) for v in value]
    if isinstance(value, dict):
        if "__dagagents_pydantic__" in value and "data" in value:
            return untag(value["data"])
        return {k: untag(v) for k, v in value.items()}
    return value


def node_detail(store: Store | None, name: str, record: dict[str, Any]) -> NodeDetail:
    """`record` is a manifest node entry (or one rebuilt from the trace)."""
    status = str(record.get("status", "pending"))
    detail = NodeDetail(
        name=name,
        status=status,
        kind=str(record.get("kind") or "node"),
        key=record.get("key"),
        agent=record.get("agent"),
        model=record.get("model"),
        record=record,
    )
    if record.get("error"):
        detail.note = str(record["error"])
    elif record.get("because"):
        detail.note = f"skipped because {record['because']}"
    if store is None or not detail.key or status not in ("done", "cached"):
        if detail.note is None:
            detail.note = f"no output ({status})"
        return detail
    try:
        stored = store.get(detail.key)
    except CorruptObject as exc:
        detail.note = f"its checkpoint {detail.key[:12]} is corrupt ({exc})"
        return detail
    if stored is None:
        detail.note = f"its checkpoint {detail.key[:12]} is no longer in the store (gc?)"
        return detail
    detail.has_output = True
    detail.output = codec.decode_json(stored.value)
    meta = stored.meta
    if isinstance(meta.get("prompt"), str):
        detail.prompt = meta["prompt"]
        detail.system = meta.get("system") or ""
    return detail


def run_details(store: Store | None, nodes: dict[str, dict[str, Any]]) -> dict[str, NodeDetail]:
    """`node_detail` for every node of a run."""
    return {name: node_detail(store, name, record) for name, record in nodes.items()}
