"""The executor protocol: run one node body somewhere and hand back its value."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from dagagents.engine.invoke import AgentResult, CallContext
from dagagents.model.nodes import AgentTask, Step
from dagagents.store import Store


@runtime_checkable
class Executor(Protocol):
    """Runs Step and agent bodies. Implementations: local asyncio (default), Dask."""

    name: str

    async def start(self, concurrency: int) -> None:
        """Acquire resources sized for `concurrency` parallel nodes."""

    async def run_step(self, spec: Step, kwargs: dict[str, Any]) -> Any:
        """Call the step's function with its dependency outputs."""

    async def run_agent(self, spec: AgentTask, prompt: str, ctx: CallContext) -> AgentResult:
        """Invoke the node's agent on the rendered prompt via `spec.call(prompt, ctx)`
        (never `invoke_agent` directly: node kinds such as the planner wrap the call)."""

    async def close(self) -> None:
        """Release resources; must not wait for abandoned (timed-out) work."""


class RemoteExecutor(Protocol):
    """Optional hooks the runtime looks up with `getattr` (the Dask executor has both).

    `prepare` runs before anything is written or started: it may refuse the run (a store the
    executor's workers cannot reach) with a UserError. `run_step_stored` runs a Step where it
    executes and checkpoints its output from there, so the result lands in the store even if
    the driver never receives it; the runtime then skips its own write.
    """

    async def prepare(self, store: Store | None, concurrency: int) -> None: ...

    async def run_step_stored(
        self, spec: Step, kwargs: dict[str, Any], store: Store, key: str, meta: dict[str, Any]
    ) -> tuple[Any, str]:
        """Return the step's value and the digest of its stored output."""
        ...
