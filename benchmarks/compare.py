"""dagagents side by side with the ideal schedule, an asyncio.gather baseline, LangGraph and Dask.

    python -m benchmarks.compare [--quick] [--out benchmarks/results]

Every engine runs the same seeded DAGs (`benchmarks.dags`) with the same durations and
concurrency, once, each run in a fresh process (so peak RSS is that engine's). Every run's
execution log is checked before its time counts. Writes `compare.json` and `compare.md` and
prints whether each target of issue 7 holds. `--quick` shrinks sizes and durations so the
suite finishes in seconds (the smoke test); its numbers say nothing about the targets.
Checkpoint stores live under $TMPDIR (default /tmp); next to each checkpointed run the report
gives what the disk alone charges per object (create + rename), measured just before it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import dags, targets
from benchmarks.runner import Batches, Job, Measurement, run_plan, store_for
from benchmarks.targets import CONCURRENCIES, ZERO_WORK_CONCURRENCY, Target, find

DAGAGENTS = ("dagagents", "dagagents-ckpt", "dagagents-history", "dagagents-estimate")
# Variants whose point is priorities: moot on zero-work DAGs.
PRIORITY_ONLY = ("dagagents-history", "dagagents-estimate")
OPTIONAL = {"langgraph": "langgraph", "dask": "dask"}  # engine -> module of the `bench` extra
ENGINE_NOTES = {
    "dagagents": "no checkpoints, first run (no duration history)",
    "dagagents-ckpt": "checkpoints into an empty store",
    "dagagents-history": "checkpoints, rerun with --fresh after one run (durations known)",
    "dagagents-estimate": "no checkpoints, first run, each step declares estimate= seconds",
    "dagagents-resume": "rerun of a fully checkpointed graph",
    "gather": "asyncio.gather per topological level + semaphore",
    "langgraph": "StateGraph, add_edge([preds], node), max_concurrency",
    "dask": "dask.delayed, threaded scheduler, num_workers",
}


# ----------------------------------------------------------------------------- planning
def available_engines(only: Iterable[str] | None = None) -> list[str]:
    """dagagents variants plus every rival whose package is installed."""
    engines = list(DAGAGENTS) + ["gather"]
    for engine, module in OPTIONAL.items():
        if importlib.util.find_spec(module) is not None:
            engines.append(engine)
    return [e for e in engines if only is None or e in only]


def plan(engines: list[str], quick: bool, root: str) -> Batches:
    """(engine, jobs) batches in run order; each batch gets one fresh process. Full runs use
    one process per job; --quick batches per engine to save interpreter start-ups."""

    def job(engine: str, dag: str, c: int) -> Job:
        return Job(dag, c, quick, store_for(root, engine, dag, c))

    batches: Batches = []

    def add(engine: str, jobs: list[Job]) -> None:
        batches.extend([(engine, jobs)] if quick else [(engine, [j]) for j in jobs])

    for engine in engines:
        jobs = [job(engine, d, c) for d in dags.TIMED for c in CONCURRENCIES]
        if engine not in PRIORITY_ONLY:
            jobs += [job(engine, d, ZERO_WORK_CONCURRENCY) for d in dags.ZERO_WORK]
        add(engine, jobs)
        if engine == "dagagents-ckpt":  # resume the zero-work stores it just filled
            add(
                "dagagents-resume",
                [job("dagagents-resume", d, ZERO_WORK_CONCURRENCY) for d in dags.ZERO_WORK],
            )
    return batches


# ------------------------------------------------------------------------------ targets
def evaluate(results: list[Measurement]) -> list[Target]:
    """Every target of issue 7, for each dagagents variant it concerns."""
    out = [targets.makespan(results, engine) for engine in DAGAGENTS]
    out += [
        targets.faster_than(results, e, "langgraph", 1.5)
        for e in ("dagagents", "dagagents-history", "dagagents-estimate")
    ]
    out += [
        targets.per_node(results, "dagagents", 50),
        targets.per_node(results, "dagagents-ckpt", 300),
    ]
    out += [
        targets.lower_overhead_than(results, "dagagents", rival) for rival in ("langgraph", "dask")
    ]
    out += [
        targets.lower_overhead_than(results, "dagagents-ckpt", r, " (rivals write no checkpoints)")
        for r in ("langgraph", "dask")
    ]
    out += [
        targets.peak_rss(results, e) for e in ("dagagents", "dagagents-ckpt", "dagagents-resume")
    ]
    out.append(targets.cached_resume(results))
    return out


# ------------------------------------------------------------------------------ reports
def machine() -> dict[str, Any]:
    """Where the numbers come from: they only mean something next to this."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for pkg in ("dagagents", "langgraph", "dask", "networkx"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def _cell(m: Measurement | None, what: str) -> str:
    if m is None:
        return "-"
    if not m.ok:
        return "FAILED"
    if what == "timed":
        return f"{m.wall:.3f} s ({m.vs_ideal:.2f}x / {m.vs_lower_bound:.2f}x)"
    disk = m.info.get("fs_object_us")
    disk_note = f"; disk alone {disk:.0f} us/object" if disk else ""
    return (
        f"{m.per_node_us:.1f} us (cpu {m.cpu_per_node_us:.1f}{disk_note}), {m.rss_peak_mb:.0f} MB"
    )


