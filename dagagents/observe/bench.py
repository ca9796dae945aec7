"""Parallel vs sequential on one graph, against the theoretical lower bound.

The same graph runs with the simulated provider (or replaying a recorded run's node durations
and outputs) at the chosen concurrency and then one node at a time. The lower bound is
`max(critical path, total work / concurrency)` over the durations the parallel run measured:
no schedule can beat it, so `wall / lower bound` says how much the scheduler left on the table.
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
from dataclasses import dataclass, field
from typing import Any

from dagagents.engine.executors.local import LocalExecutor
from dagagents.engine.invoke import AgentResult, CallContext
from dagagents.engine.scheduler import critical_path
from dagagents.errors import UserError
from dagagents.model.graph import Graph
from dagagents.model.nodes import AgentTask, Step
from dagagents.observe.runs import RunResult
from dagagents.observe.summary import RunData, realised_critical_path
from dagagents.providers.base import Provider, Usage
from dagagents.providers.simulated import SimulatedProvider
from dagagents.store import CorruptObject, Store, codec


@dataclass
class BenchReport:
    """Walls of every repeat and the bound computed from the median parallel run."""

    graph: str
    concurrency: int
    parallel: list[RunResult]
    sequential: list[RunResult]
    critical_path: list[str]  # longest chain by measured durations: the lower bound's part
    critical_time: float
    total_work: float
    mode: str
    # The chain that actually set the median parallel run's wall time (from its trace): what
    # the table and the timeline highlight.
    realised_path: list[str] = field(default_factory=list)
    realised_time: float = 0.0

    @property
    def parallel_wall(self) -> float:
        return statistics.median(r.wall for r in self.parallel)

    @property
    def sequential_wall(self) -> float:
        return statistics.median(r.wall for r in self.sequential)

    @property
    def lower_bound(self) -> float:
        return max(self.critical_time, self.total_work / self.concurrency)

    @property
    def speedup(self) -> float:
        return self.sequential_wall / self.parallel_wall if self.parallel_wall else 0.0

    @property
    def efficiency(self) -> float:
        """Busy slot time over available slot time: sum of node time / (wall x concurrency)."""
        denom = self.parallel_wall * self.concurrency
        return self.total_work / denom if denom else 0.0

    @property
    def vs_lower_bound(self) -> float:
        return self.parallel_wall / self.lower_bound if self.lower_bound else 0.0

    def median_run(self, runs: list[RunResult]) -> RunResult:
        return sorted(runs, key=lambda r: r.wall)[len(runs) // 2]

    def to_json(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "mode": self.mode,
            "concurrency": self.concurrency,
            "parallel_walls": [r.wall for r in self.parallel],
            "sequential_walls": [r.wall for r in self.sequential],
            "parallel_wall": self.parallel_wall,
            "sequential_wall": self.sequential_wall,
            "critical_path": self.critical_path,
            "critical_time": self.critical_time,
            "realised_critical_path": self.realised_path,
            "realised_critical_time": self.realised_time,
            "total_work": self.total_work,
            "lower_bound": self.lower_bound,
            "speedup": self.speedup,
            "efficiency": self.efficiency,
            "wall_over_lower_bound": self.vs_lower_bound,
        }


class ReplayExecutor(LocalExecutor):
    """Replays a recorded run: each node sleeps its recorded duration and returns its
    recorded output (from the store), so expansions rebuild the same subgraph offline."""

    name = "replay"

    def __init__(self, store: Store, manifest: dict[str, Any]) -> None:
        super().__init__()
        self.store = store
        self.manifest = manifest
        self.nodes: dict[str, dict[str, Any]] = manifest.get("nodes") or {}

    async def _replay(self, spec: AgentTask | Step) -> tuple[Any, dict[str, Any]]:
        record = self.nodes.get(spec.name)
        if record is None or not record.get("key"):
            raise UserError(
                f"node '{spec.name}' is not in recorded run '{self.manifest.get('run_id')}'; "
                "replay needs a finished run of the same graph."
            )
        try:
            stored = self.store.get(record["key"])
        except CorruptObject:
            stored = None
        if stored is None:
            raise UserError(
                f"the output of node '{spec.name}' from run '{self.manifest.get('run_id')}' "
                "is no longer in the store (gc?); replay needs it."
            )
        duration = record.get("duration") or float(stored.meta.get("duration") or 0.0)
        await asyncio.sleep(duration)
        return codec.decode(stored.value, codec.output_hint(spec)), stored.meta

    async def run_step(self, spec: Step, kwargs: dict[str, Any]) -> Any:
        value, _ = await self._replay(spec)
        return value

    async def run_agent(self, spec: AgentTask, prompt: str, ctx: CallContext) -> AgentResult:
        value, meta = await self._replay(spec)
        return AgentResult(
            output=value,
            usage=Usage.model_validate(meta.get("usage") or {}),
            model=str(meta.get("model") or spec.agent.model),
            calls=int(meta.get("calls") or 1),
            simulated=True,
        )


def bench(
    graph: Graph,
    *,
    concurrency: int = 8,
    repeat: int = 1,
    provider: Provider | None = None,
    replay: tuple[Store, str] | None = None,
) -> BenchReport:
    """Run `graph` `repeat` times in parallel and sequentially; compute the bound."""
    if repeat < 1:
        raise UserError(f"--repeat must be at least 1 (got {repeat}).")
    if concurrency < 1:
        raise UserError(f"--concurrency must be at least 1 (got {concurrency}).")
    mode = "simulated"
    manifest: dict[str, Any] | None = None
    if replay is not None:
        store, run_id = replay
        manifest = store.read_manifest(run_id)
        if manifest.get("graph") != graph.name:
            raise UserError(
                f"run '{manifest['run_id']}' is of graph '{manifest.get('graph')}', "
                f"not '{graph.name}'."
            )
        mode = f"replay of run {manifest['run_id']}"
    sim = provider or graph.simulator or SimulatedProvider()

    def once(slots: int) -> RunResult:
        executor = ReplayExecutor(replay[0], manifest) if replay and manifest else None
        return graph.run(concurrency=slots, provider=sim, store=None, executor=executor)

    if any(isinstance(s, AgentTask) and s.agent.output for s in graph.specs.values()):
        # Structured output uses the SDK's schema transform; its one-time import (about a
        # second) is the process's cost, not the graph's, and must not land in the first run.
        importlib.import_module("anthropic")
    parallel, sequential = [], []
    for _ in range(repeat):
        parallel.append(once(concurrency))
        sequential.append(once(1))
    for result in (*parallel, *sequential):
        if not result.ok:
            failed = {n: e for n, e in result.errors.items() if result.status[n] == "failed"}
            name, error = next(iter(failed.items()), ("?", "the run did not finish"))
            raise UserError(f"benchmark run of '{graph.name}' failed at node '{name}': {error}")
    middle = RunData.from_result(sorted(parallel, key=lambda r: r.wall)[len(parallel) // 2])
    durations = {n.name: n.duration for n in middle.nodes.values() if n.ran}
    path, length = critical_path(middle.dag(), durations)
    realised, realised_time = realised_critical_path(middle)
    return BenchReport(
        graph=graph.name,
        concurrency=concurrency,
        parallel=parallel,
        sequential=sequential,
        critical_path=path,
        critical_time=length,
        total_work=sum(durations.values()),
        mode=mode,
        realised_path=realised,
        realised_time=realised_time,
    )
