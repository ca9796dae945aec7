"""The garbage collector during a run: leave the heap that existed before it alone.

CPython's full collections traverse every tracked object, and a run allocates enough (a task,
a record and a few trace events per node) to trigger many of them; each one walks the whole
import heap and the user's graph again, ~13 us per node at 10,000 nodes. `gc.freeze()` moves
everything alive at the start of the run into the permanent generation, which no collection
visits; `gc.unfreeze()` at the end hands it back, so nothing is kept alive longer than the run
(a cycle that became garbage during the run is collected after it). A process that manages
freezing itself (a pre-fork server) is left alone, and so is a run nested in another run.

The freeze starts before the run's state is built (validation, priorities, the sorter and a record
per node), and the collector is off while it is built: those allocations would trigger full
collections of their own (~0.3 us per node at 100,000 nodes) over objects that all live as long
as the run. `freeze_built` then moves that state into the permanent generation too and turns
the collector back on.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_ours = 0  # frozen_heap calls inside one that froze: they know without asking the collector


@contextmanager
def frozen_heap() -> Iterator[bool]:
    """Freeze the pre-existing heap for the duration, with the collector off until
    `freeze_built`; yields whether this call froze it. (A nested call answers from `_ours`:
    `gc.get_freeze_count` walks the whole frozen heap, several ms once the run's state is
    frozen too.)"""
    global _ours
    if _ours or not gc.isenabled() or gc.get_freeze_count():
        yield False
        return
    gc.freeze()
    gc.disable()
    _ours += 1
    try:
        yield True
    finally:
        _ours -= 1
        gc.enable()  # (already on, unless the run's state was never built)
        gc.unfreeze()


def freeze_built(froze: bool) -> None:
    """Move what was allocated since `frozen_heap` froze (the run's long-lived state) into the
    permanent generation as well and turn the collector back on; only when that call froze
    the heap (else it is not ours)."""
    if froze:
        gc.freeze()
        gc.enable()


__all__ = ["freeze_built", "frozen_heap"]
