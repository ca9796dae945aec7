"""The graph language: inputs, maps, loops and subgraphs, compiled onto tasks, steps and expansions.

Everything here is still a plain acyclic graph of `AgentTask`s and `Step`s:

- an input is a node whose output is the run's value for it (so it is part of the key of every
  node that reads it);
- a map `jokes` is a splitter `jokes[*]` (reads the list), items `jokes[0]`, `jokes[1]`, ...
  added by the splitter's expansion (each keyed by its own content, not its position), and a
  collector `jokes` that receives every item and returns them in item order; when the list is
  one field of an agent's structured output, each item may start while that agent's reply still
  streams (`streamed_map`: the item's JSON complete and valid against the item type); the
  splitter's expansion, once the agent has finished, decides which of those it keeps;
- a subgraph is inlined at build time under a namespace (`research.summary`);
- a loop round `refine[k]` is the body inlined under `refine[k].`, ended by a round node that
  evaluates `until` and, if it does not hold, expands round k+1 (bounded by `max_rounds`);
  the loop node `refine` returns the last round's output.
"""

from __future__ import annotations

import collections.abc
import functools
import hashlib
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from dagagents.errors import GraphError, UserError
from dagagents.model.nodes import (
    AgentTask,
    Expansion,
    NodeSpec,
    Step,
    _formatter,
    field_path,
    field_root,
    prompt_placeholders,
    resolve_field,
    step_params,
    step_source,
)
from dagagents.model.partial import ListReader
from dagagents.store import codec

if TYPE_CHECKING:
    from dagagents.model.graph import Graph

DEFAULT_MAX_ITEMS = 1000
SKIPPED_DIGEST = "skipped:condition-false"  # what a condition-skipped node adds to keys
_ITEM = re.compile(r"\[(\d+)\]$")
_ROUND = re.compile(r"\[(\d+)\]$")


# ------------------------------------------------------------------------ inputs
class Input(Step):
    """A graph input: its output is the value the run was given (or the default)."""

    kind: str = "input"
    has_default: bool = False
    default: Any = None
    type: Any = None
    has_value: bool = False
    value: Any = None
    # False for the inputs of an embedded subgraph that were bound to their defaults.
    exposed: bool = True

    def fingerprint(self, memo: dict[int, Any] | None = None) -> dict[str, Any]:
        return {
            "kind": "input",
            "value": codec.encode(self.value).decode() if self.has_value else None,
        }

    def bind(self, value: Any) -> Input:
        async def provide() -> Any:
            return value

        return self.model_copy(update={"has_value": True, "value": value, "fn": provide})


def _unbound() -> Any:
    raise GraphError("this input was given no value")


def make_input(name: str, default: Any, has_default: bool, type_: Any) -> Input:
    spec = Input(
        name=name, fn=_unbound, has_default=has_default, default=default, type=type_, tags={}
    )
    return spec.bind(default) if has_default else spec


