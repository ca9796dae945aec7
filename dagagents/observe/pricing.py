"""Dollars per call: a per-model price table (data file, user-overridable) and `cost_usd`.

Prices live in `dagagents/data/pricing.json` so they can be corrected without a release: point
`DAGAGENTS_PRICING` (or the `path` argument) at a JSON file of the same shape and its entries are
merged field by field over the defaults. The same table carries two facts the request builder
needs per model: the minimum cacheable prompt length and whether native structured outputs exist.
`batch` is the Message Batches price as a fraction of the standard one (0.5: half price for
input, output and the cache prices, which stack on it).
"""

from __future__ import annotations

import logging
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from dagagents.errors import UserError
from dagagents.providers.base import Usage

ENV_VAR = "DAGAGENTS_PRICING"
_MTOK = 1_000_000.0
# A key matches itself or itself plus a dated snapshot (`-20250929`, `@20250929`), never a
# newer minor version: `claude-opus-4` must not price `claude-opus-4-6`.
_SNAPSHOT = re.compile(r"^([-@]\d{8}.*|-latest|-v\d+(:\d+)?)?$")
log = logging.getLogger(__name__)


class ModelPrice(BaseModel):
    """USD per million tokens for one model, plus the request-shaping facts we need."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    input: float
    output: float
    cache_write: float
    cache_read: float
    min_cache_tokens: int = 1024
    structured_outputs: bool = True
    # Message Batches price as a fraction of the standard one (cache prices stack on it).
    batch: float = 0.5

    def cost(self, usage: Usage, batch: bool = False) -> float:
        dollars = (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_creation_input_tokens * self.cache_write
            + usage.cache_read_input_tokens * self.cache_read
        ) / _MTOK
        return dollars * self.batch if batch else dollars

    def savings(self, usage: Usage, batch: bool = False) -> tuple[float, float]:
        """(saved by caching, saved by batching) in dollars for one call, against the same
        call uncached at the standard price. Caching can save a negative amount: a cache
        write nobody read costs more than plain input."""
        uncached = (
            (usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens)
            * self.input
            + usage.output_tokens * self.output
        ) / _MTOK
        standard = self.cost(usage)
        by_cache = (uncached - standard) * (self.batch if batch else 1.0)
        by_batch = standard - self.cost(usage, batch) if batch else 0.0
        return by_cache, by_batch


class Pricing:
    """A price table. Unknown models cost 0.0 (with one warning); `lookup` tells them apart."""

    def __init__(self, models: dict[str, ModelPrice]) -> None:
        self.models = dict(models)
        # Longest key first so `claude-opus-4-1` wins over `claude-opus-4`.
        self._keys = sorted(self.models, key=len, reverse=True)
        self._memo: dict[str, ModelPrice | None] = {}
        self._warned: set[str] = set()

    @classmethod
    def load(cls, path: str | Path | None = None) -> Pricing:
        """Defaults, then the file in `$DAGAGENTS_PRICING`, then `path` (later wins per field)."""
        raw = _read_json(resources.files("dagagents") / "data" / "pricing.json", "built-in")
        batch = float(raw.get("batch", 0.5))
        table: dict[str, dict[str, Any]] = {
            k: {"batch": batch, **v} for k, v in raw["models"].items()
        }
        for extra in (os.environ.get(ENV_VAR) or None, path):
            if extra is None:
                continue
            data = _read_json(Path(extra), str(extra))
            entries = data.get("models", data) if isinstance(data, dict) else None
            if not isinstance(entries, dict):
                raise UserError(f"pricing file {extra}: expected an object of models.")
            for name, fields in entries.items():
                if name in ("version", "unit", "source", "matching", "batch"):
                    continue
                if not isinstance(fields, dict):
                    raise UserError(f"pricing file {extra}: model '{name}' must map to an object.")
                table[name] = {**table.get(name, {}), **fields}
        models: dict[str, ModelPrice] = {}
        for name, fields in table.items():
            try:
                models[name] = ModelPrice.model_validate(fields)
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise UserError(f"pricing for model '{name}': {where}: {first['msg']}.") from None
        return cls(models)

    def lookup(self, model: str) -> ModelPrice | None:
        """The entry for `model`: exact id or a dated snapshot of a known id."""
        try:
            return self._memo[model]
        except KeyError:
            pass
        found = None
        for key in self._keys:
            if model.startswith(key) and _SNAPSHOT.match(model[len(key) :]):
                found = self.models[key]
                break
        self._memo[model] = found
        return found

    def cost_usd(self, model: str, usage: Usage, batch: bool = False) -> float:
        price = self.lookup(model)
        if price is None:
            if model not in self._warned:
                self._warned.add(model)
                log.warning("no price known for model %r; its cost counts as $0", model)
            return 0.0
        return price.cost(usage, batch)

    def savings(self, model: str, usage: Usage, batch: bool = False) -> tuple[float, float]:
        """(by caching, by batching) dollars saved on one call; zeros for unknown models."""
        price = self.lookup(model)
        return (0.0, 0.0) if price is None else price.savings(usage, batch)

    def worst_case_usd(
        self, model: str, input_tokens: int, max_output_tokens: int, batch: bool = False
    ) -> float | None:
        """Most a call could cost (all input uncached, every output token used); None if unknown."""
        price = self.lookup(model)
        if price is None:
            return None
        dollars = (input_tokens * price.input + max_output_tokens * price.output) / _MTOK
        return dollars * price.batch if batch else dollars


def _read_json(source: Any, label: str) -> Any:
    try:
        return orjson.loads(source.read_bytes())
    except FileNotFoundError:
        raise UserError(f"pricing file {label} does not exist.") from None
    except orjson.JSONDecodeError as e:
        raise UserError(f"pricing file {label} is not valid JSON: {e}.") from None


@cache
def _default(env_value: str | None) -> Pricing:
    return Pricing.load()


def default_pricing() -> Pricing:
    """The built-in table plus `$DAGAGENTS_PRICING`, loaded once per distinct env value."""
    return _default(os.environ.get(ENV_VAR) or None)


def cost_usd(
    model: str, usage: Usage, pricing: Pricing | None = None, batch: bool = False
) -> float:
    """Dollars for one call's usage (cache writes and reads priced as such; batch rate)."""
    return (pricing or default_pricing()).cost_usd(model, usage, batch)
