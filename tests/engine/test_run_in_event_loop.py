"""`g.run()` where an event loop is already running (Jupyter, async code): one sentence that
points to `await g.arun()`, and no "coroutine was never awaited" warning after it."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from dagagents import Graph
from dagagents.errors import UserError


def small_graph() -> Graph:
    g = Graph("nb")
    g.add_step("one", lambda: 1)
    return g


def test_run_inside_a_running_loop_points_to_arun_without_warnings() -> None:
    g = small_graph()

    async def notebook_cell() -> str:
        with pytest.raises(UserError) as info:
            g.run(store=None)
        return str(info.value)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = asyncio.run(notebook_cell())
        gc.collect()
    assert "await graph.arun(" in message and "running event loop" in message
    assert len(message.splitlines()) == 1
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_arun_inside_a_running_loop_works() -> None:
    async def notebook_cell() -> int:
        result = await small_graph().arun(store=None)
        return int(result.outputs["one"])

    assert asyncio.run(notebook_cell()) == 1
