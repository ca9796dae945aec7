"""Regenerate the README's observability pictures from the offline demo (no key, no network).

    .venv/bin/python docs/build_images.py [--time-scale 1.0]

Runs graphs/market_report.py with the simulated provider twice (8 at once, then one at a
time) in a throwaway store, then writes docs/market_report.png (the DAG coloured by the run),
docs/market_report_timeline.png (the two runs on one time axis), docs/estimate.txt and
docs/trace_summary.txt (what `dagagents estimate` and `dagagents trace summary` print).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from dagagents import Graph, Store
from dagagents.observe.render import diagram_from_run, render_bytes
from dagagents.observe.summary import load_run
from dagagents.observe.timeline import timeline_png

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GRAPH = ROOT / "graphs" / "market_report.py"


def cli(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "dagagents", *args],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "COLUMNS": "110"},
    )
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args()
    graph = Graph.load(str(GRAPH))
    assert graph.simulator is not None
    graph.simulator.time_scale = args.time_scale
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        parallel = graph.run(store=store, concurrency=8)
        estimate_text = cli("estimate", str(GRAPH), "--store", store.url)
        sequential = graph.run(store=store, concurrency=1, fresh=True)
        run = load_run(parallel.run_id, store.url)
        (DOCS / "market_report.png").write_bytes(render_bytes(diagram_from_run(run), "png"))
        timeline_png(run, DOCS / "market_report_timeline.png", compare_with=sequential)
        (DOCS / "estimate.txt").write_text(estimate_text)
        (DOCS / "trace_summary.txt").write_text(
            cli("trace", "summary", parallel.run_id, "--store", store.url)
        )
    print(f"parallel {parallel.wall:.2f}s, sequential {sequential.wall:.2f}s; wrote {DOCS}")


if __name__ == "__main__":
    main()
