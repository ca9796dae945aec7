"""Complete items of a JSON list that is still being written (a streamed structured output).

An item counts as complete only once the next item begins or the list closes (a truncated
last element, `[{"id": "a", "task": "do`, is not an item yet).

`ListReader` is what streams use: fed only the new text of each delta, it keeps where the
current item began and drops what came before, so the cost per delta stays flat however long
the list grows. Neither pydantic_core nor jiter reports where a value ends (their partial mode
returns values, never offsets), so it finds item boundaries with a small scan over the new
text (strings and escapes skipped by regex, bracket depth counted) and leaves every value to
pydantic_core: each complete item's own text is parsed once, strictly.

`complete_items` is the one-shot form, pydantic_core's partial mode over the whole reply so
far (`from_json(..., allow_partial="trailing-strings")`): its cost grows with the reply, so a
stream calling it on every delta was quadratic in the list's length. It counts the list's last
item only once a key follows the list or the whole reply parses; the tests check the reader
against it.
"""

from __future__ import annotations

import re
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


# ------------------------------------------------------------------ incremental
# Outside a string, the characters that change structure; inside one, its end or an escape.
_STRUCTURE = re.compile(r'[\[\]{}",:]')
_IN_STRING = re.compile(r'["\\]')
_NON_SPACE = re.compile(r"\S")
_FENCES = ("```json", "```")


