"""Issue 13: a map's per-item overhead against a static node's.

    python -m benchmarks.map_overhead [--items 1000] [--repeat 5] [--quick]
        [--streamed-sizes 250,1000,4000,16000] [--strings]

Two graphs of zero-work async steps, run without checkpoints: a map of N items over a list
input (splitter, N item nodes added at run time, collector) and N static nodes declared up
front feeding one `**kwargs` join. Per-node time = best-of-repeat wall / N. Target: the map's
per-item time within 2x of the static node's.

Then what streaming costs a map: the same map over a list an agent writes as structured
output (the simulator at time scale 0: the reply's deltas arrive back to back), with items
started as the reply streams (the default) against `stream=False`; the difference per item is
the streamed map's own cost (reading the reply, one growth per item), which an item that
calls a model (seconds) never notices. It is measured at each of `--streamed-sizes` in one run,
and the last line gives the per-item cost at the largest size over that at the smallest: 1.00
is flat (linear total time); a step that grows with the list (re-parsing the whole reply on
each delta, copying the graph per item) shows as a ratio growing with the sizes' spread.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from pydantic import BaseModel

from dagagents import Agent, Graph, SimulatedProvider


async def zero(item: int | str) -> int | str:
    return item


def map_graph() -> Graph:
    g = Graph("map_bench", output="out")
    g.input("xs")
    g.map("out", zero, over="xs", max_items=1_000_000)
    return g


class Numbers(BaseModel):
    items: list[int]


class Words(BaseModel):
    items: list[str]


def streamed_map_graph(n: int, stream: bool, strings: bool = False) -> Graph:
    sim = SimulatedProvider(ttft=0.0, tokens_per_second=1e9, jitter=0.0, time_scale=0.0)
    # spaces between items: the simulator streams word-sized deltas, one item per delta
    items = (f'"w{i}"' if strings else str(i) for i in range(n))
    sim.script(", ".join(items).join(['{"items": [', "]}"]), agent="lister")
    g = Graph("streamed_map_bench", output="out", simulator=sim)
    output = Words if strings else Numbers
    g.task("xs", Agent("lister", max_tokens=64_000), "List the items.", output=output)
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
    parser.add_argument(
        "--streamed-sizes",
        default="250,1000,4000,16000",
        help="list lengths for the streamed map's cost per item (comma-separated)",
    )
    parser.add_argument(
        "--strings", action="store_true", help="the streamed list holds strings, not numbers"
    )
    args = parser.parse_args(argv)
    n, repeat = (20, 1) if args.quick else (args.items, args.repeat)
    sizes = [20, 80] if args.quick else [int(size) for size in args.streamed_sizes.split(",")]
    xs = list(range(n))
    mapped = best_wall(map_graph, repeat, inputs={"xs": xs})
    static = best_wall(lambda: static_graph(n), repeat)
    per_item, per_node = mapped / n * 1e6, static / n * 1e6
    ratio = per_item / per_node
    print(f"map of {n} zero-work items: {mapped * 1000:.1f} ms wall, {per_item:.0f} us per item")
    print(f"{n} static zero-work nodes:  {static * 1000:.1f} ms wall, {per_node:.0f} us per node")
    verdict = "met" if ratio <= 2 else "NOT met"
    print(f"per-item / per-static-node = {ratio:.2f} (target <= 2.00: {verdict})")
    costs: dict[int, float] = {}
    kind = "strings" if args.strings else "numbers"
    for size in sizes:
        # the largest lists take seconds per run: fewer repeats there
        times = repeat if size <= 4000 else max(1, min(repeat, 3))
        streamed = best_wall(lambda size=size: streamed_map_graph(size, True, args.strings), times)
        barrier = best_wall(lambda size=size: streamed_map_graph(size, False, args.strings), times)
        costs[size] = extra = (streamed - barrier) / size * 1e6
        print(
            f"map of {size} items over an agent's streamed list of {kind}: streamed "
            f"{streamed * 1000:.1f} ms, stream=False {barrier * 1000:.1f} ms wall (best of "
            f"{times}): streaming costs {extra:.0f} us per item"
        )
    small, large = min(costs), max(costs)
    if large > small:
        print(
            f"streaming's cost per item at {large} items / at {small} items = "
            f"{costs[large] / costs[small]:.2f} (1.00: flat in the list's length)"
        )
    return 0


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
