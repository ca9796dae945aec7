"""Issue 13: a map's per-item overhead against a static node's.

    python -m benchmarks.map_overhead [--items 1000] [--repeat 5] [--quick]

Two graphs of zero-work async steps, run without checkpoints: a map of N items over a list
input (splitter, N item nodes added at run time, collector) and N static nodes declared up
front feeding one `**kwargs` join. Per-node time = best-of-repeat wall / N. Target: the map's
per-item time within 2x of the static node's.

Then what streaming costs a map: the same map over a list an agent writes as structured
output (the simulator at time scale 0: the reply's deltas arrive back to back), with items
started as the reply streams (the default) against `stream=False`; the difference per item is
the streamed map's own cost (parsing the reply so far, one growth per item), which an item
that calls a model (seconds) never notices.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from pydantic import BaseModel

from dagagents import Agent, Graph, SimulatedProvider


async def zero(item: int) -> int:
    return item


def map_graph() -> Graph:
    g = Graph("map_bench", output="out")
    g.input("xs")
    g.map("out", zero, over="xs", max_items=1_000_000)
    return g


class Numbers(BaseModel):
    items: list[int]


def streamed_map_graph(n: int, stream: bool) -> Graph:
    sim = SimulatedProvider(ttft=0.0, tokens_per_second=1e9, jitter=0.0, time_scale=0.0)
    # spaces between items: the simulator streams word-sized deltas, one item per delta
    sim.script(", ".join(str(i) for i in range(n)).join(['{"items": [', "]}"]), agent="lister")
    g = Graph("streamed_map_bench", output="out", simulator=sim)
    g.task("xs", Agent("lister", max_tokens=64_000), "List the numbers.", output=Numbers)
    g.map("out", zero, over="xs.items", max_items=1_000_000, stream=stream)
    return g


def static_graph(n: int) -> Graph:
    g = Graph("static_bench", output="join")
    for i in range(n):

        async def node(i: int = i) -> int:
            return i

        g.add_step(f"n{i}", node, depends_on=[])

    async def join(**outputs: Any) -> int:
        return len(outputs)

    g.add_step("join", join, depends_on=[f"n{i}" for i in range(n)])
    return g


def best_wall(build: Any, repeat: int, **options: Any) -> float:
    best = float("inf")
    for _ in range(repeat):
        graph = build()
        start = time.perf_counter()
        result = graph.run(store=None, concurrency=64, keep_events=False, **options)
        wall = time.perf_counter() - start
        assert result.ok, result.errors
        best = min(best, wall)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.map_overhead")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code only")
    args = parser.parse_args(argv)
    n, repeat = (20, 1) if args.quick else (args.items, args.repeat)
    xs = list(range(n))
    mapped = best_wall(map_graph, repeat, inputs={"xs": xs})
    static = best_wall(lambda: static_graph(n), repeat)
    per_item, per_node = mapped / n * 1e6, static / n * 1e6
    ratio = per_item / per_node
    print(f"map of {n} zero-work items: {mapped * 1000:.1f} ms wall, {per_item:.0f} us per item")
    print(f"{n} static zero-work nodes:  {static * 1000:.1f} ms wall, {per_node:.0f} us per node")
    verdict = "met" if ratio <= 2 else "NOT met"
    print(f"per-item / per-static-node = {ratio:.2f} (target <= 2.00: {verdict})")
    streamed = best_wall(lambda: streamed_map_graph(n, True), repeat)
    barrier = best_wall(lambda: streamed_map_graph(n, False), repeat)
    extra = (streamed - barrier) / n * 1e6
    print(
        f"map of {n} items over an agent's streamed list: streamed {streamed * 1000:.1f} ms, "
        f"stream=False {barrier * 1000:.1f} ms wall: streaming costs {extra:.0f} us per item"
    )
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
