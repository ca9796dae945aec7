"""Issue 15 part 1: streamed plans and streamed maps against the barrier, in wall time.

    python -m benchmarks.streamed_plans [--scale 1.0] [--json out.json]

Two orchestrator graphs, each run with streamed plans (the default) and with
`stream_plan=False` (nothing starts until the whole plan is written), and one map graph, run
with streamed items (the default) and with `g.map(..., stream=False)`, on two providers:

- `demo`: the `make demo` graph (graphs/market_report.py: Opus planner with the scripted
  7-subtask demo plan, Sonnet workers, Opus synthesis);
- `plan12`: a 12-subtask plan (8 independent research subtasks, 4 analyses of two each);
- `map12`: an Opus outliner writes 12 sections as structured output (`Outline.sections`),
  `g.map("sections", writer, ..., over="outline.sections")` writes each (Sonnet), an Opus
  editor joins them.

Providers: `simulated` (the offline provider; the demo keeps its own scripted latencies, the
12-subtask plan is written at 70 tokens/s) and `sdk`: the real `anthropic` SDK against
`dagagents.testing.FakeAnthropic` in its own process, answering after a 0.5 s time to first
token and writing at a realistic pace: the planner (Opus) at 70 tokens/s over SSE, workers and
the synthesis (Sonnet/Opus) at 80 tokens/s (~250-token answers). Concurrency 8, no store.

Reported per graph and provider: wall streamed / unstreamed (target <= 0.85 on `plan12`), and
whether the streamed wall is below the unstreamed run's critical path (the longest chain of
node durations, planner (outliner) included: what any schedule that waits for the whole plan
(list) needs).
`--scale` multiplies every latency and divides every rate (0.02 for a smoke run; at such rates
the client's own work per SSE event, not the model, paces the plan); `--server thread` runs the
fake server in this process (quicker to start, but it competes for the GIL: smoke runs only).
The figures are wall times, so run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from benchmarks.verdict import conclude
from dagagents import Agent, Orchestrator, Plan, SimulatedProvider, Subtask
from dagagents.engine.scheduler import critical_path
from dagagents.model.graph import Graph
from dagagents.observe.summary import RunData
from dagagents.providers.anthropic import AnthropicProvider
from dagagents.testing import FakeAnthropic, json_reply, text

KEY = "sk-bench-not-a-real-key"
ROOT = Path(__file__).resolve().parents[1]
PLANNER_TPS = 70.0
WORKER_TPS = 80.0
TTFT = 0.5
ANSWER = (
    "Findings: the segment grew quickly in 2024, led by coding assistants; pricing is per "
    "seat with usage tiers; adoption is broad but productivity evidence is mixed. "
) * 5  # ~250 tokens

TOPICS = [
    "coding assistants",
    "AI testing tools",
    "MLOps platforms",
    "LLM observability",
    "vector databases",
    "agent frameworks",
    "code review bots",
    "AI documentation tools",
]


def plan12() -> Plan:
    """8 research subtasks, then 4 analyses each comparing two of them."""
    research = [
        Subtask(
            f"research_{i}",
            "researcher",
            f"Research the 2024 market for {topic}: size, growth rate, the leading vendors and "
            "their pricing, with sources for every figure you give.",
        )
        for i, topic in enumerate(TOPICS)
    ]
    analyses = [
        Subtask(
            f"compare_{i}",
            "analyst",
            f"Compare {TOPICS[2 * i]} with {TOPICS[2 * i + 1]}: which grows faster, which has "
            "better margins, and what that means for a buyer choosing between them in 2024.",
            depends_on=[f"research_{2 * i}", f"research_{2 * i + 1}"],
        )
        for i in range(4)
    ]
    return Plan(
        subtasks=[*research, *analyses],
        synthesis_instructions="Write one market report: an overview, then each comparison.",
    )


class Section(BaseModel):
    title: str
    brief: str


class Outline(BaseModel):
    sections: list[Section]


def outline12() -> Outline:
    """12 sections, each briefed in about as many words as a plan12 subtask's task."""
    return Outline(
        sections=[
            Section(
                title=f"The 2024 market for {topic}" + (" (outlook)" if half else ""),
                brief=f"Cover {topic}{' from 2025 on' if half else ' in 2024'}: size, growth "
                "rate, the leading vendors and their pricing, what buyers should watch, with "
                "sources for every figure you give.",
            )
            for half in (0, 1)
            for topic in TOPICS[:6]
        ]
    )


