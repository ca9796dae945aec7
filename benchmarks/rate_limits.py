"""Issue 15: a run under binding rate limits should sit at the limit's ceiling.

    python -m benchmarks.rate_limits [--nodes 300] [--bound 20] [--latency 0.3] [--drop 0]

300 independent agent nodes with varied prompt sizes (seeded lognormal, ~10 to ~4,000 input
tokens) and varied answer lengths (the fake server answers each prompt with the number of
tokens it asks for; `max_tokens` is 1.5x that plus 16) run through the real `anthropic` SDK
against the fake Messages API on loopback, which enforces requests, input-token and
output-token buckets per minute (`FakeAnthropic.rate_limit`). The client is given the same
limits (`RateLimits`). The limits are set from the workload so that each bucket alone would
take about `--bound` seconds after its initial burst (a full minute's capacity).

The bound is computed after the run from what the server counted: for each bucket,
max(0, total demand - capacity) / rate, the slowest one, plus one call's latency (the last
admitted call still has to answer). Printed: wall / bound (target <= 1.05) and the number of
429s the server sent (target 0). `--drop N` makes the server drop N connections before any
response (connection errors that never reached the model) to show they do not spend tokens.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from typing import Any

from dagagents import Agent, Graph, RateLimits, RetryPolicy
from dagagents.providers.anthropic import AnthropicProvider
from dagagents.testing import FakeAnthropic
from dagagents.testing.server import text

KEY = "sk-bench-not-a-real-key"
MODEL = "claude-haiku-4-5"
SEED = 15


def workload(nodes: int, seed: int = SEED) -> list[tuple[str, int, int]]:
    """(prompt, answer tokens, max_tokens) per node."""
    rng = random.Random(seed)
    out = []
    for i in range(nodes):
        chars = int(min(16_000, max(40, rng.lognormvariate(math.log(1200), 1.0))))
        answer = int(min(800, max(8, rng.lognormvariate(math.log(80), 0.8))))
        head = f"task {i}: answer in {answer} tokens. "
        body = ("lorem ipsum dolor sit amet " * (chars // 27 + 1))[: max(0, chars - len(head))]
        out.append((head + body, answer, int(answer * 1.5) + 16))
    return out


def _answer(request: dict[str, Any]) -> Any:
    """The fake server's reply: exactly the asked number of tokens (4 characters each)."""
    content = request["messages"][-1]["content"]
    prompt = content if isinstance(content, str) else content[0]["text"]
    n = int(prompt.split("answer in ", 1)[1].split(" ", 1)[0])
    return text("abc " * n)


def server_tokens(prompt: str, answer: int) -> tuple[int, int]:
    """Input and output tokens as the fake server counts them (~4 characters a token)."""
    messages = [{"role": "user", "content": prompt}]
    from dagagents.testing.server import _estimate_tokens

    return _estimate_tokens(messages) + 4, answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rate_limits")
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--bound", type=float, default=20.0, help="seconds each bucket binds")
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--drop", type=int, default=0, help="connections the server drops")
    parser.add_argument("--client-limits", choices=("same", "none"), default="same")
    args = parser.parse_args(argv)
    work = workload(args.nodes)
    demand_in = sum(server_tokens(p, a)[0] for p, a, _ in work)
    demand_out = sum(a for _, a, _ in work)
    # demand = capacity * (1 + bound/60)  <=>  (demand - capacity) / (capacity / 60) = bound
    factor = 1 + args.bound / 60.0
    rpm = math.floor(args.nodes / factor)
    itpm = math.floor(demand_in / factor)
    otpm = math.floor(demand_out / factor)

    server = FakeAnthropic(latency=args.latency).start()
    server.reply(_answer, model=MODEL)
    server.rate_limit(rpm, itpm=itpm, otpm=otpm)
    if args.drop:
        server.drop(times=args.drop)
    g = Graph("rate_limits")
    agents: dict[int, Agent] = {}
    for i, (prompt, _answer_tokens, max_tokens) in enumerate(work):
        agent = agents.get(max_tokens) or Agent(
            f"w{max_tokens}", model=MODEL, max_tokens=max_tokens
        )
        agents[max_tokens] = agent
        g.task(f"n{i}", agent, prompt)
    provider = AnthropicProvider(api_key=KEY, base_url=server.url)
    limits = RateLimits(rpm=rpm, itpm=itpm, otpm=otpm) if args.client_limits == "same" else None
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    m0 = time.monotonic()
    try:
        result = g.run(
            concurrency=args.concurrency,
            provider=provider,
            store=None,
            rate_limits=limits,
            retry=RetryPolicy(max_attempts=8),
        )
        wall = time.perf_counter() - t0
    finally:
        server.stop()
    if not result.ok:
        print(json.dumps(result.errors, indent=2)[:2000], file=sys.stderr)
        return 1
    used_in = sum(r.usage.input_tokens for r in result.records.values())
    used_out = sum(r.usage.output_tokens for r in result.records.values())
    answered = sum(r.calls for r in result.records.values())
    buckets = {
        "requests": (answered, rpm),
        "input_tokens": (used_in, itpm),
        "output_tokens": (used_out, otpm),
    }
    per_bucket = {k: max(0.0, d - cap) / (cap / 60.0) for k, (d, cap) in buckets.items()}
    slowest = max(per_bucket, key=lambda k: per_bucket[k])
    bound = per_bucket[slowest] + args.latency
    statuses = server.statuses()
    starts = sorted(r.started for r in server.message_requests)
    out = {
        "benchmark": "rate_limits",
        "nodes": args.nodes,
        "limits": {"rpm": rpm, "itpm": itpm, "otpm": otpm},
        "client_limits": args.client_limits,
        "demand": {k: d for k, (d, _) in buckets.items()},
        "bucket_bound_s": {k: round(v, 2) for k, v in per_bucket.items()},
        "binding": slowest,
        "bound_s": round(bound, 2),
        "wall_s": round(wall, 2),
        "wall_over_bound": round(wall / bound, 3),
        "target": 1.05,
        "first_request_s": round(starts[0] - m0, 3) if starts else None,
        "last_request_s": round(starts[-1] - m0, 3) if starts else None,
        "http_429": statuses.get(429, 0),
        "dropped_connections": args.drop,
        "server_statuses": dict(statuses),
        "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
