"""One retry policy for every provider call (tenacity), so retries are counted and traced once.

The SDK's own retries are off (`max_retries=0`); this policy decides. It retries only what can
succeed on a second try (`ProviderError.retryable`: 429, 529, 5xx, timeouts, dropped
connections), waits what the server asked for (`retry-after`), otherwise backs off
exponentially with jitter, and emits a `retry` trace event before each wait.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from dagagents.errors import ProviderError, UserError
from dagagents.observe.trace import Emit, no_emit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from dagagents.model.agents import Agent

T = TypeVar("T")
_RNG = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential backoff honouring retry-after. `max_attempts` counts the first try.

    `timeout` (seconds) bounds each attempt's provider call; `None` leaves the provider's own.
    `max_retry_after` guards against waiting hours: a server asking for longer fails at once.
    """

    max_attempts: int = 8
    initial: float = 0.5
    multiplier: float = 2.0
    max_wait: float = 30.0
    timeout: float | None = None
    max_retry_after: float = 300.0
    seed: int | None = None

    def __post_init__(self) -> None:
        # nan/inf/0 would make every attempt time out at once or never (see limits.check_limit).
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise UserError(
                f"RetryPolicy: max_attempts must be a whole number, got {self.max_attempts!r}."
            )
        if self.max_attempts < 1:
            raise UserError(
                f"RetryPolicy: max_attempts must be at least 1, got {self.max_attempts}."
            )
        if self.timeout is not None and not (
            isinstance(self.timeout, int | float)
            and math.isfinite(self.timeout)
            and self.timeout > 0
        ):
            raise UserError(
                f"RetryPolicy: timeout must be a positive finite number of seconds, got {self.timeout!r}."
            )

    def for_agent(self, agent: Agent) -> RetryPolicy:
        """This policy with the agent's own attempts (`Agent.retries`) and timeout, if set."""
        changes: dict[str, Any] = {}
        if agent.retries is not None:
            changes["max_attempts"] = agent.retries
        if agent.timeout is not None:
            changes["timeout"] = agent.timeout
        return replace(self, **changes) if changes else self

    def should_retry(self, error: BaseException) -> bool:
        if not isinstance(error, ProviderError) or not error.retryable:
            return False
        return error.retry_after is None or error.retry_after <= self.max_retry_after

    def wait_seconds(self, attempt: int, error: BaseException | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        retry_after: float | None = getattr(error, "retry_after", None)
        if retry_after is not None and retry_after > 0:
            # Never sooner than asked; a little later so retries do not arrive in lockstep.
            return retry_after + rng.uniform(0.0, min(1.0, 0.1 * retry_after + 0.05))
        base = min(self.max_wait, self.initial * self.multiplier ** (attempt - 1))
        return base / 2 + rng.uniform(0.0, base / 2)  # "equal jitter"

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        node: str | None = None,
        emit: Emit = no_emit,
    ) -> T:
        """Run `fn` until it succeeds, fails for good, or attempts run out (last error raised).

        The first attempt runs bare (most calls succeed, and tenacity costs ~50 us a call);
        after a retryable failure tenacity drives the remaining attempts.
        """
        try:
            return await fn()
        except Exception as exc:
            if self.max_attempts <= 1 or not self.should_retry(exc):
                raise
            first: BaseException = exc
        rng = random.Random(self.seed) if self.seed is not None else _RNG
        pause = self.wait_seconds(1, first, rng)
        self._trace(emit, node, 1, first, pause)
        await asyncio.sleep(pause)
        # Imported here: tenacity costs ~25 ms of start-up and only a retry needs it.
        from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

        def wait(state: RetryCallState) -> float:
            err = state.outcome.exception() if state.outcome else None
            return self.wait_seconds(state.attempt_number + 1, err, rng)

        def before_sleep(state: RetryCallState) -> None:
            err = state.outcome.exception() if state.outcome else None
            self._trace(emit, node, state.attempt_number + 1, err, state.upcoming_sleep)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts - 1),
            wait=wait,
            retry=retry_if_exception(self.should_retry),
            before_sleep=before_sleep,
            reraise=True,
        )
        return await retrying(fn)

    @staticmethod
    def _trace(
        emit: Emit, node: str | None, attempt: int, err: BaseException | None, wait: float
    ) -> None:
        emit(
            "retry",
            node=node,
            attempt=attempt,
            error=str(err),
            status=getattr(err, "status", None),
            kind=getattr(err, "kind", None),
            wait=round(wait, 3),
        )


@asynccontextmanager
async def deadline(seconds: float | None, what: str) -> AsyncIterator[None]:
    """Bound one attempt; a timeout becomes a retryable `ProviderError(kind="timeout")`."""
    if seconds is None:
        yield
        return
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise ProviderError(
            f"{what} timed out after {seconds:g} s", retryable=True, kind="timeout"
        ) from None


DEFAULT_RETRY = RetryPolicy()
