"""A provider built in a background thread from the moment it is chosen.

The Anthropic SDK takes 1-5 s to import. A run that names the provider (or finds an API key)
must not make every node wait for that: steps start at once, and only an agent call waits, for
whatever of the import is left when it needs the provider.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any

from dagagents.providers.base import Capabilities, Provider, Request, Response


class DeferredProvider:
    """Stands in for the provider `build()` returns, which a daemon thread builds at once."""

    def __init__(
        self,
        name: str,
        capabilities: Capabilities,
        build: Callable[[], Provider],
        limits_key: str | None = None,
    ) -> None:
        self.name = name
        self.capabilities = capabilities
        self.limits_key = limits_key  # declared up front: asking must not wait for the import
        self._built: concurrent.futures.Future[Provider] = concurrent.futures.Future()
        threading.Thread(
            target=self._build, args=(build,), name=f"dagagents-load-{name}", daemon=True
        ).start()

    def _build(self, build: Callable[[], Provider]) -> None:
        try:
            self._built.set_result(build())
        except BaseException as exc:  # raised where the provider is first needed
            self._built.set_exception(exc)

    def resolve(self) -> Provider:
        """The real provider (waits for the import if it is still running)."""
        return self._built.result()

    async def aresolve(self) -> Provider:
        """The real provider, awaited without blocking the loop."""
        return await asyncio.wrap_future(self._built)

    async def complete(self, request: Request, **options: Any) -> Response:
        provider = await asyncio.wrap_future(self._built)
        return await provider.complete(request, **options)

    async def aclose(self) -> None:
        if self._built.done() and self._built.exception() is None:
            await self._built.result().aclose()

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.resolve(), attr)

    def __repr__(self) -> str:
        return f"DeferredProvider({self.name!r})"


def resolved(provider: Any) -> Any:
    """The real provider behind a deferred one (waiting for its import), any other as it is:
    for the callers that reach past `complete` to the SDK or to the provider's class."""
    return provider.resolve() if isinstance(provider, DeferredProvider) else provider
