"""Errors a user sees. Each carries one sentence that names the file, node or field at fault.

`UserError` subclasses are mistakes in the user's input (exit code 2, no traceback);
`ProviderError` is what any provider raises for a failed call, so the retry policy can decide
without knowing which backend is in use.
"""

from __future__ import annotations

QUOTE_LIMIT = 200  # characters of any user- or model-supplied string quoted in a message


def clip(text: object, limit: int = QUOTE_LIMIT) -> str:
    """`text` cut to `limit` characters for quoting in an error message: a 1 MB node name or
    plan field must not become a 1 MB error (nor one a terminal takes minutes to print)."""
    s = str(text)
    if len(s) <= limit:
        return s
    return f"{s[:limit]}… ({len(s):,} characters)"


class DagAgentsError(Exception):
    """Base class of every error dagagents raises on purpose."""


class UserError(DagAgentsError):
    """Bad input from the user: a graph, a plan file, a flag. The CLI exits 2."""


class GraphError(UserError):
    """The graph is invalid: a cycle, an unknown dependency, a duplicate name, ..."""


class PlanError(UserError):
    """An orchestrator plan is invalid (also raised for malformed plan files)."""


class StoreError(UserError):
    """The checkpoint store cannot be used (unreachable, unknown run, ...)."""


class StoreUnwritable(DagAgentsError):
    """The store is full or read-only: what was computed could not be saved. Not a user
    error (exit 1, like a failed node): the outputs were fine, the disk was not."""

    def __init__(self, store: str, reason: str) -> None:
        super().__init__(f"store '{store}' is {reason}")
        self.store = store
        self.reason = reason  # "full" or "read-only"


class NodeFailed(DagAgentsError):
    """A node's body failed; the message names the node."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"node '{node}' failed: {message}")
        self.node = node
        self.reason = message


class BudgetExceeded(DagAgentsError):
    """Starting another call would exceed `max_cost_usd`."""


class ProviderError(DagAgentsError):
    """A provider call failed. `retryable` and `retry_after` drive the retry policy."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        kind: str = "api_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.kind = kind


class LimitsUnavailable(DagAgentsError):
    """The shared limits store (Redis) stayed unreachable past `limits_timeout`: the run stops.

    Calls already admitted finish and are checkpointed; no new call starts, because running on
    without the shared limits would silently exceed what the other processes on the key rely on.
    """
