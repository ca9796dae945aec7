"""A step that raises anything but KeyboardInterrupt/CancelledError fails that node only, and an
output that cannot be stored fails the same way with or without a store (issue 12, 4 and 22)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from dagagents import Graph


class Custom(BaseException):
    """A BaseException subclass of the kind test frameworks raise (pytest.fail's Failed)."""


def _graph(fail: Any, *, is_async: bool) -> Graph:
    g = Graph("base-exc")
    if is_async:

        async def bad() -> None:
            fail()

        g.add_step("bad", bad)
    else:

        def bad() -> None:
            fail()

        g.add_step("bad", bad)
    g.add_step("below", lambda bad: bad)
    g.add_step("other", lambda: "fine")
    return g


def _exit() -> None:
    sys.exit(4)


def _custom() -> None:
    raise Custom("custom")


def _pytest_fail() -> None:
    pytest.fail("from inside a step")


@pytest.mark.parametrize("is_async", [False, True], ids=["thread", "async"])
@pytest.mark.parametrize(
    ("fail", "error"),
    [
        (_exit, "SystemExit: 4"),
        (_custom, "Custom: custom"),
        (_pytest_fail, "Failed: from inside a step"),
    ],
    ids=["sys.exit", "custom", "pytest.fail"],
)
def test_a_base_exception_in_a_step_fails_that_node_only(
    tmp_path: Path, fail: Any, error: str, is_async: bool
) -> None:
    g = _graph(fail, is_async=is_async)

    async def main() -> Any:
        return await asyncio.wait_for(g.arun(store=tmp_path / "st"), 30)  # never hangs

    result = asyncio.run(main())
    assert result.status == {"bad": "failed", "below": "skipped", "other": "done"}
    assert result.errors["bad"] == error
    manifest = (tmp_path / "st" / "runs" / result.run_id / "manifest.json").read_text()
    assert '"status":"failed"' in manifest.replace(" ", "")


@pytest.mark.parametrize("store", ["st", None], ids=["store", "no-store"])
def test_a_step_returning_an_unstorable_object_fails_the_same_with_and_without_a_store(
    tmp_path: Path, store: str | None
) -> None:
    g = Graph("unstorable")
    g.add_step("thing", lambda: object())
    g.add_step("use", lambda thing: "used")
    result = g.run(store=None if store is None else tmp_path / store)
    assert result.status == {"thing": "failed", "use": "skipped"}
    assert result.errors["thing"].startswith("node 'thing' returned ")
    assert "object" in result.errors["thing"]
