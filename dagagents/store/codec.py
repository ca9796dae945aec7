"""Node outputs to exact bytes and back.

Exact, not canonical: `decode(encode(x)) == x` with dict key order, int vs float, unicode and
nesting preserved, because a resumed run must hand downstream nodes what a fresh run did (a step
that joins a dict's keys renders the same prompt either way). The output digest is the sha256 of
these bytes, so it covers exactly what downstream nodes receive; equal outputs still have equal
digests, which is what lets an identical upstream rerun invalidate nothing (early cutoff).
Pydantic models, also inside lists and dicts, round-trip to the same type. What orjson cannot
hold exactly (integers beyond 64 bits, NaN and infinities) is written by the standard library's
`json` behind a marker byte instead of being rounded or turned into null.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import sys
import typing
from typing import Any

import orjson
from pydantic import BaseModel

# numpy arrays are encoded natively, but orjson imports numpy (~0.1 s) the first time it meets
# any non-JSON object (a pydantic output) under this option; a value can only hold an array
# once numpy is loaded, so the option is passed only then.
_OPTS = orjson.OPT_SERIALIZE_NUMPY
_PYDANTIC = "__dagagents_pydantic__"
_PYDANTIC_BYTES = b'"' + _PYDANTIC.encode() + b'"'
# Prefix of bodies written by the standard library's json (never valid JSON, so an orjson
# body can never be mistaken for one).
_STDLIB = b"\x1fjson\n"


class NotSerialisable(TypeError):
    """An output that cannot be stored; the message names the offending type."""


class UnknownModel(ValueError):
    """A stored pydantic output whose class cannot be found in this process."""


def _tag(obj: Any) -> Any:
    """orjson `default`: pydantic models become tagged dicts; anything else is refused."""
    if isinstance(obj, BaseModel):
        cls = type(obj)
        return {
            _PYDANTIC: f"{cls.__module__}:{cls.__qualname__}",
            "data": obj.model_dump(mode="json"),
        }
    raise TypeError(f"Type is not JSON serializable: {type(obj).__name__}")


def encode(value: Any) -> bytes:
    """Exact JSON bytes of an output, keys in their own order (pydantic models are tagged
    with their class)."""
    if value is None:  # what most steps that only cause effects return
        return b"null"
    try:
        data = orjson.dumps(value, default=_tag, option=_OPTS if "numpy" in sys.modules else 0)
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise NotSerialisable(_describe(value, exc)) from None
        return _encode_stdlib(value)
    # orjson writes NaN and the infinities as null; only look when a null is there at all.
    if b"null" in data and _has_non_finite(value):
        return _encode_stdlib(value)
    return data


def _encode_stdlib(value: Any) -> bytes:
    """The rare output orjson would change: big integers, NaN, infinities."""
    _check_keys(value)
    try:
        text = json.dumps(value, default=_tag, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise NotSerialisable(_describe(value, TypeError(str(exc)))) from None
    return _STDLIB + text.encode("utf-8", "surrogatepass")


def _check_keys(value: Any) -> None:
    """The standard library turns int, float, bool and None keys into strings silently;
    orjson refuses them, and so must this path (or `decode` would not give `value` back)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise NotSerialisable(
                    f"an output with a dict key of type {type(k).__name__}, which is not "
                    "JSON-serialisable (dict keys must be strings)"
                )
            _check_keys(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_keys(v)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    if isinstance(value, BaseModel):
        return _has_non_finite(value.model_dump())
    return False


def _describe(value: Any, exc: TypeError) -> str:
    """'an output of type X[ containing a Y], which ...' for the error that names the node."""
    text = str(exc)
    outer = type(value).__name__
    if "not JSON serializable" in text:
        inner = text.split("not JSON serializable:")[-1].strip() or outer
        what = outer if inner == outer else f"{outer} containing a {inner}"
        return (
            f"an output of type {what}, which is not JSON-serialisable "
            "(return JSON data or a pydantic model)"
        )
    return f"an output of type {outer} that cannot be stored ({text})"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, hint: type[BaseModel] | Hint | None = None) -> Any:
    """Inverse of `encode`. `hint` is the expected model class when the caller knows it
    (a Step's return annotation, an agent's output model): it finds classes that cannot be
    imported by name, such as ones defined inside a function. Raises UnknownModel if a
    stored model's class cannot be found, so the caller recomputes rather than hand a dict
    to code that expects the model."""
    value = decode_json(data)
    if _PYDANTIC_BYTES not in data:  # the common case: no models, no walk
        return value
    return _untag(value, hint.resolve() if isinstance(hint, Hint) else hint)


def decode_json(data: bytes) -> Any:
    """The stored JSON value as it is, pydantic class tags included (for viewers that show
    an output without importing the user's classes)."""
    if data.startswith(_STDLIB):
        return json.loads(data[len(_STDLIB) :].decode("utf-8", "surrogatepass"))
    return orjson.loads(data)


def _untag(value: Any, hint: type[BaseModel] | None) -> Any:
    if isinstance(value, list):
        return [_untag(v, hint) for v in value]
    if not isinstance(value, dict):
        return value
    if _PYDANTIC in value and len(value) == 2 and "data" in value:
        cls = _resolve(value[_PYDANTIC], hint)
        # Nested models are rebuilt by the outer model's own validation.
        return cls.model_validate(value["data"])
    return {k: _untag(v, hint) for k, v in value.items()}


def _resolve(path: str, hint: type[BaseModel] | None) -> type[BaseModel]:
    if hint is not None and f"{hint.__module__}:{hint.__qualname__}" == path:
        return hint
    cls = _import_class(path)
    if cls is None:
        raise UnknownModel(f"pydantic class {path} of a stored output cannot be found")
    return cls


def _import_class(path: str) -> type[BaseModel] | None:
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except Exception:  # missing, or fails to import: the output cannot be rebuilt
            return None
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, type) and issubclass(obj, BaseModel) else None


class Hint:
    """The pydantic class a node declares it returns, looked up only when a stored output
    actually holds a model (most don't, and a 10,000-node resume asks 10,000 times)."""

    __slots__ = ("_spec",)

    def __init__(self, spec: Any) -> None:
        self._spec = spec

    def resolve(self) -> type[BaseModel] | None:
        """An agent's `output`, or a Step's return annotation (also `list[Model]`,
        `dict[str, Model]`)."""
        agent = getattr(self._spec, "agent", None)
        if agent is not None:
            return getattr(agent, "output", None)
        fn = getattr(self._spec, "fn", None)
        if fn is None:
            return None
        ann = _return_annotation(inspect.unwrap(fn))
        for candidate in (ann, *typing.get_args(ann)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                return candidate
        return None


def output_hint(spec: Any) -> Hint:
    """A lazy hint for `decode`: the model class `spec` declares it returns."""
    return Hint(spec)


def _return_annotation(fn: Any) -> Any:
    """The evaluated return annotation; string annotations (`from __future__ import
    annotations`) are resolved like typing does, plus the function's closure, so a model
    class defined in an enclosing function is found too."""
    ann = getattr(fn, "__annotations__", {}).get("return")
    if not isinstance(ann, str):
        return ann
    try:
        namespace = dict(getattr(fn, "__globals__", {}))
        namespace.update(inspect.getclosurevars(fn).nonlocals)
        return eval(ann, namespace)  # noqa: S307 - the user's own annotation, as typing does
    except Exception:  # unresolvable: fall back to finding the class by name
        return None


def as_text(value: Any) -> str:
    """How an output appears inside a downstream prompt."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    try:
        return orjson.dumps(value, default=_plain, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return str(value)


def _plain(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    raise TypeError
