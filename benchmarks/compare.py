"""dagagents side by side with the ideal schedule, an asyncio.gather baseline, LangGraph and Dask.

    python -m benchmarks.compare [--quick] [--out benchmarks/results]

Every engine runs the same seeded DAGs (`benchmarks.dags`) with the same durations and
concurrency, once, each run in a fresh process (so peak RSS is that engine's). Every run's
execution log is checked before its time counts. Writes `compare.json` and `compare.md` and
prints whether each target of issue 7 holds. `--quick` shrinks sizes and durations so the
suite finishes in seconds (the smoke test); its numbers say nothing about the targets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import dags
from benchmarks.runner import Job, Measurement, measure_in_subprocess

CONCURRENCIES = (4, 64)
ZERO_WORK_CONCURRENCY = 64
DAGAGENTS = ("dagagents", "dagagents-ckpt", "dagagents-history")
RIVALS = ("gather", "langgraph", "dask")
OPTIONAL = {"langgraph": "langgraph", "dask": "dask"}  # engine -> module of the `bench` extra
ENGINE_NOTES = {
    "dagagents": "no checkpoints, first run (no duration history)",
    "dagagents-ckpt": "checkpoints into an empty store",
    "dagagents-history": "checkpoints, rerun with --fresh after one run (durations known)",
    "dagagents-resume": "rerun of a fully checkpointed graph",
    "gather": "asyncio.gather per topological level + semaphore",
    "langgraph": "StateGraph, add_edge([preds], node), max_concurrency",
    "dask": "dask.delayed, threaded scheduler, num_workers",
}


@dataclass
class Target:
    """One target of issue 7 and where it stands."""

    name: str
    holds: bool | None  # None: could not be evaluated (an engine failed or is missing)
    detail: str


# ----------------------------------------------------------------------------- planning
def available_engines(only: Iterable[str] | None = None) -> list[str]:
    """dagagents variants plus every rival whose package is installed."""
    engines = list(DAGAGENTS) + ["gather"]
    for engine, module in OPTIONAL.items():
        if importlib.util.find_spec(module) is not None:
            engines.append(engine)
    return [e for e in engines if only is None or e in only]


def plan(engines: list[str], quick: bool, store_root: str) -> list[tuple[str, list[Job]]]:
    """(engine, jobs) batches in run order; each batch gets one fresh process. Full runs use
    one process per job; --quick batches per engine to save interpreter start-ups."""
    batches: list[tuple[str, list[Job]]] = []
    for engine in engines:
        jobs: list[Job] = []
        for dag in dags.TIMED:
            for c in CONCURRENCIES:
                store = _store(store_root, engine, dag, c)
                jobs.append(Job(dag, c, quick, store))
        if engine != "dagagents-history":  # its point is priorities, moot without work
            for dag in dags.ZERO_WORK:
                jobs.append(
                    Job(dag, ZERO_WORK_CONCURRENCY, quick, _store(store_root, engine, dag, 0))
                )
        batches.extend([(engine, jobs)] if quick else [(engine, [j]) for j in jobs])
        if engine == "dagagents-ckpt":  # resume the zero-work stores it just filled
            resume = [
                Job(d, ZERO_WORK_CONCURRENCY, quick, _store(store_root, engine, d, 0))
                for d in dags.ZERO_WORK
            ]
            batches.extend(
                [("dagagents-resume", resume)]
                if quick
                else [("dagagents-resume", [j]) for j in resume]
            )
    return batches


def _store(root: str, engine: str, dag: str, concurrency: int) -> str | None:
    if engine not in ("dagagents-ckpt", "dagagents-history"):
        return None
    return os.path.join(root, f"{engine}-{dag}-c{concurrency}")


# ------------------------------------------------------------------------------ targets
def _find(results: list[Measurement], engine: str, dag: str, c: int) -> Measurement | None:
    for m in results:
        if (m.engine, m.dag, m.concurrency) == (engine, dag, c):
            return m
    return None


def _check(
    name: str,
    rows: list[tuple[str, Measurement | None]],
    ok: Callable[[Measurement], bool],
    show: Callable[[Measurement], str],
) -> Target:
    parts, verdicts = [], []
    for label, m in rows:
        if m is None or not m.ok:
            parts.append(f"{label}: n/a ({m.error if m else 'not run'})")
            verdicts.append(None)
            continue
        verdicts.append(ok(m))
        parts.append(f"{label}: {show(m)}{'' if verdicts[-1] else ' MISS'}")
    holds = None if None in verdicts else all(verdicts)
    return Target(name, holds, "; ".join(parts))


def evaluate(results: list[Measurement]) -> list[Target]:
    """Every target of issue 7, for each dagagents variant it concerns."""
    targets: list[Target] = []
    zc = ZERO_WORK_CONCURRENCY
    for engine in DAGAGENTS:
        rows = [
            (f"{d} c={c}", _find(results, engine, d, c)) for d in dags.TIMED for c in CONCURRENCIES
        ]
        targets.append(
            _check(
                f"{engine}: makespan <= 1.05 x ideal (fanout, heterogeneous, random100; c=4, 64)",
                rows,
                lambda m: m.vs_ideal is not None and m.vs_ideal <= 1.05,
                lambda m: f"{m.vs_ideal:.3f}x",
            )
        )
    for engine in ("dagagents", "dagagents-history"):
        rows = [(f"c={c}", _find(results, engine, "heterogeneous", c)) for c in CONCURRENCIES]

        def speedup(m: Measurement) -> float | None:
            lg = _find(results, "langgraph", "heterogeneous", m.concurrency)
            return lg.wall / m.wall if lg and lg.ok and lg.wall and m.wall else None

        targets.append(
            _check(
                f"{engine}: heterogeneous >= 1.5 x faster than LangGraph",
                rows,
                lambda m: (speedup(m) or 0) >= 1.5,
                lambda m: f"{speedup(m):.2f}x" if speedup(m) else "LangGraph n/a",
            )
        )
    for engine, limit in (("dagagents", 50.0), ("dagagents-ckpt", 300.0)):
        rows = [(d, _find(results, engine, d, zc)) for d in dags.ZERO_WORK]
        targets.append(
            _check(
                f"{engine}: per-node overhead <= {limit:.0f} us (wide10k, chain10k)",
                rows,
                lambda m, limit=limit: (m.per_node_us or 1e9) <= limit,
                lambda m: f"{m.per_node_us:.1f} us",
            )
        )
    for engine in ("dagagents", "dagagents-ckpt"):
        ckpt_note = " (rivals write no checkpoints)" if engine == "dagagents-ckpt" else ""
        for rival in ("langgraph", "dask"):
            rows = [(d, _find(results, engine, d, zc)) for d in dags.ZERO_WORK]

            def beats(m: Measurement, rival: str = rival) -> bool:
                r = _find(results, rival, m.dag, m.concurrency)
                return bool(r and r.ok and r.per_node_us and m.per_node_us < r.per_node_us)

            def show(m: Measurement, rival: str = rival) -> str:
                r = _find(results, rival, m.dag, m.concurrency)
                theirs = f"{r.per_node_us:.1f}" if r and r.ok and r.per_node_us else "n/a"
                return f"{m.per_node_us:.1f} vs {theirs} us"

            targets.append(
                _check(
                    f"{engine}: per-node overhead lower than {rival}" + ckpt_note, rows, beats, show
                )
            )
    for engine in ("dagagents", "dagagents-ckpt", "dagagents-resume"):
        rows = [(d, _find(results, engine, d, zc)) for d in dags.ZERO_WORK]
        targets.append(
            _check(
                f"{engine}: peak RSS of a 10,000-node run <= 200 MB",
                rows,
                lambda m: (m.rss_peak_mb or 1e9) <= 200,
                lambda m: f"{m.rss_peak_mb:.0f} MB",
            )
        )
    rows = [(d, _find(results, "dagagents-resume", d, zc)) for d in dags.ZERO_WORK]
    targets.append(
        _check(
            "dagagents: fully cached resume of 10,000 nodes <= 1 s",
            rows,
            lambda m: (m.wall or 1e9) <= 1.0,
            lambda m: f"{m.wall:.3f} s",
        )
    )
    return targets


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
    versions = {}
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
    return f"{m.per_node_us:.1f} us, {m.rss_peak_mb:.0f} MB"


def markdown(report: dict[str, Any], results: list[Measurement], targets: list[Target]) -> str:
    """The README-ready tables: timed DAGs, zero-work DAGs, targets."""
    engines = [e for e in report["engines"] if e != "dagagents-resume"]
    meta = report["machine"]
    lines = [
        f"Measured {report['date']} with `{report['command']}` on {meta['cpu']} "
        f"({meta['cores']} cores), Python {meta['python']}, "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
        + f". One run per cell; suite took {report['elapsed_s']:.0f} s."
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
            cells = [_cell(_find(results, e, dag, c), "timed") for e in engines]
            lines.append(f"| {dag} | {c} | {ideal} | {lb} | " + " | ".join(cells) + " |")
    zero_engines = [e for e in report["engines"] if e != "dagagents-history"]
    lines += [
        "",
        f"**Zero-work DAGs** (c={ZERO_WORK_CONCURRENCY}) — per-node overhead (wall / nodes), "
        "peak RSS of the whole process:",
        "",
        "| DAG | nodes | " + " | ".join(zero_engines) + " |",
        "|---|---|" + "---|" * len(zero_engines),
    ]
    for dag in dags.ZERO_WORK:
        row = [_find(results, e, dag, ZERO_WORK_CONCURRENCY) for e in zero_engines]
        nodes = next((m.nodes for m in row if m and m.nodes), 0)
        cells = []
        for e, m in zip(zero_engines, row, strict=True):
            if e == "dagagents-resume" and m and m.ok:
                cells.append(f"{m.wall:.3f} s total, {m.rss_peak_mb:.0f} MB")
            else:
                cells.append(_cell(m, "zero"))
        lines.append(f"| {dag} | {nodes} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Engines: " + "; ".join(f"`{e}` = {ENGINE_NOTES[e]}" for e in report["engines"]) + ".",
        "",
    ]
    lines += ["**Targets (issue 7)**", "", "| target | holds | detail |", "|---|---|---|"]
    for t in targets:
        verdict = {True: "yes", False: "**no**", None: "n/a"}[t.holds]
        lines.append(f"| {t.name} | {verdict} | {t.detail} |")
    failed = [m for m in results if not m.ok]
    if failed:
        lines += ["", "**Runs that failed (their times are not used):**", ""]
        lines += [f"- {m.engine} {m.dag} c={m.concurrency}: {m.error}" for m in failed]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------- main
def run_suite(
    quick: bool, engines: list[str], progress: Callable[[str], None]
) -> list[Measurement]:
    """Run every batch of the plan and return all measurements."""
    store_root = tempfile.mkdtemp(prefix="dagagents-compare-")
    results: list[Measurement] = []
    try:
        for engine, jobs in plan(engines, quick, store_root):
            for m in measure_in_subprocess(engine, jobs):
                results.append(m)
                progress(_progress_line(m))
    finally:
        shutil.rmtree(store_root, ignore_errors=True)
    return results


def _progress_line(m: Measurement) -> str:
    head = f"{m.engine:<18} {m.dag:<14} c={m.concurrency:<3}"
    if not m.ok:
        return f"{head} FAILED: {m.error}"
    ratio = f" {m.vs_ideal:.3f}x ideal" if m.ideal else ""
    return (
        f"{head} wall {m.wall:8.3f} s{ratio}  {m.per_node_us:9.1f} us/node  "
        f"peak {m.rss_peak_mb:5.0f} MB"
    )


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
    started = time.perf_counter()
    results = run_suite(args.quick, engines, progress=lambda line: print(line, flush=True))
    targets = evaluate(results)
    command = "python -m benchmarks.compare" + (" --quick" if args.quick else "")
    report = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "quick": args.quick,
        "machine": machine(),
        "engines": engines + (["dagagents-resume"] if "dagagents-ckpt" in engines else []),
        "elapsed_s": time.perf_counter() - started,
        "results": [m.to_json() for m in results],
        "targets": [t.__dict__ for t in targets],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report, results, targets)
    (out / "compare.md").write_text(md)
    print()
    print(md)
    for t in targets:
        print(f"[{ {True: 'HOLDS', False: 'MISS ', None: 'N/A  '}[t.holds] }] {t.name}: {t.detail}")
    return 0 if all(m.ok for m in results) else 1


if __name__ == "__main__":
    sys.exit(main())
