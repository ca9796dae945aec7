"""Timeline (Gantt) pictures of runs with matplotlib: where the wall time went.

One row per node in start order, bars coloured by agent, cache hits and retries marked, the
critical path outlined in black, failures hatched. `compare_with` draws a second run (typically
the same graph with concurrency 1) below on the same time axis, so the saving is visible at a
glance; `dagagents bench` uses that too.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window, safe in threads and on servers

from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from dagagents.observe.palette import (  # noqa: E402
    CRITICAL_COLOUR,
    FAILED_COLOUR,
    PALETTE,
    STEP_COLOUR,
    agent_colour,
)
from dagagents.observe.runs import RunResult  # noqa: E402
from dagagents.observe.summary import RunData, realised_critical_path  # noqa: E402

RunLike = RunData | RunResult | Mapping[str, Any]
MAX_LABELLED_ROWS = 80
# A failed (or cancelled) bar, and its legend entry: white, hatched and outlined in red.
FAILED_BAR: dict[str, Any] = {
    "facecolor": "white",
    "edgecolor": FAILED_COLOUR,
    "hatch": "xxx",
    "hatchcolor": FAILED_COLOUR,
    "linewidth": 1.2,
}


def as_run_data(run: RunLike) -> RunData:
    """Accept a RunData, a RunResult, or a manifest dict (optionally with an "events" list)."""
    if isinstance(run, RunData):
        return run
    if isinstance(run, RunResult):
        return RunData.from_result(run)
    return RunData.from_manifest(run, list(run.get("events", [])))


def agent_colours(*runs: RunData) -> dict[str, str]:
    """Each agent's colour (`agent_colour`) for the agents in these runs; steps share grey.

    Two agents whose names pick the same colour cannot share it in one picture: the later
    name (alphabetically) takes the next free colour."""
    agents = sorted({n.agent for r in runs for n in r.nodes.values() if n.agent})
    out: dict[str, str] = {}
    taken: set[str] = set()
    for agent in agents:
        colour = agent_colour(agent)
        if len(taken) < len(PALETTE):
            i = PALETTE.index(colour)
            while colour in taken:
                i = (i + 1) % len(PALETTE)
                colour = PALETTE[i]
        out[agent] = colour
        taken.add(colour)
    return out


def timeline_figure(run: RunLike, compare_with: RunLike | None = None) -> Figure:
    """The Gantt chart as a matplotlib Figure (one panel, or two sharing the time axis)."""
    runs = [as_run_data(run)] + ([as_run_data(compare_with)] if compare_with is not None else [])
    colours = agent_colours(*runs)
    rows = [max(1, len(r.start_order())) for r in runs]
    height = min(40.0, 1.2 + 0.26 * sum(rows) + 0.9 * len(runs))
    fig = Figure(figsize=(11, max(3.0, height)), layout="constrained")
    axes = fig.subplots(
        len(runs), 1, sharex=True, height_ratios=[r + 2 for r in rows], squeeze=False
    )
    for ax, data in zip(axes[:, 0], runs, strict=True):
        _draw(ax, data, colours)
    if len(runs) == 2:
        fast, slow = runs
        if fast.wall > 0 and slow.wall > 0:
            fig.suptitle(
                f"{fast.graph}: {_mode(fast)} {fast.wall:.2f}s vs {_mode(slow)} {slow.wall:.2f}s "
                f"({slow.wall / fast.wall:.1f}x)",
                fontsize=12,
            )
    axes[-1, 0].set_xlabel("seconds since the run started")
    handles: list[Any] = [Patch(facecolor=c, label=a) for a, c in colours.items()]
    if any(n.kind == "step" for r in runs for n in r.nodes.values()):
        handles.append(Patch(facecolor=STEP_COLOUR, label="step"))
    handles += [
        Patch(facecolor="white", edgecolor=CRITICAL_COLOUR, linewidth=2, label="critical path"),
        Patch(**FAILED_BAR, label="failed"),  # exactly how a failed bar is drawn
        Line2D([], [], marker="D", linestyle="", color="#00acc1", label="cache hit"),
        Line2D([], [], marker="v", linestyle="", color=FAILED_COLOUR, label="retry"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8)
    return fig


def _mode(run: RunData) -> str:
    return "sequential" if run.concurrency == 1 else f"concurrency {run.concurrency}"


def _draw(ax: Any, run: RunData, colours: Mapping[str, str]) -> None:
    order = run.start_order()
    path, path_time = realised_critical_path(run)
    on_path = set(path)
    retries: dict[str, list[float]] = {}
    for e in run.events:
        if e["event"] == "retry" and e.get("node"):
            retries.setdefault(e["node"], []).append(float(e.get("t", 0.0)))
    # One barh call per kind of bar (not per node): thousands of rows stay fast.
    bars: dict[bool, dict[str, list[Any]]] = {
        failed: {k: [] for k in ("y", "width", "left", "color", "edge", "lw")}
        for failed in (False, True)
    }
    cached_rows: list[tuple[int, float]] = []
    retry_marks: list[tuple[float, float]] = []
    for row, n in enumerate(order):
        if n.status == "cached":
            cached_rows.append((row, n.start or 0.0))
            continue
        failed = n.status in ("failed", "cancelled")
        end = n.end if n.end is not None else run.wall
        b = bars[failed]
        b["y"].append(row)
        b["left"].append(n.start or 0.0)
        b["width"].append(max(0.0, end - (n.start or 0.0)))
        if failed:  # drawn as the legend shows it; the red border wins over the path's
            b["color"].append(FAILED_BAR["facecolor"])
            b["edge"].append(FAILED_BAR["edgecolor"])
            b["lw"].append(2.0 if n.name in on_path else FAILED_BAR["linewidth"])
        else:
            colour = colours.get(n.agent or "", STEP_COLOUR)
            b["color"].append(colour)
            b["edge"].append(CRITICAL_COLOUR if n.name in on_path else colour)
            b["lw"].append(2.0 if n.name in on_path else 0.8)
        retry_marks += [(t, row - 0.45) for t in retries.get(n.name, [])]
    for failed, b in bars.items():
        if not b["y"]:
            continue
        # A single PolyCollection draws thousands of bars in one artist (barh makes one each).
        verts = [
            [(x, y - 0.36), (x + w, y - 0.36), (x + w, y + 0.36), (x, y + 0.36)]
            for x, w, y in zip(b["left"], b["width"], b["y"], strict=True)
        ]
        ax.add_collection(
            PolyCollection(
                verts,
                facecolors=b["color"],
                edgecolors=b["edge"],
                linewidths=b["lw"],
                alpha=None if failed else 0.9,
                hatch=FAILED_BAR["hatch"] if failed else None,
                hatchcolors=FAILED_BAR["hatchcolor"] if failed else None,
                zorder=2,
            )
        )
    if cached_rows:
        ax.plot(
            [t for _, t in cached_rows],
            [r for r, _ in cached_rows],
            "D",
            color="#00acc1",
            markersize=7,
            zorder=3,
        )
        if len(order) <= MAX_LABELLED_ROWS:
            for row, t in cached_rows:
                ax.annotate(
                    "cached",
                    (t, row),
                    xytext=(7, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                    color="#00838f",
                )
    if retry_marks:
        ax.plot(
            [t for t, _ in retry_marks],
            [y for _, y in retry_marks],
            "v",
            color=FAILED_COLOUR,
            markersize=6,
            zorder=4,
        )
    ax.set_ylim(len(order) - 0.4, -0.6)
    if len(order) <= MAX_LABELLED_ROWS:
        ax.set_yticks(range(len(order)), [n.name for n in order], fontsize=8)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{len(order)} nodes in start order")
    ax.set_xlim(0, max(run.wall, 1e-3) * 1.02)
    ax.axvline(run.wall, color="#555555", linestyle=":", linewidth=1)
    ax.grid(axis="x", alpha=0.3)
    skipped = sum(1 for n in run.nodes.values() if n.status == "skipped")
    extra = f" · {skipped} skipped" if skipped else ""
    share = f" · critical path {path_time:.2f}s ({path_time / run.wall:.0%})" if run.wall else ""
    ax.set_title(
        f"{run.graph} · run {run.run_id} · {_mode(run)} · wall {run.wall:.2f}s{share}{extra}",
        fontsize=9,
        loc="left",
    )


def timeline_png(
    run: RunLike,
    path: str | os.PathLike[str],
    compare_with: RunLike | None = None,
    *,
    dpi: int = 110,
) -> Path:
    """Write the timeline PNG of `run` (beside `compare_with`, e.g. a sequential run) to `path`.

    `run` and `compare_with` may be RunResults, RunData, or manifest dicts.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(timeline_png_bytes(run, compare_with, dpi=dpi))
    return out


def timeline_png_bytes(
    run: RunLike, compare_with: RunLike | None = None, *, dpi: int = 110
) -> bytes:
    """The timeline PNG as bytes (the HTML report inlines it as base64)."""
    fig = timeline_figure(run, compare_with)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
