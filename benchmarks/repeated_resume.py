"""What a resume costs as resumes pile up in one store.

    python -m benchmarks.repeated_resume [--dag wide10k] [--resumes 10] [--quick]

One fresh checkpointed run of a zero-work DAG, then `--resumes` reruns in the same store, each
all cache hits, timed per node. Every run's start reads recent manifests for the duration
history that orders its priorities; an all-cached run used to leave a manifest without any
duration, so each resume read back through all the resumes before it (up to 20 whole-run
parses). Reported as a ratio in one run: the last resume's cost over the first's (target:
flat, <= 1.2x).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from benchmarks import dags
from benchmarks.engines import dagagents_graph
from benchmarks.runner import warm_up

TARGET = 1.2


def measure(dag_name: str, resumes: int, quick: bool = False) -> list[float]:
    """Per-node seconds of each resume, in order."""
    warm_up("dagagents")
    dag = dags.build(dag_name, quick=quick)
    nodes = dag.number_of_nodes()
    store = tempfile.mkdtemp(prefix="dagagents-resumes-")
    try:
        dagagents_graph(dag, []).run(concurrency=64, store=store, fresh=True)
        costs = []
        for _ in range(resumes):
            graph = dagagents_graph(dag, [])
            start = time.perf_counter()
            result = graph.run(concurrency=64, store=store)
            costs.append((time.perf_counter() - start) / nodes)
            if set(result.status.values()) != {"cached"}:
                raise RuntimeError(f"a resume recomputed nodes: {result.counts}")
        return costs
    finally:
        shutil.rmtree(store, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.repeated_resume")
    parser.add_argument("--dag", default="wide10k")
    parser.add_argument("--resumes", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code only")
    args = parser.parse_args(argv)
    costs = measure(args.dag, max(2, args.resumes), args.quick)
    ratio = costs[-1] / costs[0]
    print(" ".join(f"{c * 1e6:.0f}" for c in costs), "us a node per resume")
    print(
        f"{args.dag}: last resume / first {ratio:.2f}x (target <= {TARGET}) "
        f"load {os.getloadavg()[0]:.2f}"
    )
    return 0 if ratio <= TARGET or args.quick else 1


if __name__ == "__main__":
    raise SystemExit(main())
