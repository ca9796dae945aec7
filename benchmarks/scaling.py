"""Issue 15: per-node overhead against a bare eager asyncio loop, 1k to 100k nodes.

    python -m benchmarks.scaling [--sizes 1k,10k,100k] [--no-ckpt] [--quick] [--against DIR]

For each size and shape (wide: all independent; chain: one line) of zero-work async Steps at
concurrency 64, three fresh processes: the bare eager loop (`benchmarks.engines.run_bare`, the
yardstick), dagagents without checkpoints, and dagagents writing a checkpoint per node into an
empty store, with the disk probe (the cost of creating one object file on the same disk, in the
same process, right after) beside it. Reported as ratios measured in the same run, because the
machine is shared: dagagents / bare (target <= 2, flat from 1k to 100k), checkpointed per-node
cost / disk probe (target <= 1.5), and peak RSS (target <= 1 GB at 100k). `uptime`'s load is
printed beside each row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

from benchmarks import dags
from benchmarks.runner import Job, Measurement, measure_in_subprocess, store_for
from benchmarks.targets import ZERO_WORK_CONCURRENCY

SIZES = ("1k", "10k", "100k")
SHAPES = ("wide", "chain")
ENGINES = ("bare", "dagagents", "dagagents-ckpt")


@dataclass
class Row:
    dag: str
    nodes: int
    bare_us: float | None
    plain_us: float | None
    ckpt_us: float | None
    disk_us: float | None
    rss_plain_mb: float | None
    rss_ckpt_mb: float | None
    load: float
    bare_cpu_us: float | None = None
    plain_cpu_us: float | None = None

    @property
    def cpu_vs_bare(self) -> float | None:
        """Process CPU per node, dagagents / bare: steadier than wall on a shared machine."""
        if self.plain_cpu_us and self.bare_cpu_us:
            return self.plain_cpu_us / self.bare_cpu_us
        return None

    @property
    def vs_bare(self) -> float | None:
        return self.plain_us / self.bare_us if self.plain_us and self.bare_us else None

    @property
    def ckpt_vs_disk(self) -> float | None:
        return self.ckpt_us / self.disk_us if self.ckpt_us and self.disk_us else None

    def line(self) -> str:
        def f(x: float | None, fmt: str = "7.1f") -> str:
            return "   n/a " if x is None else format(x, fmt)

        return (
            f"{self.dag:<10} {self.nodes:>7}  bare {f(self.bare_us)} us  dagagents "
            f"{f(self.plain_us)} us ({f(self.vs_bare, '4.2f')}x bare; cpu {f(self.cpu_vs_bare, '4.2f')}x)  ckpt {f(self.ckpt_us)} us"
            f" (disk probe {f(self.disk_us)} us: {f(self.ckpt_vs_disk, '4.2f')}x)  peak "
            f"{f(self.rss_plain_mb, '5.0f')}/{f(self.rss_ckpt_mb, '5.0f')} MB  load {self.load:.2f}"
        )


def measure_row(
    dag: str, quick: bool, root: str, ckpt: bool, repeat: int = 1, repo: str | None = None
) -> tuple[Row, list[Measurement]]:
    """Each engine `repeat` times, alternating, in fresh processes; the fastest run counts.
    `repo`: measure another checkout (`--against`) instead of this one."""
    c = ZERO_WORK_CONCURRENCY
    got: dict[str, Measurement] = {}
    for _ in range(repeat):
        for engine in ENGINES if ckpt else ENGINES[:2]:
            store = store_for(root, engine, dag, c)
            if store is not None:
                shutil.rmtree(store, ignore_errors=True)
            (m,) = measure_in_subprocess(
                engine, [Job(dag, c, quick, store)], timeout=900.0, repo=repo
            )
            if not m.ok:
                print(f"  {engine} {dag} FAILED: {m.error}", file=sys.stderr, flush=True)
            best = got.get(engine)
            if best is None or not best.ok or (m.ok and (m.wall or 0) < (best.wall or 0)):
                got[engine] = m

    def us(engine: str) -> float | None:
        m = got.get(engine)
        return m.per_node_us if m and m.ok else None

    def cpu(engine: str) -> float | None:
        m = got.get(engine)
        return m.cpu_per_node_us if m and m.ok else None

    def rss(engine: str) -> float | None:
        m = got.get(engine)
        return m.rss_peak_mb if m and m.ok else None

    ck = got.get("dagagents-ckpt")
    row = Row(
        dag=dag,
        nodes=next((m.nodes for m in got.values() if m.nodes), 0),
        bare_us=us("bare"),
        plain_us=us("dagagents"),
        ckpt_us=us("dagagents-ckpt"),
        disk_us=ck.info.get("fs_object_us") if ck and ck.ok else None,
        rss_plain_mb=rss("dagagents"),
        rss_ckpt_mb=rss("dagagents-ckpt"),
        load=os.getloadavg()[0],
        bare_cpu_us=cpu("bare"),
        plain_cpu_us=cpu("dagagents"),
    )
    return row, list(got.values())


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling")
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--no-ckpt", action="store_true", help="skip the checkpointed runs")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code only")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine; the best counts")
    parser.add_argument(
        "--against",
        default=None,
        metavar="DIR",
        help="another checkout (e.g. a worktree of the commit before): each row is measured "
        "there too, right after this one's, and printed beneath it",
    )
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="dagagents-scaling-")
    rows: list[Row] = []
    try:
        for size in args.sizes.split(","):
            for shape in args.shapes.split(","):
                dag = f"{shape}{size}"
                if dags.zero_work_size(dag) is None:
                    raise SystemExit(f"not a size: {size!r}")
                row, _ = measure_row(dag, args.quick, root, not args.no_ckpt, args.repeat)
                rows.append(row)
                print(row.line(), flush=True)
                if args.against:
                    shutil.rmtree(root, ignore_errors=True)
                    os.makedirs(root, exist_ok=True)
                    other, _ = measure_row(
                        dag, args.quick, root, not args.no_ckpt, args.repeat, args.against
                    )
                    print(f"  against: {other.line()}", flush=True)
                shutil.rmtree(root, ignore_errors=True)
                os.makedirs(root, exist_ok=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                [
                    {
                        **r.__dict__,
                        "vs_bare": r.vs_bare,
                        "cpu_vs_bare": r.cpu_vs_bare,
                        "ckpt_vs_disk": r.ckpt_vs_disk,
                    }
                    for r in rows
                ],
                fh,
                indent=2,
            )
    print()
    ratios = [r.vs_bare for r in rows if r.vs_bare]
    if ratios:
        print(
            f"dagagents / bare eager loop: {min(ratios):.2f}x .. {max(ratios):.2f}x (target <= 2)"
        )
    cpu_ratios = [r.cpu_vs_bare for r in rows if r.cpu_vs_bare]
    if cpu_ratios:
        print(f"  the same in process CPU time: {min(cpu_ratios):.2f}x .. {max(cpu_ratios):.2f}x")
    disk = [r.ckpt_vs_disk for r in rows if r.ckpt_vs_disk]
    if disk:
        print(f"checkpointed / disk probe: {min(disk):.2f}x .. {max(disk):.2f}x (target <= 1.5)")
    big = [r for r in rows if r.nodes >= 100_000]
    for r in big:
        print(f"{r.dag}: peak RSS {r.rss_plain_mb} MB plain, {r.rss_ckpt_mb} MB ckpt (<= 1024)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
