"""RunResult: what a run produced, per node, plus where its time and money went."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dagagents.errors import DagAgentsError
from dagagents.providers.base import Usage

STATUSES = ("done", "cached", "failed", "skipped", "cancelled")


def round_usd(dollars: float) -> float:
    """Money to a millionth of a dollar: sums of float prices show 0.009942, not
    0.009942000000000001, and no price is finer than that."""
    return round(dollars, 6) + 0.0  # + 0.0 turns -0.0 into 0.0


@dataclass
class NodeRecord:
    """One node's outcome. Times are seconds since the run started."""

    name: str
    status: str = "pending"
    kind: str = "step"
    agent: str | None = None
    model: str | None = None
    key: str | None = None
    digest: str | None = None
    start: float | None = None
    end: float | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    calls: int = 0
    error: str | None = None
    because: str | None = None
    simulated: bool = False
    depends_on: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        return self.end - self.start

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
            "usage": self.usage.model_dump(),
            "cost_usd": round_usd(self.cost_usd),
            "calls": self.calls,
            "error": self.error,
            "because": self.because,
            "simulated": self.simulated,
            "depends_on": list(self.depends_on),
        }


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
    events: list[dict[str, Any]] = field(default_factory=list)
    edges: list[tuple[str, str]] = field(default_factory=list)

    @property
    def status(self) -> dict[str, str]:
        return {name: r.status for name, r in self.records.items()}

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
        return not self.interrupted and all(
            r.status in ("done", "cached") for r in self.records.values()
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
