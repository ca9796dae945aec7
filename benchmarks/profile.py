"""Where dagagents spends a zero-work run: cProfile of `Graph.run` only (not graph building).

    python -m benchmarks.profile [wide10k|chain10k] [--mode plain|ckpt|resume] [--top 30]

`plain` runs without checkpoints, `ckpt` writes one per node into an empty temp store, `resume`
fills a store first and profiles the fully cached rerun. Prints the dagagents functions by
cumulative time, then the top functions overall by own time. cProfile roughly doubles the
wall time; read the shares, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile

from benchmarks import dags
from benchmarks.engines import dagagents_graph
from benchmarks.runner import warm_up
from benchmarks.targets import ZERO_WORK_CONCURRENCY


def profile(dag_name: str, mode: str, quick: bool = False) -> pstats.Stats:
    """Profile one dagagents run of a suite DAG; returns the stats."""
    warm_up("dagagents-ckpt")
    dag = dags.build(dag_name, quick=quick)
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory(prefix="dagagents-profile-") as tmp:
        store = tmp if mode != "plain" else None
        if mode == "resume":
            dagagents_graph(dag, []).run(concurrency=ZERO_WORK_CONCURRENCY, store=store, fresh=True)
        graph = dagagents_graph(dag, [])
        profiler.enable()
        result = graph.run(concurrency=ZERO_WORK_CONCURRENCY, store=store, fresh=mode == "ckpt")
        profiler.disable()
    expected = {"cached"} if mode == "resume" else {"done"}
    if set(result.status.values()) != expected:
        raise SystemExit(f"unexpected statuses {set(result.status.values())}")
    return pstats.Stats(profiler, stream=io.StringIO())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument(
        "dag", nargs="?", default="wide10k", help="wide10k, chain10k, wide100k, ..."
    )
    parser.add_argument("--mode", default="plain", choices=("plain", "ckpt", "resume"))
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if dags.zero_work_size(args.dag) is None:
        parser.error(f"not a zero-work DAG: {args.dag!r} (wideN, chainN, wide10k, chain100k, ...)")
    stats = profile(args.dag, args.mode, args.quick)
    for order, restriction in (("cumulative", "dagagents/"), ("tottime", "")):
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats(order).print_stats(restriction, args.top)
        print(f"=== by {order}{' (dagagents only)' if restriction else ''} ===")
        print(out.getvalue().split("\n\n", 2)[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
