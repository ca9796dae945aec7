"""`astream`: a run as an async iterator of its events, token deltas included, then its result.

The LangGraph habit (`async for chunk in graph.astream(...)`) on top of the ordinary run: the
iterator is one more listener of the run's tracer, so it sees exactly what the trace, the live
view and the web view see, in the order they happen, plus `token` events (a node's reply text
as it streams), which the trace never stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from dagagents.engine.run import arun
from dagagents.model.graph import Graph
from dagagents.observe.runs import RunResult

_END = object()


async def astream(graph: Graph, **options: Any) -> AsyncIterator[dict[str, Any] | RunResult]:
    """Yield each event of a run of `graph` as a dict (`event` names it: node_start, token,
    node_complete, ...) as it happens, and the `RunResult` last. Options are `arun`'s.

    Closing the iterator early (`async with contextlib.aclosing(...)`, or when it is
    collected) cancels the run, which still writes its manifest, so finished nodes stay
    checkpointed."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    theirs: Callable[[dict[str, Any]], None] | None = options.pop("listener", None)

    def listen(event: dict[str, Any]) -> None:
        if theirs is not None:
            theirs(event)
        queue.put_nowait(event)

    task = asyncio.ensure_future(arun(graph, listener=listen, **options))
    task.add_done_callback(lambda _: queue.put_nowait(_END))
    try:
        while True:
            item = await queue.get()
            if item is _END:
                break
            yield item
        yield task.result()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
