"""Issue 4: the real Anthropic path at scale, against the fake Messages API on loopback.

    python -m benchmarks.anthropic_fake_server [--nodes 200] [--latency 0.5] [--concurrency 50]

200 independent agent nodes, each one real `AnthropicProvider` call (anthropic.AsyncAnthropic over
HTTP) to a fake server answering after 500 ms, run by `Graph.run` at concurrency 50. The ideal
is ceil(200 / 50) waves x 500 ms = 2 s; target wall / ideal <= 1.15. The server runs in its own
process, so this process's CPU time is the client's alone: the client-side CPU per call is
reported for the full dagagents path and, as a baseline, for the bare SDK (asyncio.gather under
a semaphore), and their difference is what dagagents adds per call. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from typing import Any

import anthropic

from dagagents import Agent, Graph
from dagagents.providers.anthropic import AnthropicProvider

KEY = "sk-bench-not-a-real-key"
MODEL = "claude-haiku-4-5"


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagagents.testing", "--port", "0", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at once (node bodies in flight)."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def run_dagagents(url: str, nodes: int, concurrency: int) -> dict[str, Any]:
    """The whole path: Graph.run -> scheduler -> invoke_agent -> limits/retry -> SDK -> HTTP."""
    worker = Agent("worker", model=MODEL, max_tokens=64)
    g = Graph("bench")
    for i in range(nodes):
        g.task(f"n{i}", worker, f"independent task {i}")
    provider = AnthropicProvider(api_key=KEY, base_url=url)
    c0, t0 = cpu(), time.perf_counter()
    result = g.run(concurrency=concurrency, provider=provider, store=None)
    wall, used = time.perf_counter() - t0, cpu() - c0
    assert result.ok, result.errors
    calls = sum(r.calls for r in result.records.values())
    assert calls == nodes, calls
    return {
        "wall_s": wall,
        "cpu_s": used,
        "peak_in_flight": peak_overlap(list(result.timings.values())),
    }


async def _bare(url: str, nodes: int, concurrency: int) -> None:
    client = anthropic.AsyncAnthropic(api_key=KEY, base_url=url, max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await client.messages.create(
                model=MODEL,
                max_tokens=64,
                messages=[{"role": "user", "content": f"independent task {i}"}],
            )

    await asyncio.gather(*(one(i) for i in range(nodes)))
    await client.close()


def run_bare_sdk(url: str, nodes: int, concurrency: int) -> dict[str, Any]:
    c0, t0 = cpu(), time.perf_counter()
    asyncio.run(_bare(url, nodes, concurrency))
    return {"wall_s": time.perf_counter() - t0, "cpu_s": cpu() - c0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.anthropic_fake_server")
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each; the best counts")
    args = parser.parse_args(argv)
    ideal = math.ceil(args.nodes / args.concurrency) * args.latency
    proc, url = start_server(args.latency)
    try:
        run_bare_sdk(url, args.concurrency, args.concurrency)  # warm imports and the server
        ours = [run_dagagents(url, args.nodes, args.concurrency) for _ in range(args.repeat)]
        bare = [run_bare_sdk(url, args.nodes, args.concurrency) for _ in range(args.repeat)]
    finally:
        proc.terminate()
        proc.wait(10)
    best = min(ours, key=lambda r: r["wall_s"])
    bare_best = min(bare, key=lambda r: r["wall_s"])
    per_call = min(r["cpu_s"] for r in ours) / args.nodes
    bare_per_call = min(r["cpu_s"] for r in bare) / args.nodes
    out = {
        "benchmark": "anthropic_fake_server",
        "nodes": args.nodes,
        "concurrency": args.concurrency,
        "latency_s": args.latency,
        "ideal_s": ideal,
        "wall_s": round(best["wall_s"], 3),
        "wall_over_ideal": round(best["wall_s"] / ideal, 3),
        "target_wall_over_ideal": 1.15,
        "meets_target": best["wall_s"] / ideal <= 1.15,
        "walls_s": [round(r["wall_s"], 3) for r in ours],
        "peak_in_flight": best["peak_in_flight"],
        "client_cpu_ms_per_call": round(per_call * 1000, 3),
        "bare_sdk_wall_s": round(bare_best["wall_s"], 3),
        "bare_sdk_cpu_ms_per_call": round(bare_per_call * 1000, 3),
        "dagagents_added_cpu_ms_per_call": round((per_call - bare_per_call) * 1000, 3),
        "python": sys.version.split()[0],
        "anthropic": anthropic.__version__,
    }
    print(json.dumps(out, indent=2))
    return 0 if out["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
