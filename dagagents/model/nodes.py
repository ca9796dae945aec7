"""Node specs: what one node of a graph does, and the fingerprint that keys its checkpoint.

Two kinds: `AgentTask` (an agent answering a prompt template whose `{name}` placeholders take
dependency outputs) and `Step` (a Python function whose parameter names are its dependencies,
in the style of Hamilton). Either may `expand` the running graph from its output.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from dagagents.model.agents import Agent, source_hash

if TYPE_CHECKING:
    from dagagents.engine.invoke import AgentResult, CallContext


class NodeSpec(BaseModel):
    """Fields every node has. `expand(output) -> Expansion` grows the graph at run time."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    name: str
    depends_on: tuple[str, ...] = ()
    timeout: float | None = Field(default=None, gt=0)
    # Called with the node's output (fresh or from a checkpoint), so a resumed run
    # rebuilds exactly the same subgraph.
    expand: Callable[[Any], Expansion] | None = None
    # Free-form labels for rendering and reports (e.g. {"role": "planner"}).
    tags: dict[str, str] = Field(default_factory=dict)
    # Expected seconds, used to prioritise the critical path before any run has timed it.
    estimate: float | None = Field(default=None, ge=0)

    kind: str = "node"

    def fingerprint(self, memo: dict[int, Any] | None = None) -> dict[str, Any]:
        """What determines this node's output besides its inputs. `memo` shares work
        between nodes that use the same agent or function."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        return self.name


class AgentTask(NodeSpec):
    """An agent invocation. Dependency outputs not referenced by placeholder are appended."""

    agent: Agent
    prompt: str
    kind: str = "agent"

    def placeholders(self) -> list[str]:
        return prompt_placeholders(self.prompt)

    def fingerprint(self, memo: dict[int, Any] | None = None) -> dict[str, Any]:
        return {
            "kind": "agent",
            "agent": _memoized(memo, self.agent, self.agent.fingerprint),
            "prompt": self.prompt,
            "depends_on": list(self.depends_on),
        }

    @property
    def label(self) -> str:
        return f"{self.name}\n{self.agent.name} · {self.agent.model}"

    async def call(self, prompt: str, ctx: CallContext) -> AgentResult:
        """Invoke this node's agent on its rendered prompt (executors call this). Subclasses
        may wrap it: the orchestrator's planner checks its plan and asks once more."""
        from dagagents.engine.invoke import invoke_agent

        return await invoke_agent(self.agent, prompt, ctx)


class Step(NodeSpec):
    """A Python function node, sync (run in a thread) or async. Parameters name dependencies."""

    fn: Callable[..., Any]
    # Parameter names that are passed dependency outputs (a subset of depends_on).
    params: tuple[str, ...] = ()
    # Bump to invalidate checkpoints when behaviour changes outside the function's source.
    version: str = ""
    kind: str = "step"

    @property
    def is_async(self) -> bool:
        return is_coroutine_fn(self.fn)

    def fingerprint(self, memo: dict[int, Any] | None = None) -> dict[str, Any]:
        return {
            "kind": "step",
            # Memoized per code object: 10,000 closures of one factory share one source.
            "source": _memoized(memo, _code_identity(self.fn), lambda: step_source(self.fn)),
            "version": self.version,
            "depends_on": list(self.depends_on),
        }


