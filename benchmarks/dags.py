"""The fixed, seeded benchmark DAGs and the yardsticks every engine is measured against.

Each DAG is a plain `networkx.DiGraph` (edge = dependency -> dependent) whose nodes carry a
`duration` in seconds, so every engine gets exactly the same work. The yardsticks are the ideal
schedule (zero-overhead critical-path list scheduling), the lower bound
`max(critical path, total work / concurrency)`, and a checker that rejects any execution log in
which a node ran twice, never ran, started before a dependency ended or exceeded concurrency.
"""

from __future__ import annotations

import heapq
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import networkx as nx

SEED = 7
TIMED = ("fanout", "heterogeneous", "random100")
ZERO_WORK = ("wide10k", "chain10k")
ALL = TIMED + ZERO_WORK
# --quick: same shapes, durations x 0.05 and 200 instead of 10,000 zero-work nodes.
QUICK_TIME_SCALE = 0.05
QUICK_ZERO_WORK_NODES = 200

# One executed node: (name, start, end), seconds on any single monotonic clock.
LogEntry = tuple[str, float, float]


class ScheduleError(AssertionError):
    """An engine's execution log breaks the DAG's semantics; its time must not count."""


# ---------------------------------------------------------------------------- the suite
def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(median), sigma)


def _new(name: str) -> nx.DiGraph:
    dag = nx.DiGraph()
    dag.graph["name"] = name
    return dag


def fanout(seed: int = SEED, scale: float = 1.0, workers: int = 8) -> nx.DiGraph:
    """Orchestrator pattern: planner -> 8 workers -> synthesis, lognormal durations."""
    rng = random.Random(seed)
    dag = _new("fanout")
    dag.add_node("planner", duration=scale * _lognormal(rng, 0.3, 0.3))
    for i in range(workers):
        dag.add_node(f"worker{i}", duration=scale * _lognormal(rng, 0.5, 0.5))
        dag.add_edge("planner", f"worker{i}")
    dag.add_node("synthesis", duration=scale * _lognormal(rng, 0.3, 0.3))
    for i in range(workers):
        dag.add_edge(f"worker{i}", "synthesis")
    return dag


def heterogeneous(scale: float = 1.0, chain: int = 10) -> nx.DiGraph:
    """A 1.0 s node beside a chain of ten 0.1 s nodes, then a 0.1 s join.

    Eager scheduling finishes in 1.1 s; superstep/level barriers make each chain link wait for
    the slow node's level, so they take about 2.0 s.
    """
    dag = _new("heterogeneous")
    dag.add_node("slow", duration=scale * 1.0)
    for i in range(chain):
        dag.add_node(f"chain{i}", duration=scale * 0.1)
        if i:
            dag.add_edge(f"chain{i - 1}", f"chain{i}")
    dag.add_node("join", duration=scale * 0.1)
    dag.add_edge("slow", "join")
    dag.add_edge(f"chain{chain - 1}", "join")
    return dag


def random_layered(
    n: int = 100,
    seed: int = SEED,
    scale: float = 1.0,
    layers: int = 10,
    median: float = 0.05,
    sigma: float = 0.75,
) -> nx.DiGraph:
    """`n` nodes in random layers; each non-source node has 1-3 dependencies in earlier
    layers (mostly the previous one). Lognormal durations, median 50 ms."""
    rng = random.Random(seed)
    dag = _new(f"random{n}")
    cuts = sorted(rng.sample(range(1, n), layers - 1))
    bounds = [0, *cuts, n]
    levels = [list(range(bounds[i], bounds[i + 1])) for i in range(layers)]
    for level_no, level in enumerate(levels):
        for i in level:
            dag.add_node(f"n{i}", duration=scale * _lognormal(rng, median, sigma))
            if level_no == 0:
                continue
            earlier = [j for lv in levels[:level_no] for j in lv]
            previous = levels[level_no - 1]
            deps = {rng.choice(previous)}
            for _ in range(rng.randint(0, 2)):
                deps.add(rng.choice(previous if rng.random() < 0.7 else earlier))
            for j in sorted(deps):
                dag.add_edge(f"n{j}", f"n{i}")
    return dag


def wide(n: int = 10_000) -> nx.DiGraph:
    """`n` independent zero-work nodes: pure scheduler throughput."""
    dag = _new(f"wide{n}")
    dag.add_nodes_from((f"n{i}" for i in range(n)), duration=0.0)
    return dag


def chain(n: int = 10_000) -> nx.DiGraph:
    """`n` zero-work nodes in a line: per-hop latency of the scheduler."""
    dag = _new(f"chain{n}")
    dag.add_nodes_from((f"n{i}" for i in range(n)), duration=0.0)
    nx.add_path(dag, [f"n{i}" for i in range(n)])
    return dag