class ListReader:
    """Reads the list at `field` of a streamed JSON reply (or the top-level list when `field`
    is None) delta by delta: `feed(delta)` returns the items that became complete, each once.

    The same items as `complete_items` on the reply so far, at a cost per delta that does not
    grow with the list: neither pydantic_core nor jiter report where a value ends, so a small
    scan over the new text only (strings and escapes skipped with a regex, bracket depth)
    finds the item boundaries, and pydantic_core parses each complete item's own text. Text
    before the current item is dropped, so memory stays one item long too.

    An item is complete once the next item begins (its first character after the comma) or
    the list closes (`closed`, its `]`). Invalid JSON, or a reply that is not an object with
    `field` (or a list), stops the reader (`stopped`): what came before stays, the rest waits
    for the whole reply. A leading Markdown fence (```json) is tolerated; whatever follows
    the closed list (a closing fence, other keys) is never read. `restart()` forgets the reply
    (a retried or repaired reply starts over)."""

    def __init__(self, field: str | None = None) -> None:
        self.field = field
        self.restart()

    def restart(self) -> None:
        self.items: list[Any] = []
        self.closed = False
        self.stopped = False
        self._buf = ""  # unread text, from the current item (or the scan point) on
        self._pos = 0  # where scanning resumes in _buf
        self._depth = 0  # containers open at _pos (the top-level one is depth 1)
        self._started = False  # the top-level value began
        self._list_depth = 0  # depth inside the target list, once found
        self._in_string = False
        self._string_start = 0
        self._key_next = False  # at depth 1 of the object: the next string is a key
        self._key: str | None = None  # the last key read at depth 1
        self._want_list = False  # after `field:`: the value must be a list
        self._item_start: int | None = None  # the current item's first character
        self._pending: str | None = None  # an item ended by a comma, awaiting the next

    @property
    def done(self) -> bool:
        """Nothing more can come from this reply: the list closed or the reader stopped."""
        return self.closed or self.stopped

    def feed(self, delta: str) -> list[Any]:
        """The items completed by `delta` (the next piece of the reply), in list order."""
        if self.done or not delta:
            return []
        self._buf += delta
        before = len(self.items)
        if not self._started:
            self._start()
        if self._started and not self.done:
            self._scan()
        self._trim()
        return self.items[before:]

    def _start(self) -> None:
        """Find the top-level value after an optional fence: `{` (with a field) or `[`."""
        buf = self._buf
        at = min((i for i in (buf.find("{"), buf.find("[")) if i != -1), default=-1)
        head = (buf if at == -1 else buf[:at]).strip()
        if at == -1:
            if not any(f.startswith(head) or head.startswith(f) for f in _FENCES):
                self.stopped = True  # not JSON, nor a fence still arriving
            return
        if head not in ("", *_FENCES) or (buf[at] == "{") != (self.field is not None):
            self.stopped = True
            return
        self._started = True
        self._buf, self._pos, self._depth = buf[at + 1 :], 0, 1
        if self.field is None:
            self._open_list()
        else:
            self._key_next = True

    def _open_list(self) -> None:
        self._list_depth = self._depth
        self._item_start = None
        self._begin_item()

    def _begin_item(self) -> None:
        """After `[` or a comma in the list: the next item begins at the next non-space."""
        found = _NON_SPACE.search(self._buf, self._pos)
        if found is None:
            self._pos = len(self._buf)
            return
        self._pos = found.start()
        if self._buf[self._pos] == "]":
            if self._pending is not None:  # `[1, ]`: not JSON
                self.stopped = True
            return  # an empty list: `]` is read by the scan
        self._item_start = self._pos
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._accept(pending)

    def _accept(self, text: str) -> None:
        if self.stopped:
            return
        try:
            self.items.append(pydantic_core.from_json(text))
        except ValueError:
            self.stopped = True  # this item and everything after it wait for the whole reply

    def _scan(self) -> None:
        """Read on from `_pos` until the text runs out or the reader is done; each step
        returns False when it must wait for more text."""
        while not self.done:
            if self._in_string:
                more = self._string()
            elif self._item_start is None and self._list_depth == self._depth:
                self._begin_item()  # after `[` or a comma: waiting for the next item
                more = self._item_start is not None or self._pos < len(self._buf)
                more = more and self._structure()
            elif self._want_list:
                more = self._list_value()
            else:
                more = self._structure()
            if not more:
                return

    def _string(self) -> bool:
        """Inside a string: skip to its end (escapes included); a key at depth 1 is kept."""
        buf = self._buf
        found = _IN_STRING.search(buf, self._pos)
        if found is None:
            self._pos = len(buf)
            return False
        at = found.start()
        if buf[at] == "\\":
            if at + 1 >= len(buf):
                self._pos = at  # the escaped character has not arrived yet
                return False
            self._pos = at + 2
            return True
        self._in_string = False
        self._pos = at + 1
        if self._key_next and self._depth == 1:
            self._key_next = False
            raw = buf[self._string_start : at + 1]
            try:
                self._key = raw[1:-1] if "\\" not in raw else pydantic_core.from_json(raw)
            except ValueError:
                self.stopped = True
        return True

    def _list_value(self) -> bool:
        """After `field:`: the value must open a list."""
        found = _NON_SPACE.search(self._buf, self._pos)
        if found is None:
            self._pos = len(self._buf)
            return False
        self._want_list = False
        if self._buf[found.start()] != "[":
            self.stopped = True  # the field is not a list
            return False
        self._pos = found.start() + 1
        self._depth += 1
        self._open_list()
        return True

    def _structure(self) -> bool:
        """Outside strings: the next bracket, brace, quote, comma or colon."""
        buf = self._buf
        found = _STRUCTURE.search(buf, self._pos)
        if found is None:
            self._pos = len(buf)
            return False
        at = found.start()
        char = buf[at]
        self._pos = at + 1
        in_list = self._list_depth == self._depth  # directly inside the target list
        if char == '"':
            self._in_string, self._string_start = True, at
        elif char in "[{":
            self._depth += 1
        elif char == "]" and in_list:
            if self._item_start is not None:
                self._accept(buf[self._item_start : at])
            self.closed = not self.stopped
        elif char == "}" and in_list:
            self.stopped = True
        elif char in "]}":
            self._depth -= 1
            self.stopped = self._depth == 0  # the object closed without the list
        elif char == "," and in_list:
            if self._item_start is None:
                self.stopped = True  # `[,` or `1,,`: not JSON
            else:
                self._pending = buf[self._item_start : at]
                self._item_start = None
        elif self._depth == 1 and not self._list_depth:  # between the object's members
            if char == ",":
                self._key_next = True
            elif char == ":":
                self._want_list = self._key == self.field
        return True

    def _trim(self) -> None:
        """Drop the text nothing will read again (before the current item or string)."""
        if self.done:
            self._buf = ""
            return
        keep = self._pos
        if self._in_string:
            keep = min(keep, self._string_start)
        if self._item_start is not None:
            keep = min(keep, self._item_start)
        if keep:
            self._buf = self._buf[keep:]
            self._pos -= keep
            self._string_start -= keep
            if self._item_start is not None:
                self._item_start -= keep


__all__ = ["ListReader", "complete_items"]
