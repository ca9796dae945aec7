"""The run freezes the heap that existed before it (no full collection walks it again) and
hands it back at the end; a process that froze its own heap keeps it frozen."""

from __future__ import annotations

import gc
import weakref

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
