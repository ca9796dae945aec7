"""Issue 3: what checkpoints cost per node, and how fast a fully cached graph resumes.

    python -m benchmarks.checkpoint_overhead [--quick]

On 10,000 zero-work async Steps (wide and chain): per-node wall with a checkpoint written for
every node into an empty store (target <= 300 us), the same without checkpoints (so the
checkpoint's own share is the difference), and the wall time of rerunning the graph in a new
process against the filled store, where every node must come back "cached" and none may run
(target <= 1 s). Each run is one fresh process. Stores live under $TMPDIR: run with
TMPDIR=/dev/shm to see dagagents' own cost without the disk's.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import dags, targets
from benchmarks.runner import Batches, Job, Measurement, run_plan, store_for
from benchmarks.targets import ZERO_WORK_CONCURRENCY, Target, find


def plan(quick: bool, root: str) -> Batches:
    """Without, then with checkpoints; then resume each store the checkpointed run filled."""
    c = ZERO_WORK_CONCURRENCY
    return [
        (engine, [Job(d, c, quick, store_for(root, engine, d, c))])
        for engine in ("dagagents", "dagagents-ckpt", "dagagents-resume")
        for d in dags.ZERO_WORK
    ]


def evaluate(results: list[Measurement]) -> list[Target]:
    """Issue 3's targets."""
    return [targets.per_node(results, "dagagents-ckpt", 300), targets.cached_resume(results)]


def checkpoint_share(results: list[Measurement]) -> list[str]:
    """Per-node cost of checkpointing alone: with minus without, per DAG."""
    lines = []
    for d in dags.ZERO_WORK:
        on = find(results, "dagagents-ckpt", d, ZERO_WORK_CONCURRENCY)
        off = find(results, "dagagents", d, ZERO_WORK_CONCURRENCY)
        if on and off and on.ok and off.ok and on.per_node_us and off.per_node_us:
            disk = on.info.get("fs_object_us")
            lines.append(
                f"{d}: {on.per_node_us:.1f} us/node with checkpoints, {off.per_node_us:.1f} "
                f"without: checkpointing costs {on.per_node_us - off.per_node_us:.1f} us/node"
                + (f" (the filesystem alone: {disk:.1f} us per object)" if disk else "")
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checkpoint_overhead")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code only")
    args = parser.parse_args(argv)
    results = run_plan(lambda root: plan(args.quick, root), lambda line: print(line, flush=True))
    print()
    for line in checkpoint_share(results):
        print(line)
    for t in evaluate(results):
        print(t.line())
    return 0 if all(m.ok for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
