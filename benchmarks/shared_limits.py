"""Issue 17: limits shared through Redis — what a call pays for it, and 4 drivers on one key.

    python -m benchmarks.shared_limits [--calls 2000] [--drivers 4] [--nodes 60] [--rpm 60]
                                       [--skip-drivers] [--itpm]

1. Added latency per call: the same admission + reconciliation (`async with limiter.slot(...)`
   then `slot.done(...)`) through the in-process `Limiter` and through `RedisLimiter` against a
   real `redis-server` on loopback, one call at a time, no limit binding. The difference of the
   medians is what sharing costs a call (target <= 1 ms p50).
2. Throughput against the limit: `--drivers` real `python -m dagagents run` processes, each with
   `--nodes` independent agent nodes, calling the fake Messages API (through the real SDK) that
   enforces `--rpm` requests per minute (token bucket, capacity = rpm); every driver runs with
   `--rpm N --limits redis://...`. The limit allows the whole lot in (total - capacity) / rate
   seconds after the first request; the report gives the server's first-to-last-request span
   and the drivers' combined wall time (launch to last exit) against it, and the 429 count.
   `--itpm` does the same with input tokens per minute (~500-token prompts).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dagagents.engine.limits import Limiter, RateLimits
from dagagents.engine.shared_limits import RedisLimiter, SharedLimits
from dagagents.providers.base import Request, Response, Usage
from dagagents.testing import FakeAnthropic
from dagagents.testing.redis_server import RedisServer

KEY = "sk-bench-not-a-real-key"
MODEL = "claude-sonnet-4-6"
GRAPH = """
import os

from dagagents import Agent, Graph

W = Agent("w", model="claude-sonnet-4-6", max_tokens=50)
graph = Graph("driver-" + os.environ["DRIVER"])
pad = " " + "x" * int(os.environ.get("PAD", "0"))
for i in range(int(os.environ["NODES"])):
    graph.task(f"n{i}", W, f"driver {os.environ['DRIVER']} task {i}" + pad)
"""


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def _per_call(limiter: Limiter, calls: int) -> list[float]:
    await limiter.start()
    request = Request(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=50)
    response = Response(
        content=[{"type": "text", "text": "ok"}], usage=Usage(input_tokens=8, output_tokens=2)
    )
    times = []
    try:
        for _ in range(calls):
            start = time.perf_counter()
            async with limiter.slot(request) as slot:
                slot.done(response)
            times.append(time.perf_counter() - start)
    finally:
        await limiter.aclose()
    return times


def latency(url: str, calls: int) -> dict[str, Any]:
    limits = RateLimits(rpm=1e9, itpm=1e12, otpm=1e12)
    local = asyncio.run(_per_call(Limiter(limits, concurrency=8), calls))
    config = SharedLimits(url, key="bench")
    shared = asyncio.run(_per_call(RedisLimiter(config, limits, key="bench", concurrency=8), calls))
    budget = SharedLimits(url, key="bench", budget_key="bench")
    with_budget = asyncio.run(
        _per_call(RedisLimiter(budget, limits, key="bench", concurrency=8, max_cost_usd=1e9), calls)
    )
    ms = 1000.0
    return {
        "calls": calls,
        "local_p50_ms": round(statistics.median(local) * ms, 4),
        "redis_p50_ms": round(statistics.median(shared) * ms, 4),
        "redis_p90_ms": round(_pct(shared, 0.9) * ms, 4),
        "added_p50_ms": round((statistics.median(shared) - statistics.median(local)) * ms, 4),
        "redis_with_budget_p50_ms": round(statistics.median(with_budget) * ms, 4),
    }


def drivers(url: str, n_drivers: int, nodes: int, per_minute: float, kind: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dagagents-shared-bench-") as tmp:
        return _drivers(Path(tmp), url, n_drivers, nodes, per_minute, kind)


def _drivers(
    work: Path, url: str, n_drivers: int, nodes: int, per_minute: float, kind: str
) -> dict[str, Any]:
    (work / "g.py").write_text(GRAPH)
    env_extra = {"PAD": "1950"} if kind == "itpm" else {}
    with FakeAnthropic() as api:
        if kind == "rpm":
            api.rate_limit(rpm=per_minute, capacity=per_minute)
        else:
            api.rate_limit(itpm=per_minute)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
        env.update(ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=api.url, NODES=str(nodes))
        env.update(env_extra)
        flag = "--rpm" if kind == "rpm" else "--itpm"
        load_before = os.getloadavg()[0]
        launched = time.monotonic()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "dagagents", "run", "g.py", "-q", "--no-store"]
                + [flag, f"{per_minute:g}", "--limits", url],
                cwd=work,
                env={**env, "DRIVER": str(d)},
                stderr=subprocess.PIPE,
                text=True,
            )
            for d in range(n_drivers)
        ]
        codes = [p.wait() for p in procs]
        ended = time.monotonic()
        wall = ended - launched
        requests = api.message_requests
        statuses = api.statuses()
        per_call = (
            1.0
            if kind == "rpm"
            else float(min(r.usage["input_tokens"] for r in requests if r.usage))
        )
    total = n_drivers * nodes
    allowed = max(0.0, total * per_call - per_minute) / (per_minute / 60.0)
    starts = sorted(r.started for r in requests)
    span = starts[-1] - starts[0]
    return {
        "limit": f"{per_minute:g} {kind} (capacity {per_minute:g})",
        "drivers": n_drivers,
        "nodes_each": nodes,
        "exit_codes": codes,
        "statuses": dict(statuses),
        "allowed_s": round(allowed, 2),
        "server_span_s": round(span, 2),
        "span_over_allowed": round(span / allowed, 3) if allowed else None,
        "wall_s": round(wall, 2),
        "wall_over_allowed": round(wall / allowed, 3) if allowed else None,
        # where the rest of the wall time goes: starting 4 Pythons (imports, SDK), and exiting
        "first_request_after_launch_s": round(starts[0] - launched, 2),
        "exit_after_last_request_s": round(ended - starts[-1], 2),
        # the machine's 1-minute load average before and after (start-up time depends on it)
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--drivers", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=60)
    parser.add_argument("--rpm", type=float, default=60)
    parser.add_argument("--itpm", action="store_true", help="also the input-tokens run")
    parser.add_argument("--skip-drivers", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    with RedisServer() as redis:
        out["per_call"] = latency(redis.url, args.calls)
        if not args.skip_drivers:
            out["rpm"] = drivers(redis.url, args.drivers, args.nodes, args.rpm, "rpm")
            if args.itpm:
                # ~500-token prompts, at the rpm run's calls per minute
                out["itpm"] = drivers(redis.url, args.drivers, args.nodes, args.rpm * 500, "itpm")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
