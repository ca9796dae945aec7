"""The one record of a node (`NodeRecord`), the one fold of a trace into such records, and
`RunResult`: what a run produced, per node, plus where its time and money went.

The runtime fills records as nodes settle, the manifest stores them (`to_json` / `from_json`),
and a trace folds back into them (`fold_events`), so the summary, the report, `status` and the
charts all read one shape whatever the run was read from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagagents.errors import DagAgentsError
from dagagents.providers.base import Usage

CONDITION_FALSE = "condition false"  # why a node whose when= did not hold was skipped
# Statuses of nodes that took a slot (as opposed to cached or skipped ones).
RAN = frozenset({"done", "failed", "cancelled"})
NO_USAGE = Usage()
_NO_USAGE_JSON = NO_USAGE.model_dump()


def round_usd(dollars: float) -> float:
    """Money to a millionth of a dollar: sums of float prices show 0.009942, not
    0.009942000000000001, and no price is finer than that."""
    return round(dollars, 6) + 0.0  # + 0.0 turns -0.0 into 0.0


@dataclass
class NodeRecord:
    """One node's outcome. Times are seconds since the run started. `status` uses the
    scheduler's words: pending, running, done, cached, failed, cancelled, skipped.
    (A run makes one per node up front: `pending` makes it holding only what differs from
    the defaults, which stay on the class.)"""

    name: str
    status: str = "pending"
    kind: str = "step"
    agent: str | None = None
    model: str | None = None
    key: str | None = None
    digest: str | None = None
    start: float | None = None
    end: float | None = None
    # Shared by every record that made no call: a record's usage is replaced, never changed in
    # place (a pydantic object per node was ~1 us and ~0.5 KB at 100,000 nodes).
    usage: Usage = field(default_factory=lambda: NO_USAGE)
    cost_usd: float = 0.0
    calls: int = 0
    error: str | None = None
    because: str | None = None
    simulated: bool = False
    depends_on: tuple[str, ...] = ()
    # From the trace only (the manifest does not keep them).
    retries: int = 0
    tool_calls: int = 0
    # Saved against the same calls uncached at the standard price (cache; Message Batches).
    saved_cache_usd: float = 0.0
    saved_batch_usd: float = 0.0
    batch_calls: int = 0
    # A cached node's: how long computing it took when its checkpoint was written (what a
    # rerun that must compute it would take). Kept in the manifest, so the next run's
    # priorities need not read back through every run that only reused it.
    compute_seconds: float | None = None

    @classmethod
    def pending(
        cls,
        name: str,
        kind: str,
        depends_on: tuple[str, ...],
        agent: str | None = None,
        model: str | None = None,
    ) -> NodeRecord:
        """The record of a node that has not started, without the generated `__init__`
        (which sets every field: ~3x the cost, and a run makes 100,000 of these)."""
        record = object.__new__(cls)
        record.name = name
        record.kind = kind
        record.depends_on = depends_on
        record.usage = NO_USAGE  # a default_factory field has no class-level default
        if agent is not None:
            record.agent = agent
            record.model = model
        return record

    @property
    def duration(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        seconds = self.end - self.start
        return seconds if seconds > 0.0 else 0.0

    @property
    def ran(self) -> bool:
        """Did this node take a slot (done, failed or cancelled), as opposed to cached/skipped?"""
        return self.status in RAN and self.start is not None

    @classmethod
    def from_json(cls, name: str, raw: Mapping[str, Any]) -> NodeRecord:
        """A record as a manifest stores it (`to_json`); missing fields keep their defaults."""
        return cls(
            name=name,
            status=str(raw.get("status") or "pending"),
            kind=str(raw.get("kind") or "node"),
            agent=raw.get("agent"),
            model=raw.get("model"),
            key=raw.get("key"),
            digest=raw.get("digest"),
            start=number_or_none(raw.get("start")),
            end=number_or_none(raw.get("end")),
            usage=Usage.model_validate(raw.get("usage") or {}),
            cost_usd=number_or_none(raw.get("cost_usd")) or 0.0,
            calls=int(number_or_none(raw.get("calls")) or 0),
            error=raw.get("error"),
            because=raw.get("because"),
            simulated=bool(raw.get("simulated", False)),
            depends_on=tuple(str(d) for d in raw.get("depends_on") or ()),
            saved_cache_usd=number_or_none(raw.get("saved_cache_usd")) or 0.0,
            saved_batch_usd=number_or_none(raw.get("saved_batch_usd")) or 0.0,
            batch_calls=int(number_or_none(raw.get("batch_calls")) or 0),
            compute_seconds=number_or_none(raw.get("compute_seconds")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "kind": self.kind,
            "agent": self.agent,
            "model": self.model,
            "key": self.key,
            "digest": self.digest,
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "usage": dict(_NO_USAGE_JSON) if self.usage is NO_USAGE else self.usage.model_dump(),
            "cost_usd": round_usd(self.cost_usd),
            "calls": self.calls,
            "error": self.error,
            "because": self.because,
            "simulated": self.simulated,
            "depends_on": list(self.depends_on),
            "saved_cache_usd": self.saved_cache_usd,
            "saved_batch_usd": self.saved_batch_usd,
            "batch_calls": self.batch_calls,
            **({} if self.compute_seconds is None else {"compute_seconds": self.compute_seconds}),
        }


def number_or_none(value: Any) -> float | None:
    """A float from a manifest or checkpoint field, None when it is missing or not a number
    (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def fold_events(events: Iterable[Mapping[str, Any]]) -> dict[str, NodeRecord]:
    """The one fold of a trace into node records (statuses, timings, usage, cost, retries,
    tool calls). A node that started and has no outcome yet is `running`."""
    nodes: dict[str, NodeRecord] = {}
    calls: Counter[str] = Counter()

    def node(name: str) -> NodeRecord:
        record = nodes.get(name)
        if record is None:
            record = nodes[name] = NodeRecord(name, kind="node")
        return record

    for e in events:
        kind = e["event"]
        name = e.get("node")
        if kind == "expand":
            for added in e.get("added", []):
                node(added)
        if name is None:
            continue
        n = node(name)
        t = float(e.get("t") or 0.0)
        _apply(n, kind, e, t, calls)
    for name, count in calls.items():
        nodes[name].calls = count
    return nodes


def _apply(n: NodeRecord, kind: str, e: Mapping[str, Any], t: float, calls: Counter[str]) -> None:
    """One trace event's change to its node's record (`calls` counts LLM calls by node)."""
    if kind == "node_start":
        n.status, n.start = "running", t
        n.kind = e.get("kind") or n.kind
        n.agent, n.model = e.get("agent"), e.get("model")
    elif kind == "cache_hit":
        n.status, n.start, n.end = "cached", t, t
        n.key = e.get("key")
        n.cost_usd = float(e.get("saved_cost") or 0.0)
    elif kind == "node_complete":
        n.status, n.end = "done", t
        if e.get("duration") is not None:
            n.start = t - float(e["duration"])
        n.key = e.get("key") or n.key
        n.model = e.get("model") or n.model
        n.usage = Usage.model_validate(e.get("usage") or {})
        n.cost_usd = float(e.get("cost") or 0.0)
        n.calls = int(e.get("calls") or (1 if e.get("usage") else 0))
    elif kind == "node_error":
        n.error = e.get("error")
        n.status = "cancelled" if n.error in ("cancelled", "interrupted") else "failed"
        if n.start is not None:
            n.end = t
    elif kind == "node_waiting":
        n.status, n.key = "waiting", e.get("key") or n.key
    elif kind == "node_skipped":
        n.status, n.because = "skipped", e.get("because")
    elif kind == "retry":
        n.retries += 1
    elif kind == "tool_call":
        n.tool_calls += 1
    elif kind == "llm_call":
        calls[n.name] += 1
        n.saved_cache_usd += float(e.get("saved_cache") or 0.0)
        n.saved_batch_usd += float(e.get("saved_batch") or 0.0)
        n.batch_calls += 1 if e.get("batch") else 0


class RunFailed(DagAgentsError):
    """Raised by `RunResult.raise_for_status` when some node failed."""


@dataclass
class RunResult:
    """Outputs and statuses by node name; `records` has timings, usage and cost."""

    graph: str
    run_id: str
    records: dict[str, NodeRecord]
    outputs: dict[str, Any]
    wall: float
    concurrency: int
    provider: str
    store: str | None = None
    interrupted: bool = False
    events: Sequence[dict[str, Any]] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)
    # The node named by `Graph(output=...)`.
    output_node: str | None = None
    # "store X is full: N nodes could not be saved" when outputs were computed but the store
    # (full, read-only) kept none of them: the run did not do what a rerun relies on.
    store_problem: str | None = None
    unsaved: list[str] = field(default_factory=list)

    @property
    def output(self) -> Any:
        """The graph's result: the output of the node named by `Graph(output=...)`."""
        if self.output_node is None:
            raise DagAgentsError(
                f"graph '{self.graph}' names no output; use Graph(..., output='node') "
                "or result.outputs['node']."
            )
        if self.output_node not in self.outputs:
            status = (
                self.records[self.output_node].status
                if self.output_node in self.records
                else "missing"
            )
            raise RunFailed(f"output node '{self.output_node}' has no output ({status}).")
        return self.outputs[self.output_node]

    def rounds(self, loop: str) -> list[Any]:
        """Every finished round's output of loop `loop`, first round first."""
        out: list[Any] = []
        k = 1
        while f"{loop}[{k}]" in self.outputs:
            value = self.outputs[f"{loop}[{k}]"]
            out.append(value["output"] if isinstance(value, dict) else value)
            k += 1
        return out

    def items(self, map_name: str) -> dict[str, Any]:
        """A map's item outputs by item node name (`jokes[0]`, ...), in item order."""
        found = [n for n in self.outputs if n.startswith(f"{map_name}[") and n[-2:] != "*]"]
        found = [n for n in found if n[len(map_name) + 1 : -1].isdigit()]
        return {
            n: self.outputs[n] for n in sorted(found, key=lambda n: int(n[len(map_name) + 1 : -1]))
        }

    @property
    def status(self) -> dict[str, str]:
        return {name: r.status for name, r in self.records.items()}

    @property
    def waiting(self) -> list[str]:
        """Approval nodes waiting for a decision (`Graph.approve`, `dagagents approve`)."""
        return [name for name, r in self.records.items() if r.status == "waiting"]

    @property
    def errors(self) -> dict[str, str]:
        """Why each failed node failed, and for skipped nodes which ancestor failed."""
        out: dict[str, str] = {}
        for name, r in self.records.items():
            if r.error:
                out[name] = r.error
            elif r.status == "skipped" and r.because:
                out[name] = f"skipped because {r.because}"
        return out

    @property
    def timings(self) -> dict[str, tuple[float, float]]:
        return {
            n: (r.start, r.end)
            for n, r in self.records.items()
            if r.start is not None and r.end is not None
        }

    @property
    def ok(self) -> bool:
        return (
            not self.interrupted
            and self.store_problem is None
            and all(
                r.status in ("done", "cached")
                or (r.status == "skipped" and r.because == CONDITION_FALSE)
                for r in self.records.values()
            )
        )

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(r.status for r in self.records.values()))

    @property
    def cost_usd(self) -> float:
        return round_usd(sum(r.cost_usd for r in self.records.values() if r.status == "done"))

    @property
    def usage(self) -> Usage:
        total = Usage()
        for r in self.records.values():
            if r.status == "done":
                total = total + r.usage
        return total

    @property
    def savings(self) -> dict[str, float]:
        """What this run's calls saved against paying for them uncached at the standard
        price: by prompt caching and by the Message Batches API, in dollars and tokens."""
        done = [r for r in self.records.values() if r.status == "done"]
        return {
            "cache_usd": sum(r.saved_cache_usd for r in done),
            "batch_usd": sum(r.saved_batch_usd for r in done),
            "cache_read_tokens": sum(r.usage.cache_read_input_tokens for r in done),
            "cache_write_tokens": sum(r.usage.cache_creation_input_tokens for r in done),
            "batch_calls": sum(r.batch_calls for r in done),
        }

    def cost_by(self, what: str = "agent") -> dict[str, float]:
        """Dollars spent in this run per agent (or per model)."""
        out: dict[str, float] = {}
        for r in self.records.values():
            label = getattr(r, what) or "(steps)"
            if r.status == "done":
                out[label] = out.get(label, 0.0) + r.cost_usd
        return {label: round_usd(dollars) for label, dollars in out.items()}

    def raise_for_status(self) -> RunResult:
        if not self.ok:
            failed = [f"{n}: {e}" for n, e in self.errors.items() if self.status[n] == "failed"]
            raise RunFailed("; ".join(failed) or "the run did not finish")
        return self

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return f"RunResult({self.graph!r}, run={self.run_id}, {counts}, wall={self.wall:.2f}s)"
