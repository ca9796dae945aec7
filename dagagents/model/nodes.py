"""Node specs: what one node of a graph does, and the fingerprint that keys its checkpoint.

Two kinds: `AgentTask` (an agent answering a prompt template whose `{name}` placeholders take
dependency outputs) and `Step` (a Python function whose parameter names are its dependencies,
in the style of Hamilton). Either may `expand` the running graph from its output.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterator
from types import FunctionType, MethodType
from typing import Any, NamedTuple, TypeGuard, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from dagagents.errors import GraphError
from dagagents.model.agents import Agent, source_hash

# `ask(prompt)`: one invocation of the node's agent (the engine's: limits, retries, trace),
# returning its output. `warn(message, **fields)`: a warning in the run's trace.
Ask = Callable[[str], Awaitable[Any]]
Warn = Callable[..., None]


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
    # A predicate over dependency outputs (by parameter name): false skips the node at zero
    # cost with reason "condition false". Its source is part of the fingerprint.
    when: Callable[..., Any] | None = None
    # Dependencies that may be condition-skipped; this node then receives None for them.
    optional: tuple[str, ...] = ()
    # Dependency name -> the name the prompt or function uses for it (namespaced subgraph
    # and loop nodes keep their body's names).
    aliases: dict[str, str] = Field(default_factory=dict)
    # The name that enters the checkpoint key (a map item is keyed by its content, not its
    # position, so reordering a list reruns nothing).
    key_name: str | None = None

    kind: str = "node"

    def local(self, dep: str) -> str:
        """The name under which dependency `dep` reaches this node's prompt or function."""
        return self.aliases.get(dep, dep) if self.aliases else dep

    def fingerprint(self, memo: dict[int, Any] | None = None) -> dict[str, Any]:
        """What determines this node's output besides its inputs. `memo` shares work
        between nodes that use the same agent or function."""
        raise NotImplementedError


class AgentTask(NodeSpec):
    """An agent invocation. Dependency outputs not referenced by placeholder are appended."""

    agent: Agent
    prompt: str
    # Called with the reply so far while it streams: the nodes that may start already (the
    # Orchestrator's streamed plan). Each is kept only if `expand` of the final output returns
    # it unchanged (engine/expand.py). Not in the fingerprint: it never changes the output.
    stream_expand: Callable[[str], Expansion | None] | None = None
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

    async def answer(self, prompt: str, ask: Ask, warn: Warn) -> Any:
        """This node's output for its rendered `prompt`. The engine provides `ask`, which
        makes one agent invocation and returns its output; every call's usage and cost are
        counted by the engine, whatever this method does. Subclasses may ask more than once
        (the orchestrator's planner checks its plan and asks for a repair)."""
        return await ask(prompt)


class Step(NodeSpec):
    """A Python function node, sync (run in a thread) or async. Parameters name dependencies."""

    fn: Callable[..., Any]
    # Parameter names that are passed dependency outputs (a subset of depends_on).
    params: tuple[str, ...] = ()
    # Bump to invalidate checkpoints when behaviour changes outside the function's source.
    version: str = ""
    # Arguments fixed when the node was made (a map item's `item`/`index`); part of the key.
    bound: dict[str, Any] = Field(default_factory=dict)
    kind: str = "step"

    @property
    def is_async(self) -> bool:
        return shape_of(self.fn).is_async

    def fingerprint(self, memo: dict[int, Any] | None = None) -> dict[str, Any]:
        return {
            "kind": "step",
            # Memoized per code object: 10,000 closures of one factory share one source.
            "source": _memoized(memo, _code_identity(self.fn), lambda: step_source(self.fn)),
            "version": self.version,
            "depends_on": list(self.depends_on),
            **({"bound": _bound_digest(self.bound)} if self.bound else {}),
        }


class Approval(NodeSpec):
    """A person's decision: the run waits here until someone approves (the value flows on as
    this node's output) or rejects (this node fails with the reason; its descendants skip).
    Decisions live in the store, keyed by this node's checkpoint key."""

    prompt: str = "Approve?"
    kind: str = "approval"

    def fingerprint(self, memo: dict[int, Any] | None = None) -> dict[str, Any]:
        return {"kind": "approval", "prompt": self.prompt, "depends_on": list(self.depends_on)}


def _bound_digest(bound: dict[str, Any]) -> str:
    from dagagents.store.codec import encode

    return hashlib.sha256(encode(bound)).hexdigest()


