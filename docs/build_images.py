"""Regenerate the README's observability pictures from the offline demo (no key, no network).

    .venv/bin/python docs/build_images.py [--time-scale 1.0]

Runs graphs/market_report.py with the simulated provider twice (8 at once, then one at a
time) in a throwaway store, then writes docs/market_report.png (the DAG coloured by the run),
docs/market_report_timeline.png (the two runs on one time axis), docs/estimate.txt and
docs/trace_summary.txt (what `dagagents estimate` and `dagagents trace summary` print), and
docs/web_view.png: headless Chromium (Playwright) photographing the live web view in the middle
of a third run, with a running node's streamed text open (`--only-web` makes just that one).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
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


def web_view_png(graph: Graph, store: Store, out: Path) -> None:
    """Run `graph` watched by the web view and photograph the page mid-run."""
    from dagagents.observe.ui.app import create_app
    from dagagents.observe.ui.browser import browser_page
    from dagagents.observe.ui.feeds import LiveRun
    from dagagents.observe.ui.server import serve_in_thread

    live = LiveRun(graph, max_cost_usd=0.25)
    served = serve_in_thread(create_app(store, live))
    worker = threading.Thread(
        target=lambda: graph.run(
            store=store, fresh=True, concurrency=4, listener=live, max_cost_usd=0.25
        )
    )
    try:
        with browser_page(width=1600, height=900) as (page, outside):
            worker.start()
            while live.run_id is None:
                time.sleep(0.05)
            page.goto(served.run_url(live.run_id))
            # Once the plan has expanded and workers stream, open the one with the most text.
            page.wait_for_function(
                "document.querySelectorAll('g.node[data-status=done]').length >= 3 && "
                "document.querySelectorAll('g.node[data-status=running]').length >= 1",
                timeout=120_000,
            )
            page.click("g.node[data-status=running]")
            page.wait_for_function(
                "document.querySelector('#drawer-stream').textContent.length > 200"
                " || document.querySelector('#drawer-output').textContent.length > 200"
            )
            page.screenshot(path=str(out))
            assert not outside, outside
    finally:
        worker.join()
        served.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--only-web", action="store_true", help="only docs/web_view.png")
    args = parser.parse_args()
    graph = Graph.load(str(GRAPH))
    assert graph.simulator is not None
    graph.simulator.time_scale = args.time_scale
    if args.only_web:
        with tempfile.TemporaryDirectory() as tmp:
            web_view_png(graph, Store(Path(tmp) / "store"), DOCS / "web_view.png")
        print(f"wrote {DOCS / 'web_view.png'}")
        return
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
        web_view_png(graph, store, DOCS / "web_view.png")
    print(f"parallel {parallel.wall:.2f}s, sequential {sequential.wall:.2f}s; wrote {DOCS}")


if __name__ == "__main__":
    main()
