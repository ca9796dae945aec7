"""The executor protocol: run one node body somewhere and hand back its value.

Executors subclass `Executor`, which declares every hook the run calls and gives the optional
ones (`prepare`, `run_step_stored`) defaults, so the run never probes for them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable

from dagagents.engine.invoke import AgentResult, CallContext
from dagagents.model.nodes import AgentTask, Step
from dagagents.store import Store


@runtime_checkable
class Executor(Protocol):
    """Runs Step and agent bodies. Implementations: local asyncio (default), Dask."""

    name: str

    async def prepare(self, store: Store | None, concurrency: int) -> None:
        """Runs before anything is written or started; may refuse the run in one sentence
        (UserError), e.g. a store the executor's workers cannot reach. Default: nothing."""
        return None

    async def start(self, concurrency: int) -> None:
        """Acquire resources sized for `concurrency` parallel nodes."""

    def run_step(self, spec: Step, kwargs: dict[str, Any]) -> Awaitable[Any]:
        """What to await for the step's output: its function called with its dependency
        outputs. An `async def` does; the local executor hands back an async step's own
        coroutine (no frame of its own per node)."""
        raise NotImplementedError(f"executor '{self.name}' runs no steps")

    async def run_step_stored(
        self, spec: Step, kwargs: dict[str, Any], store: Store, key: str, meta: dict[str, Any]
    ) -> tuple[Any, str | None]:
        """Run a Step whose output belongs under `key` in `store`. An executor that
        checkpoints where the body ran (so the output lands even if the driver never receives
        it) returns the stored digest; the default runs it and returns None, and the run
        stores the value itself."""
        return await self.run_step(spec, kwargs), None

    async def run_agent(self, spec: AgentTask, prompt: str, ctx: CallContext) -> AgentResult:
        """Answer the node's rendered prompt with `invoke.answer_task(spec, prompt, ctx)`
        (never `invoke_agent` directly: node kinds such as the planner ask more than once)."""

    async def close(self) -> None:
        """Release resources; must not wait for abandoned (timed-out) work."""
