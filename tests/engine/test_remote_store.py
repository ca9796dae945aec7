"""A non-local (fsspec) store is read and written off the event loop, so the loop keeps
scheduling while a checkpoint uploads; a local store keeps its inline fast path."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

from dagagents import Graph, Store


def _watch(store: Store, seen: list[tuple[str, str]], slow: float = 0.0) -> Store:
    """Record which thread every object read and write ran on; make writes slow."""
    get, put = store.get, store.put

    def watched_get(key: str) -> Any:
        seen.append(("get", threading.current_thread().name))
        return get(key)

    def watched_put(key: str, value: bytes, meta: dict[str, Any]) -> str:
        seen.append(("put", threading.current_thread().name))
        time.sleep(slow)  # an upload that takes a while
        return put(key, value, meta)

    store.get = watched_get  # type: ignore[method-assign]
    store.put = watched_put  # type: ignore[method-assign]
    return store


def _graph(ticks: list[int], uploading: threading.Event) -> Graph:
    g = Graph("remote")
    g.add_step("first", lambda: "payload")

    async def ticker() -> int:
        # Counts loop turns while `first`'s checkpoint is being uploaded.
        for _ in range(500):
            if uploading.is_set():
                ticks.append(1)
            await asyncio.sleep(0.002)
        return len(ticks)

    g.add_step("ticker", ticker)
    return g


def test_a_remote_store_is_read_and_written_off_the_event_loop() -> None:
    seen: list[tuple[str, str]] = []
    store = _watch(Store(f"memory://remote-{os.getpid()}-{time.time_ns()}"), seen)
    g = Graph("remote")
    g.add_step("a", lambda: 1)
    g.add_step("b", lambda a: a + 1)
    first = g.run(store=store)
    assert first.ok
    again = g.run(store=store)
    assert set(again.status.values()) == {"cached"}
    assert {op for op, _ in seen} == {"get", "put"}
    assert all(thread != "MainThread" for _, thread in seen), seen


def test_the_loop_keeps_scheduling_while_a_checkpoint_uploads() -> None:
    seen: list[tuple[str, str]] = []
    uploading = threading.Event()
    store = Store(f"memory://upload-{os.getpid()}-{time.time_ns()}")
    put = store.put

    def slow_put(key: str, value: bytes, meta: dict[str, Any]) -> str:
        seen.append(("put", meta["node"]))
        if meta["node"] == "first":
            uploading.set()
            time.sleep(0.3)
            uploading.clear()
        return put(key, value, meta)

    store.put = slow_put  # type: ignore[method-assign]
    ticks: list[int] = []
    result = _graph(ticks, uploading).run(store=store, concurrency=2)
    assert result.ok, result.errors
    assert ("put", "first") in seen
    assert ticks, "the event loop stood still while the checkpoint uploaded"


def test_a_local_store_stays_inline(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    store = _watch(Store(tmp_path / "st"), seen)
    g = Graph("local")
    g.add_step("a", lambda: 1)
    assert g.run(store=store).ok
    assert seen and all(thread == "MainThread" for _, thread in seen)


class _Watched:
    """A remote trace file that records the thread of every write, flush and close."""

    def __init__(self, inner: Any, seen: list[tuple[str, str]]) -> None:
        self.inner, self.seen = inner, seen

    def write(self, data: bytes) -> int:
        self.seen.append(("write", threading.current_thread().name))
        return int(self.inner.write(data))

    def flush(self) -> None:
        self.seen.append(("flush", threading.current_thread().name))
        self.inner.flush()

    def close(self) -> None:
        self.seen.append(("close", threading.current_thread().name))
        self.inner.close()


def test_a_remote_stores_trace_is_written_off_the_event_loop() -> None:
    seen: list[tuple[str, str]] = []
    store = Store(f"memory://trace-{os.getpid()}-{time.time_ns()}")
    open_trace = store.open_trace
    store.open_trace = lambda run_id: _Watched(open_trace(run_id), seen)  # type: ignore[method-assign]
    g = Graph("traced")

    async def pause() -> int:
        await asyncio.sleep(0.5)  # long enough for the run's periodic trace flushes
        return 1

    g.add_step("a", pause)
    g.add_step("b", lambda a: a + 1)
    result = g.run(store=store)
    assert result.ok, result.errors
    assert {op for op, _ in seen} == {"write", "flush", "close"}
    assert all(thread != "MainThread" for _, thread in seen), seen
    events = [e["event"] for e in store.read_trace(result.run_id)]
    assert events[0] == "run_start" and events[-1] == "run_end"
    assert events.count("node_complete") == 2
