"""Agent: who answers a task (model, system prompt, limits, tools, output schema).

An Agent is configuration only; `dagagents.engine.invoke` runs one invocation of it. Its fingerprint
is part of every checkpoint key, so changing any field that changes answers invalidates the
nodes that use it, and nothing else.
"""

from __future__ import annotations

import hashlib
import inspect
import types
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_WORKER_MODEL = "claude-sonnet-4-6"
DEFAULT_STRONG_MODEL = "claude-opus-4-6"


class Agent(BaseModel):
    """An LLM agent. `Agent("researcher", model=..., system=..., max_tokens=...)`."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True, extra="forbid")

    name: str
    model: str = DEFAULT_WORKER_MODEL
    system: str = ""
    max_tokens: int = Field(default=1024, gt=0)
    temperature: float | None = None
    # Python functions the model may call; schemas come from type hints and docstrings.
    tools: tuple[Callable[..., Any], ...] = ()
    # A pydantic model the reply must match; the node's output is then an instance of it.
    output: type[BaseModel] | None = None
    max_turns: int = Field(default=8, gt=0)
    # Per-agent overrides of the run's retry attempts and per-call timeout (seconds).
    retries: int | None = Field(default=None, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    # Extra request parameters (top_p, stop_sequences, ...), part of the fingerprint.
    params: dict[str, Any] = Field(default_factory=dict)
    # Long shared context (documents) sent before each task, each a prompt-cache breakpoint:
    # workers given the same documents write them to the cache once and read them after.
    cache: tuple[str, ...] = ()

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        super().__init__(**data)

    @field_validator("tools", mode="before")
    @classmethod
    def _tools_tuple(cls, v: Any) -> Any:
        return tuple(v) if isinstance(v, list) else v

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_tuple(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = (v,)
        v = tuple(v) if isinstance(v, list) else v
        if isinstance(v, tuple) and len(v) > 2:
            # The API allows 4 breakpoints: the system prompt's, these, and a tool loop's.
            raise ValueError(f"at most 2 cached documents per agent (got {len(v)})")
        return v

    def fingerprint(self) -> dict[str, Any]:
        """Everything about this agent that can change its answers (not its name)."""
        from dagagents.model.tools import tool_schemas  # local: tools imports pydantic machinery

        return {
            "model": self.model,
            "system": self.system,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "tools": tool_schemas(self.tools),
            "output": self.output.model_json_schema() if self.output is not None else None,
            "max_turns": self.max_turns,
            "params": self.params,
            **({"cache": list(self.cache)} if self.cache else {}),  # old keys stay valid
        }

    def with_(self, **changes: Any) -> Agent:
        """A copy with some fields changed (handy for per-graph model overrides)."""
        return self.model_copy(update=changes)


def source_hash(fn: Callable[..., Any]) -> str:
    """Hash of a function's source (falls back to its bytecode) for Step fingerprints."""
    target = inspect.unwrap(fn)
    try:
        text = inspect.getsource(target).encode()
    except (OSError, TypeError):  # exec'd or built at run time: no source file to read
        text = _stable_code(target)
    return hashlib.sha256(text).hexdigest()


def _stable_code(target: Any) -> bytes:
    """What a function without source runs, as bytes that do not change between processes.

    `repr` of a code object or of an instance includes a memory address, so a step defined
    with `exec` would get a new checkpoint key every run and never resume."""
    code = getattr(target, "__code__", None)
    if code is None:  # a callable instance: what its class's __call__ runs
        call = type(target).__call__  # steps are callables, so their class has one
        code = getattr(call, "__code__", None)
        if code is None:
            return f"{type(target).__module__}.{type(target).__qualname__}".encode()
    return _code_bytes(code)


def _code_bytes(code: types.CodeType) -> bytes:
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.append(_code_bytes(const))
        elif isinstance(const, frozenset):  # `x in {"a", "b"}`: set order follows hash seeds
            parts.append(repr(sorted(map(repr, const))).encode())
        else:
            parts.append(repr(const).encode())
    return b"\0".join(parts)
