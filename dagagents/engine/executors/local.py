"""The default executor: async bodies on the event loop, sync steps in a run-sized thread pool.

The pool is sized to the run's concurrency (asyncio's default pool has only a handful of
threads, which would silently cap parallelism for sync steps).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dagagents.engine.executors.base import Executor
from dagagents.engine.invoke import AgentResult, CallContext, answer_task
from dagagents.model.nodes import AgentTask, Step, shape_of

# Sync steps running in a thread right now (thread id -> node name). A thread cannot be
# stopped from outside, so after Ctrl-C the CLI names what the process still waits for.
_RUNNING_STEPS: dict[int, str] = {}


def running_sync_steps() -> list[str]:
    """Names of sync steps whose functions are still running in a thread of this process."""
    return sorted(set(_RUNNING_STEPS.values()))


def _tracked(name: str, fn: Any, /, **kwargs: Any) -> Any:
    ident = threading.get_ident()
    _RUNNING_STEPS[ident] = name
    try:
        return fn(**kwargs)
    finally:
        _RUNNING_STEPS.pop(ident, None)


class LocalExecutor(Executor):
    """Runs everything in this process."""

    name = "local"

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._threads = 8

    async def start(self, concurrency: int) -> None:
        self._threads = max(1, min(concurrency, 256))

    def _get_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="dagagents-step")
        return self._pool

    def run_step(self, spec: Step, kwargs: dict[str, Any]) -> Awaitable[Any]:
        """An async step's own coroutine (awaited by the run: no frame of ours per node), or
        a sync step's call in the run's thread pool."""
        if shape_of(spec.fn).is_async:
            return spec.fn(**kwargs)  # type: ignore[no-any-return]
        call = functools.partial(
            contextvars.copy_context().run, _tracked, spec.name, spec.fn, **kwargs
        )
        return asyncio.get_running_loop().run_in_executor(self._get_pool(), call)

    async def run_agent(self, spec: AgentTask, prompt: str, ctx: CallContext) -> AgentResult:
        return await answer_task(spec, prompt, ctx)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