class Expansion(BaseModel):
    """New nodes (and extra edges into not-yet-started nodes) added while the graph runs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    nodes: list[NodeSpec] = Field(default_factory=list)
    # (source, target) pairs; the target may be an existing node that has not started yet.
    edges: list[tuple[str, str]] = Field(default_factory=list)


NodeSpec.model_rebuild()
AgentTask.model_rebuild()
Step.model_rebuild()


# A placeholder is `{name}` where name could be a node's name (letters, digits, `_`, `-`, `.`);
# `{{` and `}}` are literal braces. Any other brace is text: JSON (`{"n": 1}`), set notation
# (`{N, D}`), code (`{ }`, `{0}`) pasted into a prompt, or produced by a model and placed into
# one, is never taken for a template field and never fails a run.
_PROMPT_TOKEN = re.compile(r"\{\{|\}\}|\{(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)\}")


def prompt_placeholders(template: str) -> list[str]:
    """Names of `{name}` fields in a prompt template (`{{` and `}}` are literal braces)."""
    names: list[str] = []
    for match in _PROMPT_TOKEN.finditer(template):
        name = match.group("name")
        if name and name not in names:
            names.append(name)
    return names


def _fill(template: str, inputs: dict[str, str]) -> str:
    """The template with its placeholders filled from `inputs` and `{{`/`}}` unescaped, in
    one pass: a filled-in value is never scanned again, and a placeholder naming no input
    stays as written."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group("name")
        return str(inputs[name]) if name in inputs else token

    return _PROMPT_TOKEN.sub(one, template)


def _memoized(memo: dict[int, Any] | None, obj: object, compute: Callable[[], Any]) -> Any:
    if memo is None:
        return compute()
    value = memo.get(id(obj))
    if value is None:
        value = memo[id(obj)] = compute()
    return value


def _code_identity(fn: Callable[..., Any]) -> object:
    target = inspect.unwrap(fn) if hasattr(fn, "__wrapped__") else fn
    return getattr(target, "__code__", target)


def step_source(fn: Callable[..., Any]) -> str:
    """Hash of what a step runs: its source and, for a functools.partial, the bound arguments
    (hashing the partial's repr would include a memory address and never resume)."""
    if isinstance(fn, functools.partial):
        bound = orjson.dumps([fn.args, fn.keywords], default=repr, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(step_source(fn.func).encode() + bound).hexdigest()
    return source_hash(fn)


def spec_digest(spec: NodeSpec, memo: dict[int, Any] | None = None) -> str:
    """sha256 of a node's canonical fingerprint (orjson, sorted keys)."""
    fp = spec.fingerprint(memo)
    return hashlib.sha256(orjson.dumps(fp, option=orjson.OPT_SORT_KEYS)).hexdigest()


def render_prompt(task: AgentTask, inputs: dict[str, str]) -> str:
    """Fill placeholders with dependency outputs; append the unreferenced ones as context."""
    used = set(task.placeholders())
    text = _fill(task.prompt, inputs)
    extra = [name for name in task.depends_on if name not in used]
    if extra:
        blocks = "\n\n".join(f'<input from="{name}">\n{inputs[name]}\n</input>' for name in extra)
        text = f"{text}\n\nOutputs of the steps this task depends on:\n\n{blocks}"
    return text


def _code_key(fn: Callable[..., Any]) -> Any:
    """Closures made by one `def` share a code object: cache by it, not by the function
    (10,000 closures then cost one lookup, and the cache keeps no closure alive)."""
    code = getattr(fn, "__code__", None)
    if code is not None and not getattr(fn, "__wrapped__", None):
        return (code, len(getattr(fn, "__defaults__", None) or ()))
    return fn


def _parameters(fn: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    """All parameters of `fn`, cached by code object. Only names, kinds and whether a default
    exists are meant to be read: default values may differ between closures of one `def`."""
    key = _code_key(fn)
    params = _PARAMS.get(key)
    if params is None:
        params = _PARAMS[key] = tuple(inspect.signature(fn).parameters.values())
    return params


def step_params(fn: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    """Named parameters of a step function (their names, kinds and whether they default)."""
    return tuple(p for p in _parameters(fn) if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def takes_var_keyword(fn: Callable[..., Any]) -> bool:
    """Does `fn` accept `**kwargs` (so it can be handed every dependency output by name)?"""
    return any(p.kind == p.VAR_KEYWORD for p in _parameters(fn))


def is_coroutine_fn(fn: Callable[..., Any]) -> bool:
    key = _code_key(fn)
    found = _ASYNC.get(key)
    if found is None:
        found = _ASYNC[key] = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - async callable objects
        )
    return found


_PARAMS: dict[Any, tuple[inspect.Parameter, ...]] = {}
_ASYNC: dict[Any, bool] = {}
