"""Complete items of a JSON list that is still being written (a streamed structured output).

A streamed reply is parsed with pydantic_core's partial mode (`from_json(..., allow_partial=
"trailing-strings")`), never by hand. Partial parsing returns a truncated last element as if
it were whole (`[{"id": "a", "task": "do` reads as `[{"id": "a", "task": "do"}]`), so an item
counts as complete only once the parser has seen the next item begin or the list close (a key
after it in the enclosing object, or the whole reply parsing as strict JSON).
"""

from __future__ import annotations

from typing import Any

import pydantic_core


def complete_items(text: str, field: str | None = None) -> tuple[list[Any], bool]:
    """The items of the list at `field` of the top-level object (or the top-level list when
    `field` is None) whose JSON is complete in `text`, and whether the list is closed.

    `([], False)` while nothing usable has arrived (empty text, not JSON yet, the field not
    started, or not a list). A leading Markdown fence (```json) is tolerated, as the final
    parse tolerates it."""
    body = _unfenced(text)
    if not body:
        return [], False
    try:
        value = pydantic_core.from_json(body, allow_partial="trailing-strings")
    except ValueError:
        return [], False
    if field is None:
        items, closed = value, False
    else:
        if not isinstance(value, dict) or field not in value:
            return [], False
        items = value[field]
        keys = list(value)
        closed = keys.index(field) < len(keys) - 1  # a later key: the list was closed
    if not isinstance(items, list):
        return [], False
    if not closed and body.endswith(("}", "]")):  # only then can it be whole
        closed = _strict(body)
    return (list(items) if closed else list(items[:-1])), closed


def _strict(body: str) -> bool:
    """True when `body` is already complete JSON (so every list in it is closed)."""
    try:
        pydantic_core.from_json(body)
    except ValueError:
        return False
    return True


def _unfenced(text: str) -> str:
    body = text.lstrip()
    if body.startswith("```"):
        body = body[3:]
        if body.startswith("json"):
            body = body[4:]
        end = body.rfind("```")
        if end != -1:
            body = body[:end]
    return body.strip()


__all__ = ["complete_items"]
