"""Run one benchmark DAG on one engine and return its wall time and execution log.

Every engine gets the same DAG, the same per-node durations (async nodes `await
asyncio.sleep(d)`, threaded ones `time.sleep(d)`; zero-work nodes return at once) and the same
concurrency. Each node body appends `(name, start, end)` to a shared log, which
`dags.check_log` validates before the time counts. Building the engine's own graph object
(dagagents `Graph`, LangGraph `compile()`, Dask `delayed` objects) is timed separately as
`build`; `wall` is the call that executes the graph, from the caller's side.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx

from benchmarks.dags import LogEntry, durations, topological_levels

if TYPE_CHECKING:
    from dagagents import Graph

clock = time.perf_counter


@dataclass
class EngineRun:
    """What one engine run produced; `info` holds engine-specific facts (statuses, ...)."""

    wall: float
    build: float
    log: list[LogEntry]
    info: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0  # clock() when the timed call began, to split wall from the log
    cpu: float = 0.0  # process CPU seconds (all threads) during the timed call


class Stopwatch:
    """Wall and process CPU time of the timed call. CPU time is reported beside wall because
    a shared machine's contention inflates wall but not CPU much."""

    started = wall = cpu = 0.0

    def __enter__(self) -> Stopwatch:
        self.started, self._cpu0 = clock(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = clock() - self.started
        self.cpu = time.process_time() - self._cpu0

    def result(
        self, build: float, log: list[LogEntry], info: dict[str, Any] | None = None
    ) -> EngineRun:
        return EngineRun(self.wall, build, log, info or {}, started=self.started, cpu=self.cpu)


# ------------------------------------------------------------------------- node bodies
def async_node(name: str, seconds: float, log: list[LogEntry]) -> Callable[..., Awaitable[None]]:
    """An async node body that takes any arguments, sleeps `seconds` and logs itself."""
    append = log.append
    if seconds > 0:

        async def node(*_args: Any, **_deps: Any) -> None:
            start = clock()
            await asyncio.sleep(seconds)
            append((name, start, clock()))

    else:

        async def node(*_args: Any, **_deps: Any) -> None:
            start = clock()
            append((name, start, clock()))

    return node


def thread_node(name: str, seconds: float, log: list[LogEntry]) -> Callable[..., None]:
    """A blocking node body for thread-pool engines (Dask)."""
    append = log.append
    if seconds > 0:

        def node(*_args: Any) -> None:
            start = clock()
            time.sleep(seconds)
            append((name, start, clock()))

    else:

        def node(*_args: Any) -> None:
            start = clock()
            append((name, start, clock()))

    return node


# ---------------------------------------------------------------------------- engines
def dagagents_graph(dag: nx.DiGraph, log: list[LogEntry], estimates: bool = False) -> Graph:
    """The DAG as a dagagents Graph of async Steps (`fn(**deps)` gets dependency outputs).
    With `estimates`, each Step declares its duration (`estimate=`), as a user who knows
    which steps are slow would."""
    from dagagents import Graph

    dur = durations(dag)
    graph = Graph(dag.graph["name"])
    for name in nx.topological_sort(dag):
        graph.add_step(
            name,
            async_node(name, dur[name], log),
            depends_on=list(dag.pred[name]),
            estimate=dur[name] if estimates else None,
        )
    return graph


def run_dagagents(
    dag: nx.DiGraph,
    concurrency: int,
    store: str | None = None,
    fresh: bool = False,
    warmup: bool = False,
    expect: str = "done",
    estimates: bool = False,
) -> EngineRun:
    """dagagents with async Steps. `store=None`: no checkpoints. `warmup`: run once first
    (untimed) so the store holds the previous run's durations, then time a `fresh` rerun.
    `expect`: the status every node must end with ("cached" for a resume)."""
    log: list[LogEntry] = []
    t0 = clock()
    graph = dagagents_graph(dag, log, estimates)
    build = clock() - t0
    if warmup:
        graph.run(concurrency=concurrency, store=store, fresh=True)
        log.clear()
    with Stopwatch() as sw:
        result = graph.run(concurrency=concurrency, store=store, fresh=fresh)
    wrong = {n: s for n, s in result.status.items() if s != expect}
    if wrong:
        name, status = next(iter(wrong.items()))
        raise RuntimeError(
            f"dagagents: {len(wrong)} node(s) not {expect}, e.g. {name}={status} "
            f"{result.errors.get(name, '')}"
        )
    return sw.result(build, log, {"internal_wall": result.wall, "run_id": result.run_id})


def _need_store(store: str | None, engine: str) -> str:
    """Checkpointing engines write where the caller says (and the caller cleans up)."""
    if store is None:
        raise ValueError(f"{engine} needs a store directory")
    return store


def run_dagagents_ckpt(dag: nx.DiGraph, concurrency: int, store: str | None = None) -> EngineRun:
    """dagagents writing a checkpoint per node into an empty store."""
    return run_dagagents(dag, concurrency, store=_need_store(store, "dagagents-ckpt"), fresh=True)


def run_dagagents_history(dag: nx.DiGraph, concurrency: int, store: str | None = None) -> EngineRun:
    """dagagents with checkpoints after one earlier run: durations are known from the store's
    last manifest, so priorities are true critical paths; `fresh` recomputes every node."""
    path = _need_store(store, "dagagents-history")
    return run_dagagents(dag, concurrency, store=path, fresh=True, warmup=True)


def run_dagagents_estimate(
    dag: nx.DiGraph, concurrency: int, store: str | None = None
) -> EngineRun:
    """dagagents, first run, no checkpoints, each Step declaring its duration (`estimate=`)."""
    return run_dagagents(dag, concurrency, estimates=True)


def run_dagagents_resume(dag: nx.DiGraph, concurrency: int, store: str | None = None) -> EngineRun:
    """dagagents rerunning a graph whose every node is already in `store`: nothing may run."""
    path = _need_store(store, "dagagents-resume (the store of an earlier dagagents-ckpt run)")
    return run_dagagents(dag, concurrency, store=path, expect="cached")


def run_gather(dag: nx.DiGraph, concurrency: int, store: str | None = None) -> EngineRun:
    """The hand-written baseline: `asyncio.gather` one topological level at a time, each
    node under a semaphore of size `concurrency`."""
    log: list[LogEntry] = []
    dur = durations(dag)
    t0 = clock()
    levels = topological_levels(dag)
    bodies = {name: async_node(name, dur[name], log) for name in dag}
    build = clock() - t0

    async def main() -> None:
        slots = asyncio.Semaphore(concurrency)

        async def guarded(name: str) -> None:
            async with slots:
                await bodies[name]()

        for level in levels:
            await asyncio.gather(*(guarded(name) for name in level))

    with Stopwatch() as sw:
        asyncio.run(main())
    return sw.result(build, log)


def run_bare(dag: nx.DiGraph, concurrency: int, store: str | None = None) -> EngineRun:
    """The yardstick for per-node overhead: a bare eager asyncio loop (~30 lines, no checks,
    no trace, no checkpoints). Each node is one task started when its last dependency ends and
    a slot is free; its output goes to its dependents as keyword arguments, as dagagents does."""
    log: list[LogEntry] = []
    dur = durations(dag)
    t0 = clock()
    bodies = {name: async_node(name, dur[name], log) for name in dag}
    preds = {name: list(dag.pred[name]) for name in dag}
    succs = {name: list(dag.succ[name]) for name in dag}
    build = clock() - t0

    async def main() -> None:
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        waiting = {name: len(p) for name, p in preds.items()}
        outputs: dict[str, Any] = {}
        ready = deque(name for name, n in waiting.items() if n == 0)
        running = 0
        remaining = len(preds)

        def launch() -> None:
            nonlocal running
            while ready and running < concurrency:
                name = ready.popleft()
                running += 1
                task = loop.create_task(bodies[name](**{p: outputs[p] for p in preds[name]}))
                task.add_done_callback(lambda t, name=name: done(name, t))

        def done(name: str, task: asyncio.Task[Any]) -> None:
            nonlocal running, remaining
            running -= 1
            remaining -= 1
            outputs[name] = task.result()
            for s in succs[name]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    ready.append(s)
            launch()
            if remaining == 0:
                finished.set_result(None)

        launch()
        if remaining:
            await finished

    with Stopwatch() as sw:
        asyncio.run(main())
    return sw.result(build, log)


def run_langgraph(dag: nx.DiGraph, concurrency: int, store: str | None = None) -> EngineRun:
    """LangGraph: a StateGraph whose joins are `add_edge([preds], node)`, invoked with
    `max_concurrency` (and a recursion limit above the DAG's depth)."""
    from typing import TypedDict

    from langchain_core.runnables import RunnableConfig
    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        unused: int

    log: list[LogEntry] = []
    dur = durations(dag)
    t0 = clock()
    builder = StateGraph(State)
    for name in dag:
        builder.add_node(name, async_node(name, dur[name], log))
    for name in dag:
        preds = list(dag.pred[name])
        if not preds:
            builder.add_edge(START, name)
        elif len(preds) == 1:
            builder.add_edge(preds[0], name)
        else:
            builder.add_edge(preds, name)
        if not dag.succ[name]:
            builder.add_edge(name, END)
    app = builder.compile()
    build = clock() - t0
    depth = len(topological_levels(dag))
    config: RunnableConfig = {"max_concurrency": concurrency, "recursion_limit": depth + 10}
    with Stopwatch() as sw:
        asyncio.run(app.ainvoke(State(), config=config))
    return sw.result(build, log)


def run_dask(dag: nx.DiGraph, concurrency: int, store: str | None = None) -> EngineRun:
    """Dask: one `dask.delayed` call per node, computed on the threaded scheduler with
    `num_workers=concurrency`. A Delayed is dropped once all its dependents are built (each
    one carries its ancestors' graph, so keeping all of them costs O(n^2) memory on chains)."""
    import dask
    from dask import delayed

    log: list[LogEntry] = []
    dur = durations(dag)
    t0 = clock()
    pending_succ = {name: len(dag.succ[name]) for name in dag}
    live: dict[str, Any] = {}
    sinks: list[Any] = []
    for name in nx.topological_sort(dag):
        deps = [live[p] for p in dag.pred[name]]
        task = delayed(thread_node(name, dur[name], log), pure=False)(*deps, dask_key_name=name)
        for p in dag.pred[name]:
            pending_succ[p] -= 1
            if pending_succ[p] == 0:
                del live[p]
        if pending_succ[name]:
            live[name] = task
        else:
            sinks.append(task)
    build = clock() - t0
    with Stopwatch() as sw:
        dask.compute(*sinks, scheduler="threads", num_workers=concurrency)
    return sw.result(build, log)


Engine = Callable[..., EngineRun]
ENGINES: dict[str, Engine] = {
    "dagagents": run_dagagents,
    "dagagents-ckpt": run_dagagents_ckpt,
    "dagagents-history": run_dagagents_history,
    "dagagents-estimate": run_dagagents_estimate,
    "dagagents-resume": run_dagagents_resume,
    "gather": run_gather,
    "bare": run_bare,
    "langgraph": run_langgraph,
    "dask": run_dask,
}
# The engine that warms a process up for each engine (a resume needs a filled store first).
WARMUP_ENGINE = {
    **{name: name for name in ENGINES},
    "dagagents-history": "dagagents-ckpt",
    "dagagents-resume": "dagagents-ckpt",
}
# What each engine imports, loaded before the baseline RSS is read.
IMPORTS: dict[str, tuple[str, ...]] = {
    "dagagents": ("dagagents",),
    "dagagents-ckpt": ("dagagents",),
    "dagagents-history": ("dagagents",),
    "dagagents-estimate": ("dagagents",),
    "dagagents-resume": ("dagagents",),
    "gather": (),
    "bare": (),
    "langgraph": ("langgraph.graph",),
    "dask": ("dask", "dask.threaded"),
}
