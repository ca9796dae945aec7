"""Issue 2: the eager scheduler's own cost, and how close its schedules come to the limit.

    python -m benchmarks.scheduler_overhead [--quick]

Per-node overhead = wall / nodes on 10,000 zero-work async Steps (wide: all independent;
chain: one line), no checkpoints; target <= 50 us. Makespan / lower bound
(max(critical path, total work / concurrency)) on the seeded 100-node random DAG with simulated
latencies (Steps sleeping lognormal durations, median 50 ms); target <= 1.05. The ideal
schedule is printed too: at concurrency 4 even a zero-overhead scheduler sits above the bound.
Each run is one fresh process, checked for correctness before its time counts.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import dags, targets
from benchmarks.runner import Batches, Job, Measurement, run_plan
from benchmarks.targets import CONCURRENCIES, ZERO_WORK_CONCURRENCY, Target


def plan(quick: bool) -> Batches:
    """Zero-work DAGs for the per-node cost, random100 at each concurrency for the makespan."""
    jobs = [Job(d, ZERO_WORK_CONCURRENCY, quick) for d in dags.ZERO_WORK]
    jobs += [Job("random100", c, quick) for c in CONCURRENCIES]
    return [("dagagents", [job]) for job in jobs]


def evaluate(results: list[Measurement]) -> list[Target]:
    """Issue 2's targets (ideal shown alongside the lower bound)."""
    return [
        targets.per_node(results, "dagagents", 50),
        targets.makespan(results, "dagagents", "lower_bound", 1.05, ["random100"]),
        targets.makespan(results, "dagagents", "ideal", 1.05, ["random100"]),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scheduler_overhead")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code only")
    args = parser.parse_args(argv)
    results = run_plan(lambda _root: plan(args.quick), lambda line: print(line, flush=True))
    print()
    for t in evaluate(results):
        print(t.line())
    return 0 if all(m.ok for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
