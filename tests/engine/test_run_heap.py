"""The run freezes the heap that existed before it (no full collection walks it again) and
hands it back at the end; a process that froze its own heap keeps it frozen."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from dagagents import Graph


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_heap_is_frozen_during_a_run_and_given_back_after() -> None:
    before = _Cycle()
    seen: list[int] = []

    def probe() -> int:
        seen.append(gc.get_freeze_count())
        return 1

    g = Graph("heap")
    g.add_step("probe", probe)
    assert gc.get_freeze_count() == 0
    result = g.run(store=None)
    assert result.ok
    assert seen and seen[0] > 0  # the pre-run heap (this test's objects too) was frozen
    assert gc.get_freeze_count() == 0  # and handed back: nothing stays frozen
    ref = weakref.ref(before)
    del before
    gc.collect()
    assert ref() is None  # a cycle from before the run is still collectable after it


def test_a_process_that_froze_its_own_heap_keeps_it_frozen() -> None:
    gc.freeze()
    try:
        g = Graph("heap")
        g.add_step("one", lambda: 1)
        assert g.run(store=None).ok
        assert gc.get_freeze_count() > 0  # still frozen: the run did not unfreeze it
    finally:
        gc.unfreeze()


def test_the_runs_own_state_is_frozen_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records and the sorter live as long as the run: they are frozen once built, so no full
    collection during the run walks them either."""
    from dagagents.engine import run as engine_run

    counts: dict[str, int] = {}
    build = engine_run._Run.__init__

    def built(self: engine_run._Run, *args: Any, **kwargs: Any) -> None:
        build(self, *args, **kwargs)
        counts["built"] = gc.get_freeze_count()

    def probe() -> int:
        counts["running"] = gc.get_freeze_count()
        return 1

    monkeypatch.setattr(engine_run._Run, "__init__", built)
    g = Graph("heap")
    g.add_step("probe", probe)
    assert g.run(store=None).ok
    assert counts["built"] > 0  # the freeze began before the state was built
    assert counts["running"] > counts["built"]  # and the state joined it
    assert gc.get_freeze_count() == 0
