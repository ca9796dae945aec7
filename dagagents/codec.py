"""Node outputs to canonical bytes and back.

Canonical (orjson, sorted keys) so that equal outputs have equal digests: that is what lets an
upstream rerun with an identical output invalidate nothing downstream (early cutoff).
Pydantic models round-trip to the same type.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from typing import Any

import orjson
from pydantic import BaseModel

_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY
_PYDANTIC = "__dagagents_pydantic__"


class NotSerialisable(TypeError):
    """An output that cannot be stored; the message names the offending type."""


def encode(value: Any) -> bytes:
    """Canonical JSON bytes of an output (pydantic models are tagged with their class)."""
    if isinstance(value, BaseModel):
        cls = type(value)
        value = {
            _PYDANTIC: f"{cls.__module__}:{cls.__qualname__}",
            "data": value.model_dump(mode="json"),
        }
    try:
        return orjson.dumps(value, option=_OPTS)
    except TypeError as exc:
        raise NotSerialisable(_describe(value, exc)) from None


def _describe(value: Any, exc: TypeError) -> str:
    text = str(exc)
    if "not JSON serializable" in text:
        kind = text.split("Type is not JSON serializable:")[-1].strip() or type(value).__name__
        return (
            f"output of type {kind} is not JSON-serialisable (return JSON data or a pydantic model)"
        )
    return f"output of type {type(value).__name__} cannot be stored: {text}"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, hint: type[BaseModel] | None = None) -> Any:
    """Inverse of `encode`; `hint` is the expected model class when the caller knows it."""
    value = orjson.loads(data)
    if isinstance(value, dict) and _PYDANTIC in value:
        cls = hint if hint is not None else _import_class(value[_PYDANTIC])
        return cls.model_validate(value["data"]) if cls is not None else value["data"]
    return value


def _import_class(path: str) -> type[BaseModel] | None:
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, type) and issubclass(obj, BaseModel) else None


def as_text(value: Any) -> str:
    """How an output appears inside a downstream prompt."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return str(value)