def bind_inputs(graph: Graph, values: Mapping[str, Any] | None) -> Graph:
    """A copy of `graph` whose inputs hold `values` (validated against declared types).
    One sentence, before anything runs, for an unknown, missing or invalid input."""
    values = dict(values or {})
    inputs = graph.inputs()
    where = f"graph '{graph.name}'"
    for name in values:
        if name not in inputs:
            known = ", ".join(inputs) or "none"
            raise UserError(f"{where}: unknown input '{name}' (its inputs: {known}).")
    if not inputs:
        return graph
    bound = graph.copy()
    for name, spec in inputs.items():
        if name in values:
            value = values[name]
        elif spec.has_value:
            continue  # its default, or a value bound earlier (the CLI binds before running)
        else:
            raise UserError(
                f"{where}: input '{name}' is required (pass inputs={{'{name}': ...}} "
                f"or --input {name}=...)."
            )
        if spec.type is not None:
            try:
                value = TypeAdapter(spec.type).validate_python(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                raise UserError(
                    f"{where}: input '{name}' = {value!r} is not a valid "
                    f"{getattr(spec.type, '__name__', spec.type)} ({first['msg']})."
                ) from None
        try:
            codec.encode(value)
        except codec.NotSerialisable as exc:
            raise UserError(f"{where}: input '{name}' is {exc}.") from None
        bound.specs[name] = spec.bind(value)
    return bound


# --------------------------------------------------------------------- templates
def substitute(template: str, values: Mapping[str, Any], node: str) -> str:
    """Fill only the placeholders whose root is in `values` (e.g. `{item}`, `{item.name}`,
    `{index}`), leaving the others (dependencies) for the engine; literal braces survive."""
    out: list[str] = []
    for literal, field, spec, conv in _formatter.parse(template):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is None:
            continue
        root = field_root(field)
        if root in values:
            value = resolve_field(node, field, values[root])
            text = value if isinstance(value, str) else codec.as_text(value)
            out.append(text.replace("{", "{{").replace("}", "}}"))
        else:
            out.append(
                "{" + field + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            )
    return "".join(out)


def output_model(spec: NodeSpec | None) -> type[BaseModel] | None:
    """The pydantic class a node declares it returns (agent `output`, step annotation)."""
    if spec is None:
        return None
    return codec.output_hint(spec).resolve()


def check_field(
    where: str, what: str, field: str, model: type[BaseModel] | None, shown: str | None = None
) -> None:
    """Check `dep.a.b` against a declared pydantic output type (nothing to check if none)."""
    current: Any = model
    walked = field_root(field)
    for part in field_path(field):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return
        if isinstance(part, int):
            return
        fields = current.model_fields
        if part not in fields:
            raise GraphError(
                f"{where}: {what} '{shown or field}' names no field '{part}' of '{walked}' "
                f"({current.__name__} has {', '.join(fields) or 'no fields'})."
            )
        current = _element(fields[part].annotation)
        walked += f".{part}"


def _element(annotation: Any) -> Any:
    import typing

    args = typing.get_args(annotation)
    for candidate in (annotation, *args):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


# -------------------------------------------------------------------------- maps
class MapSplit(Step):
    """`<map>[*]`: reads the list a map runs over; its expansion adds one node per item."""

    kind: str = "map_split"
    map_name: str
    over: str
    max_items: int = DEFAULT_MAX_ITEMS
    proto: NodeSpec  # the item's task or step, named after the map, item/index unfilled
    # Items may start while the source's reply streams (see `streamed_map`). Not in the
    # fingerprint: it never changes an output or a key.
    stream: bool = True

    def fingerprint(self, memo: dict[int, Any] | None = None) -> dict[str, Any]:
        return {
            "kind": "map_split",
            "over": self.over,
            "max_items": self.max_items,
            "depends_on": list(self.depends_on),
        }


def _split(spec_ref: list[MapSplit], **kw: Any) -> dict[str, Any]:
    """The splitter's body: the list at `over`, or the sentence explaining why there is none."""
    spec = spec_ref[0]
    value = kw[field_root(spec.over)]
    try:
        items = resolve_field(spec.map_name, spec.over, value)
    except GraphError as exc:
        return {"error": f"map '{spec.map_name}': over '{spec.over}': {exc}"}
    if isinstance(items, BaseModel) or not isinstance(items, list | tuple):
        return {
            "error": f"map '{spec.map_name}': over '{spec.over}' is a "
            f"{type(items).__name__}, not a list."
        }
    if len(items) > spec.max_items:
        return {
            "error": f"map '{spec.map_name}': over '{spec.over}' has {len(items):,} items, "
            f"more than max_items={spec.max_items:,}."
        }
    return {"items": list(items)}


def make_split(
    map_name: str,
    over: str,
    max_items: int,
    proto: NodeSpec,
    deps: tuple[str, ...],
    **extra: Any,
) -> MapSplit:
    """The splitter reads `over` (deps[0]); it also waits for the items' other dependencies,
    which keeps the graph's edges honest (items are keyed by content, not by the splitter)."""
    ref: list[MapSplit] = []
    spec = MapSplit(
        name=f"{map_name}[*]",
        fn=functools.partial(_split, ref),
        depends_on=deps,
        params=deps,
        map_name=map_name,
        over=over,
        max_items=max_items,
        proto=proto,
        tags={"map": map_name, "role": "split"},
        **extra,
    )
    ref.append(spec)
    spec.expand = functools.partial(_map_expansion, ref)
    return spec


def _item_digest(item: Any) -> str:
    try:
        data = codec.encode(item)
    except codec.NotSerialisable:
        data = repr(item).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def _map_expansion(ref: list[MapSplit], output: Any) -> Expansion:
    spec = ref[0]
    items = output.get("items") if isinstance(output, dict) else None
    if not items:
        return Expansion()
    nodes = _ItemNodes(spec).extend(items)
    return Expansion(nodes=nodes, edges=[(node.name, spec.map_name) for node in nodes])


class _ItemNodes:
    """Builds a map's item nodes in list order: the same nodes whether the list came whole
    (the splitter's expansion) or item by item from a streamed reply (`MapStream`), so
    streaming never changes a spec or a checkpoint key."""

    def __init__(self, spec: MapSplit) -> None:
        self.spec = spec
        proto = spec.proto
        self.uses_index = _uses_index(proto)
        self.wanted = {p.name for p in step_params(proto.fn)} if isinstance(proto, Step) else set()
        self.seen: dict[str, int] = {}
        self.nodes: list[NodeSpec] = []

    def extend(self, items: list[Any]) -> list[NodeSpec]:
        for item in items:
            self.nodes.append(self._node(len(self.nodes), item))
        return self.nodes

    def _node(self, index: int, item: Any) -> NodeSpec:
        spec, proto = self.spec, self.spec.proto
        name = f"{spec.map_name}[{index}]"
        digest = _item_digest(item)
        self.seen[digest] = self.seen.get(digest, -1) + 1
        key_name = name if self.uses_index else f"{spec.map_name}[{digest}#{self.seen[digest]}]"
        tags = {**proto.tags, "map": spec.map_name, "index": str(index)}
        if isinstance(proto, AgentTask):
            prompt = substitute(proto.prompt, {"item": item, "index": index}, name)
            return proto.model_copy(
                update={"name": name, "prompt": prompt, "key_name": key_name, "tags": tags}
            )
        assert isinstance(proto, Step)
        bound = {k: v for k, v in (("item", item), ("index", index)) if k in self.wanted}
        return proto.model_copy(
            update={"name": name, "bound": bound, "key_name": key_name, "tags": tags}
        )


# ------------------------------------------------------------------ streamed maps
@dataclass
class MapStream:
    """A map whose items may start while its source agent's reply streams. `feed(delta)`
    (the next piece of the reply) returns the item nodes that became ready to start: of the
    longest run of complete items from the first, each valid against the item type (an
    invalid one, and every item after it, waits for the final answer), at most `max_items`;
    `restart()` when a new reply begins (a retry, a re-ask). The reply is read incrementally
    (`partial.ListReader`), and each item is validated once, when it completes, so the cost
    per item stays flat however long the list grows. `final(output)` is the splitter's
    expansion for the source's finished output, computed the way the splitter will compute
    it, so the engine can keep what streamed unchanged (engine/expand.py)."""

    split: MapSplit
    key: str  # the top-level key of the source's JSON reply that holds the list
    item: TypeAdapter[Any]
    # This reply's items already validated and built; its reader; an item found invalid (the
    # rest of this reply then waits for the final answer).
    _built: _ItemNodes | None = None
    _reader: ListReader | None = None
    _stuck: bool = False

    def restart(self) -> None:
        """A new reply begins: read it afresh."""
        self._built = _ItemNodes(self.split)
        self._reader = ListReader(self.key)
        self._stuck = False

    def feed(self, delta: str) -> Expansion | None:
        """The item nodes `delta`, the next piece of the reply, made ready to start."""
        if self._built is None or self._reader is None:
            self.restart()
        assert self._built is not None and self._reader is not None
        if self._stuck:
            return None
        items = self._reader.feed(delta)
        built = self._built
        fresh: list[Any] = []
        for item in items[: max(0, self.split.max_items - len(built.nodes))]:
            try:
                fresh.append(self.item.validate_json(orjson.dumps(item)))
            except (ValidationError, orjson.JSONEncodeError):  # (a >64-bit integer)
                self._stuck = True
                break
        if not fresh:
            return None
        before = len(built.nodes)
        return Expansion(nodes=built.extend(fresh)[before:])

    def final(self, output: Any) -> Expansion | None:
        root = field_root(self.split.over)
        assert self.split.expand is not None
        return self.split.expand(self.split.fn(**{root: output}))


def streamed_map(split: MapSplit, source: NodeSpec) -> MapStream | None:
    """How `split`'s items may start while `source` (the node its `over` reads) streams its
    reply, or None when they cannot and the map waits for the whole output: `stream=False`,
    a `when=` condition (decided only once the splitter is ready), a source that is not an
    agent with a pydantic output, `over` other than one list field of that output (`node.field`),
    a field with an alias, or an item type that is not a list's."""
    if not split.stream or split.when is not None or not isinstance(source, AgentTask):
        return None
    model = source.agent.output
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    if split.local(source.name) != field_root(split.over):
        return None
    path = field_path(split.over)
    if len(path) != 1 or not isinstance(path[0], str):
        return None
    info = model.model_fields.get(path[0])
    if info is None or info.alias is not None or info.validation_alias is not None:
        return None
    element = _list_element(info.annotation)
    if element is None:
        return None
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(element)
    except Exception:  # not a type pydantic can validate on its own: the barrier
        return None
    return MapStream(split=split, key=path[0], item=adapter)


_SEQUENCES = (list, collections.abc.Sequence, collections.abc.MutableSequence)


def _list_element(annotation: Any) -> Any:
    """`X` for `list[X]`, `Sequence[X]`, `tuple[X, ...]` (or any of them `| None`), else None."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        return _list_element(kept[0]) if len(kept) == 1 else None
    if origin in _SEQUENCES and len(args) == 1:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def _uses_index(proto: NodeSpec) -> bool:
    if isinstance(proto, AgentTask):
        return "index" in prompt_placeholders(proto.prompt)
    assert isinstance(proto, Step)
    return any(p.name == "index" for p in step_params(proto.fn))


class MapCollect(Step):
    """`<map>`: the list of its items' outputs, in item order."""

    kind: str = "map"


def _collect(**outputs: Any) -> list[Any]:
    items: list[tuple[int, Any]] = []
    for name, value in outputs.items():
        if name.endswith("[*]"):
            if isinstance(value, dict) and value.get("error"):
                raise GraphError(value["error"])
            continue
        found = _ITEM.search(name)
        if found:
            items.append((int(found.group(1)), value))
    return [value for _, value in sorted(items, key=lambda pair: pair[0])]


def make_collect(map_name: str, **extra: Any) -> MapCollect:
    return MapCollect(
        name=map_name,
        fn=_collect,
        depends_on=(f"{map_name}[*]",),
        params=(f"{map_name}[*]",),
        tags={"map": map_name, "role": "collect"},
        **extra,
    )


# --------------------------------------------------------------------- inlining
def rename_spec(
    spec: NodeSpec, target: Callable[[str], str], name: Callable[[str], str], tags: dict[str, str]
) -> NodeSpec:
    """`spec` under a namespace: its own name through `name`, each dependency through
    `target` (a body input may resolve to a node of the parent graph), and the names its
    prompt or function uses kept through aliases."""
    deps = tuple(target(d) for d in spec.depends_on)
    aliases = {target(d): spec.local(d) for d in spec.depends_on if target(d) != spec.local(d)}
    update: dict[str, Any] = {
        "name": name(spec.name),
        "depends_on": deps,
        "aliases": aliases,
        "optional": tuple(target(d) for d in spec.optional),
        "key_name": name(spec.key_name) if spec.key_name else None,
        "tags": {**spec.tags, **tags},
    }
    if isinstance(spec, MapSplit):
        proto = rename_spec(spec.proto, target, name, tags)
        new = make_split(
            name(spec.map_name),
            spec.over,
            spec.max_items,
            proto,
            deps,
            when=spec.when,
            optional=update["optional"],
            aliases=aliases,
            stream=spec.stream,
        )
        return new.model_copy(update={"tags": {**new.tags, **tags}})
    if isinstance(spec, LoopRound):
        return make_round(
            spec.loop.renamed(target, name), spec.round, deps, aliases, {**spec.tags, **tags}
        )
    if isinstance(spec, Input):
        update["exposed"] = False
    return spec.model_copy(update=update)


def inline(
    body: Graph,
    prefix: str,
    resolve_input: Callable[[Input], str | None],
    tags: dict[str, str],
) -> list[NodeSpec]:
    """The body's nodes renamed `prefix.<name>`; an input for which `resolve_input` names a
    node becomes an alias of that node, otherwise stays (bound to its default)."""
    outer: dict[str, str] = {}
    for spec in body:
        if isinstance(spec, Input):
            node = resolve_input(spec)
            if node is not None:
                outer[spec.name] = node

    def name(n: str) -> str:
        return f"{prefix}.{n}"

    def target(d: str) -> str:
        return outer.get(d) or name(d)

    return [rename_spec(spec, target, name, tags) for spec in body if spec.name not in outer]


def body_output(body: Graph) -> str:
    """The node whose output is a body graph's output: `Graph(output=...)` or its only sink."""
    if body.output is not None:
        return body.output
    sinks: list[str] = [
        n for n in body.nx if body.nx.out_degree(n) == 0 and not isinstance(body.specs[n], Input)
    ]
    if len(sinks) != 1:
        raise GraphError(
            f"graph '{body.name}' has {len(sinks)} final nodes ({', '.join(sinks)}); "
            "name its result with Graph(..., output='node')."
        )
    return sinks[0]


class SubgraphOutput(Step):
    """`<subgraph>`: the embedded graph's output."""

    kind: str = "subgraph"


def _identity(**kw: Any) -> Any:
    (value,) = kw.values()
    return value


# ------------------------------------------------------------------------- loops
class LoopDef(BaseModel):
    """A loop's definition, carried by each round node so it can build the next round."""

    model_config = {"arbitrary_types_allowed": True}

    name: str
    body: Any  # Graph
    until: Callable[..., Any] | None
    max_rounds: int
    carry: dict[str, str]
    outer: dict[str, str]  # body input -> parent node for round 1 (and uncarried inputs)
    output: str

    def renamed(self, target: Callable[[str], str], name: Callable[[str], str]) -> LoopDef:
        return self.model_copy(
            update={"name": name(self.name), "outer": {k: target(v) for k, v in self.outer.items()}}
        )

    def round_nodes(self, k: int, previous: str | None) -> list[NodeSpec]:
        """Round k's body nodes (and carry nodes) plus its round node `name[k]`."""
        prefix = f"{self.name}[{k}]"
        carried: list[NodeSpec] = []

        def resolve(inp: Input) -> str | None:
            if previous is not None and inp.name in self.carry:
                source = self.carry[inp.name]
                root = source.split(".", 1)[0]
                node = f"{self.name}[{k - 1}].{root}"
                carrier = f"{prefix}.{inp.name}"
                carried.append(
                    CarryStep(
                        name=carrier,
                        fn=functools.partial(_carry, source),
                        path=source,
                        depends_on=(node,),
                        params=(node,),
                        tags={"loop": self.name, "round": str(k)},
                    )
                )
                return carrier
            return self.outer.get(inp.name)

        tags = {"loop": self.name, "round": str(k)}
        nodes = inline(self.body, prefix, resolve, tags) + carried
        body_nodes = [
            n.name
            for n in nodes
            if not isinstance(n, Input | CarryStep) and n.name.startswith(prefix + ".")
        ]
        aliases = {n: n[len(prefix) + 1 :] for n in body_nodes}
        nodes.append(make_round(self, k, tuple(body_nodes), aliases, tags))
        return nodes


class CarryStep(Step):
    """`loop[k].<input>`: a value carried from round k-1 (a node's output or one field)."""

    kind: str = "carry"
    path: str

    def fingerprint(self, memo: dict[int, Any] | None = None) -> dict[str, Any]:
        return {"kind": "carry", "path": self.path, "depends_on": list(self.depends_on)}


def _carry(path: str, **kw: Any) -> Any:
    (value,) = kw.values()
    return resolve_field(path.split(".", 1)[0], path, value)


class LoopRound(Step):
    """`loop[k]`: the end of round k. Output {"done": until held, "output": the round's output};
    its expansion adds round k+1 unless done or at max_rounds."""

    kind: str = "loop_round"
    loop: LoopDef
    round: int

    def fingerprint(self, memo: dict[int, Any] | None = None) -> dict[str, Any]:
        return {
            "kind": "loop_round",
            "until": step_source(self.loop.until) if self.loop.until else None,
            "output": self.loop.output,
            "depends_on": list(self.depends_on),
        }


def _round_body(loop: LoopDef, **outputs: Any) -> dict[str, Any]:
    done = False
    if loop.until is not None:
        names = [p.name for p in step_params(loop.until)]
        done = bool(loop.until(**{n: outputs[n] for n in names}))
    return {"done": done, "output": outputs[loop.output]}


def make_round(
    loop: LoopDef,
    k: int,
    deps: tuple[str, ...],
    aliases: dict[str, str],
    tags: dict[str, str],
) -> LoopRound:
    spec = LoopRound(
        name=f"{loop.name}[{k}]",
        fn=functools.partial(_round_body, loop),
        depends_on=deps,
        params=deps,
        aliases=aliases,
        loop=loop,
        round=k,
        tags={**tags, "loop": loop.name, "round": str(k), "role": "round"},
    )
    spec.expand = functools.partial(_next_round, spec)
    return spec


def _next_round(spec: LoopRound, output: Any) -> Expansion:
    loop = spec.loop
    if (isinstance(output, dict) and output.get("done")) or spec.round >= loop.max_rounds:
        return Expansion()
    nodes = loop.round_nodes(spec.round + 1, spec.name)
    return Expansion(nodes=nodes, edges=[(nodes[-1].name, loop.name)])


class LoopCollect(Step):
    """`<loop>`: the last round's output."""

    kind: str = "loop"
    max_rounds: int = 1


def _last_round(**rounds: Any) -> Any:
    last = max(rounds, key=lambda n: int(_ROUND.search(n).group(1)))  # type: ignore[union-attr]
    return rounds[last]["output"]


def round_number(name: str) -> int | None:
    found = _ROUND.search(name)
    return int(found.group(1)) if found else None
