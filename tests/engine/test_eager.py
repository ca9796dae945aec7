"""Eager beats level-by-level: a fast chain never waits for a slow sibling's level."""

from __future__ import annotations

import asyncio
from typing import Any

from dagagents import Graph


def heterogeneous() -> Graph:
    """A 1.0 s node beside a chain of ten 0.08 s nodes, then a join."""
    g = Graph("heterogeneous")

    async def slow() -> str:
        await asyncio.sleep(1.0)
        return "slow"

    def link(k: int):  # noqa: ANN202
        async def body(**_: Any) -> int:
            await asyncio.sleep(0.08)
            return k

        return body

    g.add_step("slow", slow)
    prev: list[str] = []
    for k in range(10):
        g.add_step(f"c{k}", link(k), depends_on=prev)
        prev = [f"c{k}"]

    async def join(**_: Any) -> str:
        return "joined"

    g.add_step("join", join, depends_on=["slow", "c9"])
    return g


def test_chain_finishes_before_slow_node() -> None:
    result = heterogeneous().run(concurrency=4, store=None)
    assert result.ok
    ends = [e["node"] for e in result.events if e["event"] == "node_complete"]
    # Level-by-level would run c1 only after `slow` (same level as c0) finished, so the
    # chain's last node would end ~0.7 s after `slow`. Eager: the whole chain ends first.
    assert ends.index("c9") < ends.index("slow")
    assert ends[-1] == "join"
    starts = [e["node"] for e in result.events if e["event"] == "node_start"]
    assert starts.index("c1") < ends.index("slow") + 1  # c1 started while slow was running