def warmup() -> nx.DiGraph:
    """A 4-node diamond run once before measuring, so one-time costs (lazy imports, thread
    pools) are not charged to the measured run."""
    dag = _new("warmup")
    dag.add_nodes_from("abcd", duration=0.001)
    dag.add_edges_from([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    return dag


_SIZED = re.compile(r"^(wide|chain)(\d+)(k?)$")


def zero_work_size(name: str) -> int | None:
    """Nodes in a sized zero-work DAG name (`wide1k`, `chain100k`, `wide500`), else None."""
    match = _SIZED.match(name)
    if match is None:
        return None
    return int(match.group(2)) * (1000 if match.group(3) else 1)


def build(name: str, quick: bool = False, seed: int = SEED) -> nx.DiGraph:
    """A suite DAG by its suite name (`fanout`, ..., `chain10k`, or any `wideN`/`chainNk`);
    --quick shrinks it."""
    scale = QUICK_TIME_SCALE if quick else 1.0
    size = QUICK_ZERO_WORK_NODES if quick else 10_000
    sized = zero_work_size(name)
    if sized is not None and name not in ZERO_WORK:
        n = min(sized, QUICK_ZERO_WORK_NODES) if quick else sized
        dag = wide(n) if name.startswith("wide") else chain(n)
        dag.graph["suite_name"] = name
        return dag
    builders: dict[str, Callable[[], nx.DiGraph]] = {
        "fanout": lambda: fanout(seed, scale),
        "heterogeneous": lambda: heterogeneous(scale),
        "random100": lambda: random_layered(100, seed, scale),
        "wide10k": lambda: wide(size),
        "chain10k": lambda: chain(size),
    }
    if name not in builders:
        raise KeyError(f"unknown benchmark DAG {name!r}; known: {', '.join(builders)}")
    dag = builders[name]()
    dag.graph["suite_name"] = name
    return dag


def durations(dag: nx.DiGraph) -> dict[str, float]:
    """Per-node simulated durations (seconds)."""
    return {n: float(d) for n, d in dag.nodes(data="duration", default=0.0)}


def topological_levels(dag: nx.DiGraph) -> list[list[str]]:
    """Nodes grouped by depth: what a level-by-level orchestrator runs together."""
    return [list(level) for level in nx.topological_generations(dag)]


# ---------------------------------------------------------------------------- yardsticks
def remaining_path(dag: nx.DiGraph, dur: Mapping[str, float]) -> dict[str, float]:
    """Each node's duration plus the longest chain of durations below it."""
    below: dict[str, float] = {}
    for node in reversed(list(nx.topological_sort(dag))):
        below[node] = dur[node] + max((below[s] for s in dag.successors(node)), default=0.0)
    return below


def critical_path(dag: nx.DiGraph, dur: Mapping[str, float]) -> float:
    """Length of the longest duration-weighted path: no schedule can beat it."""
    return max(remaining_path(dag, dur).values(), default=0.0)


def lower_bound(dag: nx.DiGraph, dur: Mapping[str, float], concurrency: int) -> float:
    """max(critical path, total work / concurrency); not always reachable."""
    return max(critical_path(dag, dur), sum(dur.values()) / concurrency)


def list_schedule(
    dag: nx.DiGraph,
    dur: Mapping[str, float],
    concurrency: int,
    priority: Mapping[str, float],
) -> dict[str, tuple[float, float]]:
    """Zero-overhead event simulation of list scheduling: whenever a slot is free, start the
    ready node with the highest priority (ties: topological order). Returns start/end times."""
    order = {n: i for i, n in enumerate(nx.topological_sort(dag))}
    waiting = {n: dag.in_degree(n) for n in dag}
    ready = [(-priority[n], order[n], n) for n in dag if waiting[n] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int, str]] = []
    times: dict[str, tuple[float, float]] = {}
    now = 0.0
    while ready or running:
        while ready and len(running) < concurrency:
            _, _, node = heapq.heappop(ready)
            end = now + dur[node]
            times[node] = (now, end)
            heapq.heappush(running, (end, order[node], node))
        now = running[0][0]
        while running and running[0][0] <= now:
            _, _, node = heapq.heappop(running)
            for succ in dag.successors(node):
                waiting[succ] -= 1
                if waiting[succ] == 0:
                    heapq.heappush(ready, (-priority[succ], order[succ], succ))
    return times


def ideal_makespan(dag: nx.DiGraph, dur: Mapping[str, float], concurrency: int) -> float:
    """Makespan of critical-path (longest remaining path) list scheduling, zero overhead."""
    times = list_schedule(dag, dur, concurrency, remaining_path(dag, dur))
    return max((end for _, end in times.values()), default=0.0)


def check_log(dag: nx.DiGraph, log: Sequence[LogEntry], concurrency: int | None = None) -> None:
    """Raise ScheduleError unless every node ran exactly once, after all its dependencies
    ended, with at most `concurrency` running at any instant."""
    seen: dict[str, tuple[float, float]] = {}
    for name, start, end in log:
        if name in seen:
            raise ScheduleError(f"node {name!r} ran more than once")
        if name not in dag:
            raise ScheduleError(f"node {name!r} is not in the DAG")
        seen[name] = (start, end)
    missing = [n for n in dag if n not in seen]
    if missing:
        raise ScheduleError(f"{len(missing)} node(s) never ran, e.g. {missing[0]!r}")
    for dep, node in dag.edges:
        if seen[node][0] < seen[dep][1]:
            raise ScheduleError(f"node {node!r} started before its dependency {dep!r} ended")
    if concurrency is not None:
        peak = max_overlap((start, end) for start, end in seen.values())
        if peak > concurrency:
            raise ScheduleError(f"{peak} nodes ran at once with concurrency {concurrency}")


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """Most intervals open at one instant (an end at t closes before a start at t)."""
    spans = list(intervals)
    events = sorted([(end, 0) for _, end in spans] + [(start, 1) for start, _ in spans])
    open_now = peak = 0
    for _, is_start in events:
        open_now += 1 if is_start else -1
        peak = max(peak, open_now)
    return peak