def markdown(report: dict[str, Any], results: list[Measurement], verdicts: list[Target]) -> str:
    """The README-ready tables: timed DAGs, zero-work DAGs, targets."""
    engines = [e for e in report["engines"] if e != "dagagents-resume"]
    meta = report["machine"]
    lines = [
        f"Measured {report['date']} with `{report['command']}` on {meta['cpu']} "
        f"({meta['cores']} cores), Python {meta['python']}, "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
        + f". One run per cell; suite took {report['elapsed_s']:.0f} s; 1-minute load average "
        + "{:.1f} at the start, {:.1f} at the end.".format(*report["load_avg_1m"])
        + (
            " **--quick: sizes and durations shrunk, numbers not comparable to targets.**"
            if report["quick"]
            else ""
        ),
        "",
        "**Simulated-latency DAGs** — wall (wall / ideal schedule / wall / lower bound):",
        "",
        "| DAG | c | ideal | lower bound | " + " | ".join(engines) + " |",
        "|---|---|---|---|" + "---|" * len(engines),
    ]
    for dag in dags.TIMED:
        for c in CONCURRENCIES:
            any_m = next(
                (m for m in results if m.dag == dag and m.concurrency == c and m.ideal), None
            )
            ideal = _fmt(any_m.ideal if any_m else None, "{:.3f} s")
            lb = _fmt(any_m.lower_bound if any_m else None, "{:.3f} s")
            cells = [_cell(find(results, e, dag, c), "timed") for e in engines]
            lines.append(f"| {dag} | {c} | {ideal} | {lb} | " + " | ".join(cells) + " |")
    zero_engines = [e for e in report["engines"] if e not in PRIORITY_ONLY]
    lines += [
        "",
        "compare.json also holds, per run: CPU time, startup (call to first node), build time "
        "(engine graph construction, not in wall), peak RSS, and the ideal recomputed with the "
        "durations the nodes really took (timers overshoot a little), to tell scheduling from "
        "sleep inaccuracy.",
        "",
        f"**Zero-work DAGs** (c={ZERO_WORK_CONCURRENCY}) — per-node overhead (wall / nodes; "
        "process CPU time / nodes in brackets), peak RSS of the whole process:",
        "",
        "| DAG | nodes | " + " | ".join(zero_engines) + " |",
        "|---|---|" + "---|" * len(zero_engines),
    ]
    for dag in dags.ZERO_WORK:
        row = [find(results, e, dag, ZERO_WORK_CONCURRENCY) for e in zero_engines]
        nodes = next((m.nodes for m in row if m and m.nodes), 0)
        cells = []
        for e, m in zip(zero_engines, row, strict=True):
            if e == "dagagents-resume" and m and m.ok:
                cells.append(f"{m.wall:.3f} s total (cpu {m.cpu:.3f} s), {m.rss_peak_mb:.0f} MB")
            else:
                cells.append(_cell(m, "zero"))
        lines.append(f"| {dag} | {nodes} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Engines: " + "; ".join(f"`{e}` = {ENGINE_NOTES[e]}" for e in report["engines"]) + ".",
        "",
    ]
    lines += ["**Targets (issue 7)**", "", "| target | holds | detail |", "|---|---|---|"]
    for t in verdicts:
        verdict = {True: "yes", False: "**no**", None: "n/a"}[t.holds]
        lines.append(f"| {t.name} | {verdict} | {t.detail} |")
    failed = [m for m in results if not m.ok]
    if failed:
        lines += ["", "**Runs that failed (their times are not used):**", ""]
        lines += [f"- {m.engine} {m.dag} c={m.concurrency}: {m.error}" for m in failed]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the code, not the targets"
    )
    parser.add_argument(
        "--out", default="benchmarks/results", help="directory for compare.json/.md"
    )
    parser.add_argument("--engines", help="comma-separated subset of engines to run")
    args = parser.parse_args(argv)
    only = args.engines.split(",") if args.engines else None
    engines = available_engines(only)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    results = run_plan(
        lambda root: plan(engines, args.quick, root), lambda line: print(line, flush=True)
    )
    verdicts = evaluate(results)
    command = "python -m benchmarks.compare" + (" --quick" if args.quick else "")
    report = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "quick": args.quick,
        "machine": machine(),
        "engines": engines + (["dagagents-resume"] if "dagagents-ckpt" in engines else []),
        "elapsed_s": time.perf_counter() - started,
        "load_avg_1m": [load_before, os.getloadavg()[0]],
        "results": [m.to_json() for m in results],
        "targets": [asdict(t) for t in verdicts],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report, results, verdicts)
    (out / "compare.md").write_text(md)
    print()
    print(md)
    for t in verdicts:
        print(t.line())
    return 0 if all(m.ok for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