GRAPHS = ("demo", "plan12", "map12")
SOURCE = {"demo": "plan", "plan12": "plan", "map12": "outline"}
ITEMS = {"demo": 7, "plan12": 12, "map12": 12}


def map_graph(stream: bool, provider: str, scale: float) -> Graph:
    """outline (structured, 12 sections) -> map `sections` (one writer each) -> report."""
    sim = SimulatedProvider(ttft=TTFT, tokens_per_second=PLANNER_TPS, jitter=0.0, time_scale=scale)
    sim.script(outline12(), agent="outliner")
    worker_s = TTFT + (len(ANSWER) // 4) / WORKER_TPS
    sim.script(ANSWER, agent="writer", latency=worker_s)
    sim.script(ANSWER, agent="editor", latency=worker_s)
    g = Graph(f"map12-{provider}", simulator=sim)
    g.task(
        "outline",
        Agent("outliner", model="claude-opus-4-8"),
        "Outline a report on the 2024 AI developer tools market in 12 sections.",
        output=Outline,
    )
    g.map(
        "sections",
        Agent("writer", model="claude-sonnet-4-6"),
        "Write the section '{item.title}': {item.brief}",
        over="outline.sections",
        stream=stream,
    )
    g.task("report", Agent("editor", model="claude-opus-4-8"), "Join these: {sections}")
    return g


def team() -> dict[str, Agent]:
    return {
        "researcher": Agent("researcher", model="claude-sonnet-4-6", system="You research."),
        "analyst": Agent("analyst", model="claude-sonnet-4-6", system="You analyse."),
    }


def demo_parts() -> tuple[Any, Any, Any, Any, Plan, str]:
    sys.path.insert(0, str(ROOT / "graphs"))
    import workers as demo  # type: ignore[import-not-found]

    return (
        demo.workers,
        demo.planner,
        demo.synthesizer,
        demo._simulator,
        demo.DEMO_PLAN,
        demo.DEMO_TASK,
    )


def build(name: str, stream: bool, provider: str, scale: float) -> Graph:
    """The graph, with the offline provider it runs on when `provider` is simulated."""
    if name == "map12":
        return map_graph(stream, provider, scale)
    if name == "demo":
        workers, planner, synthesizer, make_sim, _plan, task = demo_parts()
        sim = make_sim()
        sim.time_scale = scale
        o = Orchestrator(workers, planner, synthesizer, simulator=sim, stream_plan=stream)
        return o.graph(task, name=f"demo-{provider}")
    o = Orchestrator(team(), stream_plan=stream)
    # The planner writes at its pace (the provider's); workers answer at theirs (scripted).
    sim = SimulatedProvider(ttft=TTFT, tokens_per_second=PLANNER_TPS, jitter=0.0, time_scale=scale)
    sim.script(plan12(), agent="planner")
    worker_s = TTFT + (len(ANSWER) // 4) / WORKER_TPS
    sim.script(ANSWER, agent="researcher", latency=worker_s)
    sim.script(ANSWER, agent="analyst", latency=worker_s)
    sim.script(ANSWER, agent="synthesizer", latency=worker_s)
    return o.graph(
        "Report on the 2024 AI developer tools market.", name=f"plan12-{provider}", simulator=sim
    )


def fake_server(name: str, scale: float) -> FakeAnthropic:
    """The fake server for one run: the plan for structured-output requests, a ~250-token
    answer otherwise."""
    plan: BaseModel = {"demo": demo_parts()[4], "plan12": plan12(), "map12": outline12()}[name]

    def pace(body: dict[str, Any]) -> float:
        rate = PLANNER_TPS if body.get("output_config") else WORKER_TPS
        return rate / scale

    api = FakeAnthropic(latency=TTFT * scale, tokens_per_second=pace)
    api.reply(json_reply(plan), when=lambda r: r.get("output_config") is not None)
    api.reply(text(ANSWER))
    return api


def serve(name: str, scale: float) -> None:
    """The fake server in its own process (it does not compete with the client for the GIL)."""
    api = fake_server(name, scale).start()
    print(api.url, flush=True)
    threading.Event().wait()


def measure(result: Any, wall: float, source: str = "plan") -> dict[str, Any]:
    """Timings of one run; `source` is the node whose output lists the work (the planner, or
    the map's outliner), the subtasks are the plan's (or the map's items)."""
    run = RunData.from_result(result)
    durations = {n: r.duration or 0.0 for n, r in run.nodes.items()}
    _, path = critical_path(run.dag(), durations)
    t0 = min(r.start for r in run.nodes.values() if r.start is not None)
    plan = run.nodes[source]
    if source == "plan":
        subtasks = [r for n, r in run.nodes.items() if n not in ("plan", "synthesis") and r.start]
    else:
        subtasks = [r for n, r in run.nodes.items() if re.fullmatch(r"\w+\[\d+\]", n) and r.start]
    first = min((r.start for r in subtasks if r.start is not None), default=None)
    return {
        "wall_s": round(wall, 3),
        "plan_done_s": round((plan.end or 0.0) - t0, 3),
        "first_subtask_start_s": round(first - t0, 3) if first is not None else None,
        "started_before_plan_done": sum(
            1 for r in subtasks if r.start is not None and r.start < (plan.end or 0.0)
        ),
        "subtasks": len(subtasks),
        "critical_path_s": round(path, 3),
    }


def run_once(
    name: str, provider: str, stream: bool, scale: float, in_thread: bool = False
) -> dict[str, Any]:
    graph = build(name, stream, provider, scale)
    server = None
    api = None
    options: dict[str, Any] = {"concurrency": 8, "store": None}
    try:
        if provider == "sdk" and in_thread:
            api = fake_server(name, scale).start()
            options["provider"] = AnthropicProvider(api_key=KEY, base_url=api.url)
            options["retry"] = 1
        elif provider == "sdk":
            cmd = [sys.executable, "-m", "benchmarks.streamed_plans", "--serve", name]
            server = subprocess.Popen(
                [*cmd, "--scale", str(scale)], stdout=subprocess.PIPE, text=True
            )
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            options["provider"] = AnthropicProvider(api_key=KEY, base_url=url)
            options["retry"] = 1
        start = time.perf_counter()
        result = graph.run(**options)
        wall = time.perf_counter() - start
        if not result.ok:
            raise SystemExit(f"{name}/{provider}/stream={stream} failed: {result.errors}")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        if api is not None:
            api.stop()
    return {
        "graph": name,
        "provider": provider,
        "streamed": stream,
        **measure(result, wall, SOURCE[name]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--server", choices=("process", "thread"), default="process")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.scale)
        return 0
    rows = [
        run_once(name, provider, stream, args.scale, in_thread=args.server == "thread")
        for name in GRAPHS
        for provider in ("simulated", "sdk")
        for stream in (False, True)
    ]
    print(
        f"{'graph':7} {'provider':9} {'plan':10} {'wall':>8} {'plan done':>9} "
        f"{'1st start':>9} {'early':>5} {'crit path':>9}"
    )
    for r in rows:
        first = r["first_subtask_start_s"]
        print(
            f"{r['graph']:7} {r['provider']:9} {'streamed' if r['streamed'] else 'barrier':10} "
            f"{r['wall_s']:7.2f}s {r['plan_done_s']:8.2f}s "
            f"{(f'{first:8.2f}s' if first is not None else '-'):>9} "
            f"{r['started_before_plan_done']:2}/{r['subtasks']:<2} {r['critical_path_s']:8.2f}s"
        )
    by = {(r["graph"], r["provider"], r["streamed"]): r for r in rows}
    checks: dict[str, float | bool] = {}
    for name in GRAPHS:
        for provider in ("simulated", "sdk"):
            on, off = by[(name, provider, True)], by[(name, provider, False)]
            target = " (<= 0.85)" if name == "plan12" else ""
            checks[f"{name} {provider} wall streamed / unstreamed{target}"] = round(
                on["wall_s"] / off["wall_s"], 3
            )
            checks[f"{name} {provider} streamed wall < unstreamed critical path"] = (
                on["wall_s"] < off["critical_path_s"]
            )
    ok = all(
        (v <= 0.85 if "(<= 0.85)" in k else True) if not isinstance(v, bool) else v
        for k, v in checks.items()
        if "plan12" in k
    )
    return conclude(rows, checks, ok, args.json, scope="plan12")


if __name__ == "__main__":
    raise SystemExit(main())
