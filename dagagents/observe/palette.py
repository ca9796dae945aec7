"""Colours every chart shares, so one thing looks the same in every picture.

An agent's colour follows from its name alone (the timeline, the bench PNG and the report
agree); red means failed everywhere (terminal, report, timeline, DAG); the critical path is
near-black everywhere. No plotting library is imported here: the DAG renderer uses it too.
"""

from __future__ import annotations

import hashlib

STEP_COLOUR = "#9e9e9e"
FAILED_COLOUR = "#c62828"  # red means failed in every view: terminal, report, timeline, DAG
CRITICAL_COLOUR = "#111111"  # the critical path is drawn in near-black everywhere
# Tableau 20: distinct hues, none of them the failure red or the step grey.
PALETTE = [
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#ff9da7",
    "#9c755f",
    "#a0cbe8",
    "#ffbe7d",
    "#8cd17d",
    "#b6992d",
    "#f1ce63",
    "#499894",
    "#86bcb6",
    "#d37295",
    "#fabfd2",
    "#d4a6c8",
    "#d7b5a6",
    "#79706e",
]


def agent_colour(agent: str) -> str:
    """The colour an agent has in every chart: chosen from its name alone, never from which
    other agents happen to be in the picture (so `researcher` is the same hue everywhere)."""
    digest = hashlib.sha256(agent.encode()).digest()
    return PALETTE[int.from_bytes(digest[:4], "big") % len(PALETTE)]
