"""The public run API: `dagagents.run`/`arun`, `Graph.run(**options)` and one `RunOptions`."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

import dagagents
from dagagents import Graph, RunOptions, UserError


def _graph() -> Graph:
    g = Graph("opts")
    g.add_step("x", lambda: 41)
    g.add_step("y", lambda x: x + 1)
    return g


def test_dagagents_run_takes_the_keywords_graph_run_takes() -> None:
    assert dagagents.run(_graph(), store=None, concurrency=2).outputs["y"] == 42
    assert _graph().run(store=None, concurrency=2).outputs["y"] == 42


def test_dagagents_arun_inside_a_running_loop() -> None:
    async def main() -> int:
        result = await dagagents.arun(_graph(), store=None)
        return int(result.outputs["y"])

    assert asyncio.run(main()) == 42


def test_one_run_options_object_with_keyword_overrides() -> None:
    options = RunOptions(store=None, concurrency=3)
    result = dagagents.run(_graph(), options, keep_events=False)
    assert result.concurrency == 3
    assert result.events == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.concurrency = 4  # type: ignore[misc]


def test_a_bad_option_is_refused_before_anything_runs() -> None:
    with pytest.raises(UserError, match=r"^concurrency must be at least 1 \(got 0\)\.$"):
        _graph().run(store=None, concurrency=0)
    with pytest.raises(TypeError, match="no_such_option"):
        _graph().run(store=None, no_such_option=True)


def test_a_single_rerun_name_is_one_name_not_its_letters() -> None:
    assert RunOptions(rerun="abc").rerun == ("abc",)
