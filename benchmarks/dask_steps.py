"""Issue 8: CPU-bound Steps on the local executor vs a Dask cluster of worker processes.

    python -m benchmarks.dask_steps [--nodes 1000] [--step-ms 20] [--workers 2] [--quick]

Every Step runs a pure-Python busy loop calibrated to `--step-ms`. The local executor runs sync
Steps in a thread pool, so the GIL makes them take turns; Dask runs them in `--workers`
single-threaded worker processes. The cluster is deployed as the README describes, on
127.0.0.1 and started before timing: `dask scheduler` in its own process and `dask worker
--nworkers N --nthreads 1` (a LocalCluster would put the scheduler in this process, where it
competes with the driver for the GIL). Both runs checkpoint every node into a fresh store.

Reported (JSON on stdout and in benchmarks/results/dask_steps.json):
- `speedup`: local wall / Dask wall.
- `pool_wall_s`: the same bodies in a plain `ProcessPoolExecutor` of `--workers` processes, no
  graph, no checkpoints: what this machine can really do in parallel at that moment (on a
  shared machine, less than `ideal_wall_s` = nodes * step / workers).
- `dask_added_ms_per_node`: (Dask wall - pool wall) / nodes: what dispatching through the
  scheduler, pickling, checkpointing on the worker and collecting results add per node.
- `noop_ms_per_node`: wall per node for the same number of empty Steps, local and Dask (the
  per-node cost of the machinery alone, with no work to hide it behind).
- `load_average`: the 1-minute load before and after, since other processes skew all of this.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from dagagents import Graph
from dagagents.engine.executors.local import LocalExecutor

RESULTS = Path(__file__).resolve().parent / "results" / "dask_steps.json"


def spin(iterations: int) -> int:
    """Pure-Python CPU work that holds the GIL throughout."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def calibrate(step_ms: float) -> int:
    """Loop iterations that take about `step_ms` in this interpreter (best of 5)."""
    probe = 200_000
    best = min(_timed(lambda: spin(probe)) for _ in range(5))
    return max(1, int(probe * (step_ms / 1000.0) / best))


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _worker(iterations: int) -> Callable[[], int]:
    def step() -> int:
        return spin(iterations)

    return step


def build(nodes: int, iterations: int, name: str) -> Graph:
    """`nodes` independent Steps: all the parallelism is there for the executor to use."""
    g = Graph(name)
    body = _worker(iterations)
    for i in range(nodes):
        g.add_step(f"s{i}", body, depends_on=[])
    return g


def pool_wall(iterations: int, nodes: int, workers: int) -> float:
    """The bodies alone in `workers` processes (warmed up first): the machine's yardstick."""
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(spin, [1] * workers))
        start = time.perf_counter()
        list(pool.map(spin, [iterations] * nodes, chunksize=1))
        return time.perf_counter() - start


def timed_run(graph: Graph, executor: Any, concurrency: int, store: str) -> float:
    start = time.perf_counter()
    result = graph.run(executor=executor, concurrency=concurrency, store=store, fresh=True)
    wall = time.perf_counter() - start
    bad = {n: s for n, s in result.status.items() if s != "done"}
    if bad:
        raise RuntimeError(f"{len(bad)} nodes did not finish: {sorted(bad.items())[:3]}")
    return wall


def measure(
    client: Any, *, nodes: int, step_ms: float, workers: int, concurrency: int, root: str
) -> dict[str, Any]:
    """Run all four variants against `client`'s cluster; return the report."""
    from dagagents.engine.executors.dask import DaskExecutor

    def dask_executor() -> DaskExecutor:
        # `dask worker` processes do not have this checkout on sys.path: send our code along.
        return DaskExecutor(client, ship_modules=("benchmarks",))

    load_before = os.getloadavg()[0]
    iterations = calibrate(step_ms)
    step_s = _timed(lambda: spin(iterations))
    pool = pool_wall(iterations, nodes, workers)
    # Warm-up: workers import dagagents and connections open before anything is timed.
    timed_run(build(4 * workers, 0, "warmup"), dask_executor(), concurrency, f"{root}/w")
    local = timed_run(build(nodes, iterations, "cpu"), LocalExecutor(), concurrency, f"{root}/l")
    dask = timed_run(build(nodes, iterations, "cpu"), dask_executor(), concurrency, f"{root}/d")
    local_noop = timed_run(build(nodes, 0, "noop"), LocalExecutor(), concurrency, f"{root}/ln")
    dask_noop = timed_run(build(nodes, 0, "noop"), dask_executor(), concurrency, f"{root}/dn")
    ideal = nodes * step_s / workers
    return {
        "benchmark": "dask_steps",
        "nodes": nodes,
        "step_ms": round(step_s * 1000, 2),
        "workers": workers,
        "concurrency": concurrency,
        "cluster": f"dask scheduler + dask worker --nworkers {workers} --nthreads 1, 127.0.0.1",
        "cpu_count": os.cpu_count(),
        "local_wall_s": round(local, 3),
        "dask_wall_s": round(dask, 3),
        "pool_wall_s": round(pool, 3),
        "ideal_wall_s": round(ideal, 3),
        "speedup": round(local / dask, 2),
        "pool_speedup": round(local / pool, 2),
        "dask_added_ms_per_node": round((dask - pool) / nodes * 1000, 3),
        "noop_ms_per_node": {
            "local": round(local_noop / nodes * 1000, 3),
            "dask": round(dask_noop / nodes * 1000, 3),
        },
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


@contextlib.contextmanager
def dask_cluster(workers: int) -> Iterator[str]:
    """`dask scheduler` and `dask worker` processes on 127.0.0.1; yields the address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = [os.path.join(os.path.dirname(sys.executable), "dask")]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    scheduler = subprocess.Popen([*dask, "scheduler", "--port", str(port), *common], **quiet)
    worker = subprocess.Popen(
        [*dask, "worker", address, "--nworkers", str(workers), "--nthreads", "1", *common],
        **quiet,
    )
    try:
        yield address
    finally:
        for process in (worker, scheduler):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dask_steps")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--step-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="40 nodes of 2 ms: checks the code")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.step_ms = 40, 2.0

    import distributed

    with (
        dask_cluster(args.workers) as address,
        distributed.Client(address, set_as_default=False) as client,
        tempfile.TemporaryDirectory(prefix="dagagents-bench-") as root,
    ):
        client.wait_for_workers(args.workers, timeout=60)
        report = measure(
            client,
            nodes=args.nodes,
            step_ms=args.step_ms,
            workers=args.workers,
            concurrency=args.concurrency,
            root=root,
        )
    text = json.dumps(report, indent=2)
    print(text)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
