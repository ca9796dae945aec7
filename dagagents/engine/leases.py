"""Leases: two runs sharing a store never pay twice for a node one of them is computing.

Before computing a node whose checkpoint is missing, a run claims the node's key: it either
gets the lease (a file beside the object, see `Store.try_lease`) and computes, or finds another
live process holding it and waits until that process has stored the output (then it is a
checkpoint hit) or has given the lease up (failed, killed, expired: then this run claims it).
Holders beat every `LEASE_TTL / 4` seconds, so a killed holder blocks nobody for long (on the
same machine not at all: its pid is gone). Stores other than local directories are not leased.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from dagagents.store import Store
from dagagents.store.store import LEASE_TTL, Lease

T = TypeVar("T")


class Leases:
    """The leases one run holds, and the one heartbeat that keeps them all alive."""

    def __init__(self, store: Store, *, ttl: float = LEASE_TTL) -> None:
        self.store = store
        self.ttl = ttl
        self.enabled = store.is_local
        self.held: dict[str, Lease] = {}
        self._beat = time.monotonic()

    async def claim(
        self,
        key: str,
        found: Callable[[], T | None],
        *,
        poll: float = 0.05,
        max_poll: float = 0.5,
    ) -> T | None:
        """None when this run now holds `key`'s lease (compute, store, then `release`);
        otherwise what `found` returned once another process stored the output."""
        if not self.enabled:
            return None
        delay = poll
        while True:
            lease = self.store.try_lease(key, ttl=self.ttl)
            if lease is not None:
                # The holder may have stored the output between our lookup and our lease.
                got = found()
                if got is not None:
                    lease.release()
                    return got
                self.held[key] = lease
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, max_poll)
            got = found()
            if got is not None:
                return got

    def release(self, key: str | None) -> None:
        """Give up `key`'s lease (after its output is stored, or the node failed)."""
        if key is None:
            return
        lease = self.held.pop(key, None)
        if lease is not None:
            lease.release()

    def heartbeat(self) -> None:
        """Touch every held lease, at most every ttl/4 (call it as often as convenient)."""
        now = time.monotonic()
        if now - self._beat < self.ttl / 4:
            return
        self._beat = now
        for lease in list(self.held.values()):
            lease.heartbeat()

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(key)
