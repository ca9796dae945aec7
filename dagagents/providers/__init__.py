"""Providers: where agent calls go. Anthropic when a key is set, else the offline simulator.

A provider turns one request into one response (text or tool calls, usage, headers) and declares
what it can do; retries, limits and checkpoints live in the engine.
May import: `dagagents.errors` only (never the store, the engine, the model or observe).
"""

from __future__ import annotations

import os

from dagagents.errors import UserError
from dagagents.providers.base import (
    ANTHROPIC_CAPABILITIES,
    Provider,
    Request,
    Response,
    Usage,
    key_digest,
)
from dagagents.providers.deferred import DeferredProvider
from dagagents.providers.simulated import Script, SimulatedProvider

__all__ = [
    "Provider",
    "Request",
    "Response",
    "Script",
    "SimulatedProvider",
    "Usage",
    "resolve_provider",
]


def resolve_provider(
    choice: str | Provider | None = None, simulator: Provider | None = None
) -> Provider:
    """A provider object from a name ('simulated' | 'anthropic'), an instance, or None (auto:
    Anthropic when ANTHROPIC_API_KEY is set, otherwise `simulator` or a default simulator)."""
    if choice is not None and not isinstance(choice, str):
        return choice
    if choice is None:
        choice = "anthropic" if os.environ.get("ANTHROPIC_API_KEY") else "simulated"
    if choice == "simulated":
        return simulator if simulator is not None else SimulatedProvider()
    if choice == "anthropic":
        if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
            raise UserError(
                "provider 'anthropic' needs ANTHROPIC_API_KEY to be set "
                "(unset it, or pass --provider simulated, to run offline)."
            )
        key = os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")
        return DeferredProvider("anthropic", ANTHROPIC_CAPABILITIES, _anthropic, key_digest(key))
    raise UserError(f"unknown provider '{choice}' (choose 'simulated' or 'anthropic').")


def _anthropic() -> Provider:
    """Imports the SDK (about a second, more on a busy machine): run in the background."""
    from dagagents.providers.anthropic import AnthropicProvider

    return AnthropicProvider()
