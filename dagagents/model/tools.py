"""Python functions as model tools: JSON schemas from type hints and docstrings (via pydantic).

A tool's schema is part of its agent's fingerprint, so editing a tool's signature or docstring
invalidates the checkpoints of the nodes that can call it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, create_model


def _doc_summary(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.strip()


@cache
def input_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of the function's parameters, used to validate the model's tool input."""
    sig = inspect.signature(fn)
    try:
        hints = get_type_hints(fn)
    except Exception:  # unresolved forward references: fall back to Any
        hints = {}
    fields: dict[str, Any] = {}
    for pname, param in sig.parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(pname, Any)
        default = ... if param.default is param.empty else param.default
        fields[pname] = (annotation, default)
    return create_model(f"{fn.__name__}_input", __config__=ConfigDict(extra="forbid"), **fields)


def tool_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The Messages API tool definition for one function."""
    schema = input_model(fn).model_json_schema()
    schema.pop("title", None)
    return {
        "name": fn.__name__,
        "description": _doc_summary(fn) or fn.__name__.replace("_", " "),
        "input_schema": schema,
    }


def tool_schemas(tools: Sequence[Callable[..., Any]]) -> list[dict[str, Any]]:
    return [tool_schema(t) for t in tools]