class Expansion(BaseModel):
    """New nodes (and extra edges into not-yet-started nodes) added while the graph runs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    nodes: list[NodeSpec] = Field(default_factory=list)
    # (source, target) pairs; the target may be an existing node that has not started yet.
    edges: list[tuple[str, str]] = Field(default_factory=list)


NodeSpec.model_rebuild()
AgentTask.model_rebuild()
Step.model_rebuild()
Approval.model_rebuild()


def describe_spec(spec: NodeSpec) -> dict[str, Any]:
    """What renderers and reports need to know about a node, without running anything."""
    out: dict[str, Any] = {
        "kind": spec.kind,
        "depends_on": list(spec.depends_on),
        "tags": spec.tags,
    }
    if isinstance(spec, AgentTask):
        out.update(
            agent=spec.agent.name,
            model=spec.agent.model,
            max_tokens=spec.agent.max_tokens,
            prompt=spec.prompt[:500],
        )
    elif isinstance(spec, Step):
        out.update(function=getattr(spec.fn, "__qualname__", repr(spec.fn)))
    return out


# A placeholder is `{name}`, `{name.field}`, `{name[0]}` (optionally `!r` / `:spec`) where name
# could be a node's name; `{{` and `}}` are literal braces. Any other brace is text: JSON
# (`{"n": 1}`), set notation (`{N, D}`), code (`{ }`, `{0}`, a lone `}`) pasted into a prompt,
# or produced by a model and placed into one, is never taken for a template field and never
# fails a run.
_PROMPT_TOKEN = re.compile(
    r"\{\{|\}\}|\{(?P<field>(?P<root>[A-Za-z_][A-Za-z0-9_\-]*)(?:\.[A-Za-z_]\w*|\[-?\w+\])*)"
    r"(?:!(?P<conv>[rsa]))?(?::(?P<spec>[\w<>=^+\-#,.%]*))?\}"
)


class _TemplateParser:
    """`string.Formatter().parse`, except that only placeholders as above are fields: every
    other brace stays in the literal text (so templates with JSON in them never raise)."""

    @staticmethod
    def parse(template: str) -> Iterator[tuple[str, str | None, str | None, str | None]]:
        literal: list[str] = []
        pos = 0
        for match in _PROMPT_TOKEN.finditer(template):
            literal.append(template[pos : match.start()])
            pos = match.end()
            token = match.group(0)
            if token in ("{{", "}}"):
                literal.append(token[0])
                continue
            yield (
                "".join(literal),
                match.group("field"),
                match.group("spec") or "",
                match.group("conv"),
            )
            literal = []
        literal.append(template[pos:])
        rest = "".join(literal)
        if rest:
            yield rest, None, None, None


_formatter = _TemplateParser()


def prompt_placeholders(template: str) -> list[str]:
    """Names of `{name}` fields in a prompt template (`{{` and `}}` are literal braces)."""
    names: list[str] = []
    for match in _PROMPT_TOKEN.finditer(template):
        root = match.group("root")
        if root and root not in names:
            names.append(root)
    return names


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
    if spec.when is not None or spec.optional or spec.aliases:
        fp = {
            **fp,
            "when": step_source(spec.when) if spec.when is not None else None,
            "optional": sorted(spec.optional),
            "aliases": spec.aliases,
        }
    return hashlib.sha256(orjson.dumps(fp, option=orjson.OPT_SORT_KEYS)).hexdigest()


def render_prompt(task: AgentTask, inputs: dict[str, Any]) -> str:
    """Fill placeholders with dependency outputs; append the unreferenced ones as context.

    `inputs` are keyed by the names the prompt uses (see `NodeSpec.local`) and may be raw
    outputs: `{grade.feedback}` and `{subjects.items[0]}` read a field of a pydantic model
    or JSON output. A field that does not exist raises GraphError naming node, placeholder
    and the fields that do exist — before the call is made, never after paying for it.
    Skipped optional dependencies (None) render as "(none)". Only this template is parsed:
    a filled-in value is never scanned again, and a `{name}` that names no input (text a
    model wrote, placed into an expansion's prompt) stays as written."""
    from dagagents.store.codec import as_text

    pieces: list[str] = []
    used: list[str] = []
    for literal, field, spec_, conv in _formatter.parse(task.prompt):
        pieces.append(literal)
        if field is None:
            continue
        root = field_root(field)
        if root not in inputs:
            pieces.append(
                "{" + field + (f"!{conv}" if conv else "") + (f":{spec_}" if spec_ else "") + "}"
            )
            continue
        if root not in used:
            used.append(root)
        value = resolve_field(task.name, field, inputs[root])
        text = "(none)" if value is None else as_text(value)
        if conv or spec_:
            text = format(text if conv != "r" else repr(text), spec_ or "")
        pieces.append(text)
    text = "".join(pieces)
    extra = [name for name in inputs if name not in used]
    if extra:
        blocks = "\n\n".join(
            f'<input from="{name}">\n'
            f"{'(none)' if inputs[name] is None else as_text(inputs[name])}\n</input>"
            for name in extra
        )
        text = f"{text}\n\nOutputs of the steps this task depends on:\n\n{blocks}"
    return text


def field_root(field: str) -> str:
    """The node a field reference reads: `subjects.items[0].name` -> 'subjects'."""
    return field.split(".", 1)[0].split("[", 1)[0]


def field_path(field: str) -> list[str | int]:
    """`grade.feedback` -> ['feedback']; `subjects.items[0].name` -> ['items', 0, 'name']."""
    rest = field[len(field_root(field)) :]
    return [
        (int(idx) if idx.lstrip("-").isdigit() else idx) if attr is None or attr == "" else attr
        for attr, idx in _PATH.findall(rest)
    ]


_PATH = re.compile(r"\.([^.\[]+)|\[([^\]]*)\]")


def fields_of(value: Any) -> list[str]:
    """The field names a value offers to `{dep.field}` (for error messages)."""
    if isinstance(value, BaseModel):
        return list(type(value).model_fields)
    if isinstance(value, dict):
        return [str(k) for k in value]
    return []


def resolve_field(node: str, field: str, value: Any) -> Any:
    """Follow `dep.a[0].b` into a raw output (pydantic model, dict, list or JSON text)."""
    path = field_path(field)
    if not path:
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = orjson.loads(value)
    walked = field_root(field)
    for part in path:
        try:
            if isinstance(part, int):
                value = value[part]
            elif isinstance(value, BaseModel):
                value = getattr(value, part) if part in type(value).model_fields else _missing()
            elif isinstance(value, dict):
                value = value[part]
            else:
                raise KeyError(part)
        except (KeyError, IndexError, TypeError, AttributeError):
            offered = fields_of(value)
            if offered:
                what = f"its fields are {', '.join(offered)}"
            elif isinstance(value, list):
                what = f"it is a list of {len(value)} items"
            else:
                what = f"it is a {type(value).__name__}"
            raise GraphError(
                f"node '{node}': prompt placeholder '{{{field}}}' has no '{part}' in "
                f"'{walked}' ({what})."
            ) from None
        walked += f"[{part}]" if isinstance(part, int) else f".{part}"
    return value


def _missing() -> Any:
    raise KeyError


class Shape(NamedTuple):
    """What calling a function needs to know: its named parameters (names, kinds and whether
    they default; default values may differ between closures of one `def`), whether it takes
    `**kwargs`, and whether calling it makes a coroutine."""

    params: tuple[inspect.Parameter, ...]
    var_keyword: bool
    is_async: bool


# id(code object) -> (the code object, its shape). Closures made by one `def` share a code
# object, so 10,000 of them cost one signature; keyed by identity because hashing a code
# object hashes its bytecode on every lookup. The entry holds the code object, so its id is
# never reused while the entry exists, and no closure is kept alive.
_SHAPES: dict[int, tuple[object, Shape]] = {}
_OTHER_SHAPES: dict[Any, Shape] = {}  # any other callable (see `shape_of`)


def shape_of(fn: Callable[..., Any]) -> Shape:
    """`fn`'s `Shape`, computed once per `def` (validation and every node's call read it)."""
    if type(fn) is FunctionType and not getattr(fn, "__wrapped__", None):
        code = fn.__code__
        defaults = fn.__defaults__
        if not defaults:
            entry = _SHAPES.get(id(code))
            if entry is not None:
                return entry[1]
            shape = _compute_shape(fn)
            _SHAPES[id(code)] = (code, shape)
            return shape
        key: Any = (code, len(defaults))
    elif type(fn) is MethodType and type(fn.__func__) is FunctionType:
        # Bound methods are made at each attribute access: keyed by their function's code
        # (not by the method, which would keep its object alive), apart from plain functions
        # since the bound `self` is not a parameter.
        func = fn.__func__
        key = (func.__code__, len(func.__defaults__ or ()), "bound")
        if getattr(func, "__wrapped__", None):
            key = fn
    else:
        key = fn  # a callable object, a partial, a wrapper: cached by itself
    found = _OTHER_SHAPES.get(key)
    if found is None:
        found = _OTHER_SHAPES[key] = _compute_shape(fn)
    return found


def _compute_shape(fn: Callable[..., Any]) -> Shape:
    params = tuple(inspect.signature(fn).parameters.values())
    return Shape(
        tuple(p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)),
        any(p.kind == p.VAR_KEYWORD for p in params),
        inspect.iscoroutinefunction(fn)
        or inspect.iscoroutinefunction(getattr(fn, "__call__", None)),  # noqa: B004 - async callable objects
    )


def step_params(fn: Callable[..., Any]) -> tuple[inspect.Parameter, ...]:
    """Named parameters of a step function (their names, kinds and whether they default)."""
    return shape_of(fn).params


def takes_var_keyword(fn: Callable[..., Any]) -> bool:
    """Does `fn` accept `**kwargs` (so it can be handed every dependency output by name)?"""
    return shape_of(fn).var_keyword


_T = TypeVar("_T")
_KINDS: dict[tuple[type, type], bool] = {}


def is_kind(spec: object, base: type[_T]) -> TypeGuard[_T]:
    """`isinstance(spec, base)`, remembered per class: the engine asks about six times for
    every node of every run, and one dict lookup costs less than pydantic's class check."""
    try:
        return _KINDS[type(spec), base]
    except KeyError:
        found = _KINDS[type(spec), base] = isinstance(spec, base)
        return found
