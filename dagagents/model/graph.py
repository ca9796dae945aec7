"""Graph: a networkx DiGraph of node specs, a builder API, validation, and loading from files.

Edges point from a dependency to its dependent. Validation runs before anything executes and
reports the first problem as one sentence naming the node (and, for files, the file).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, overload

import networkx as nx
from pydantic import BaseModel

from dagagents.errors import GraphError, UserError, clip
from dagagents.model.agents import Agent
from dagagents.model.language import (
    DEFAULT_MAX_ITEMS,
    Input,
    LoopCollect,
    LoopDef,
    MapSplit,
    SubgraphOutput,
    _identity,
    _last_round,
    bind_inputs,
    body_output,
    check_field,
    inline,
    make_collect,
    make_input,
    make_split,
    output_model,
)
from dagagents.model.nodes import (
    AgentTask,
    Approval,
    Expansion,
    NodeSpec,
    Step,
    _formatter,
    field_root,
    is_kind,
    prompt_placeholders,
    step_params,
    takes_var_keyword,
)

if TYPE_CHECKING:
    from dagagents.observe.runs import RunResult
    from dagagents.providers.base import Provider

F = Callable[..., Any]
_NO_DEFAULT: Any = object()


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest option, or nothing: appended to error sentences.

    difflib is quadratic in the length, and nobody misspells 100 characters: longer names get
    no suggestion rather than a minute of matching."""
    if len(name) > 100:
        return ""
    close = difflib.get_close_matches(name, [o for o in options if len(o) <= 100], n=1)
    return f" (did you mean '{clip(close[0])}'?)" if close else ""


class Graph:
    """A DAG of agent tasks and Python steps. Build it, validate it, run it."""

    def __init__(
        self,
        name: str = "graph",
        *,
        simulator: Provider | None = None,
        output: str | None = None,
    ) -> None:
        self.name = name
        self.nx: nx.DiGraph = nx.DiGraph()
        self._specs: dict[str, NodeSpec] = {}
        # Names of Input nodes, in order: a run's inputs are bound without a pass over
        # every node.
        self._input_names: list[str] = []
        # The provider used offline (no API key): lets example graphs script realistic answers.
        self.simulator = simulator
        # The node whose output is `result.output` and what a parent graph's subgraph yields.
        self.output = output

    # ----------------------------------------------------------------- building
    def add(self, spec: NodeSpec, *, _internal: bool = False) -> NodeSpec:
        """Add a node spec. Dependencies may be added later; `validate` checks them."""
        if spec.name in self._specs:
            what = "a node of an embedded graph" if _internal else "node name"
            raise GraphError(f"graph '{self.name}': duplicate {what} '{spec.name}'.")
        plain = spec.name.replace("-", "_").replace(".", "_")
        if _internal:
            plain = re.sub(r"\[(\d+|\*)\]", "_", plain)
        if not spec.name or not plain.isidentifier():
            raise GraphError(
                f"graph '{self.name}': node name {spec.name!r} must be an identifier "
                "(letters, digits, '_', '-', '.')."
            )
        self._specs[spec.name] = spec
        if is_kind(spec, Input):
            self._input_names.append(spec.name)
        self.nx.add_node(spec.name)
        for dep in spec.depends_on:
            self.nx.add_edge(dep, spec.name)
        return spec

    def task(
        self,
        name: str,
        agent: Agent,
        prompt: str,
        depends_on: Iterable[str] | None = None,
        *,
        timeout: float | None = None,
        expand: Callable[[Any], Expansion] | None = None,
        tags: dict[str, str] | None = None,
        estimate: float | None = None,
        when: Callable[..., Any] | None = None,
        optional: Iterable[str] = (),
        output: type[BaseModel] | None = None,
    ) -> AgentTask:
        """An agent node. `{dep}` placeholders in `prompt` take dependency outputs (a
        placeholder naming a graph input, or without `depends_on` an already declared node,
        is a dependency by itself). `when=` is a predicate over dependency outputs by
        parameter name (false: skipped, "condition false"); `optional` dependencies may be
        condition-skipped and then arrive as None; `output=` a pydantic model for the reply."""
        spec = AgentTask(
            name=name,
            agent=agent if output is None else agent.with_(output=output),
            prompt=prompt,
            depends_on=self._implied_deps(prompt, depends_on, optional),
            timeout=timeout,
            expand=expand,
            tags=tags or {},
            estimate=estimate,
            when=when,
            optional=tuple(optional),
        )
        self.add(spec)
        return spec

    def _implied_deps(
        self, prompt: str, depends_on: Iterable[str] | None, optional: Iterable[str] = ()
    ) -> tuple[str, ...]:
        deps = list(depends_on or ())
        for ph in prompt_placeholders(prompt):
            if ph in deps:
                continue
            spec = self._specs.get(ph)
            if spec is not None and (depends_on is None or isinstance(spec, Input)):
                deps.append(ph)
        for opt in optional:
            if opt not in deps:
                deps.append(opt)
        return tuple(deps)

    def input(self, name: str, default: Any = _NO_DEFAULT, *, type: Any = None) -> str:  # noqa: A002 - reads as the user writes it
        """A graph input: `{name}` in prompts, a parameter in steps, a name in depends_on.
        Its value (from `run(inputs=...)` or `--input name=value`) is part of the key of
        every node that reads it. Returns the name, for use in `depends_on`."""
        has_default = default is not _NO_DEFAULT
        self.add(make_input(name, default if has_default else None, has_default, type))
        return name

    def map(
        self,
        name: str,
        worker: Agent | F,
        prompt: str | None = None,
        *,
        over: str,
        depends_on: Iterable[str] | None = None,
        max_items: int = DEFAULT_MAX_ITEMS,
        when: Callable[..., Any] | None = None,
        timeout: float | None = None,
        output: type[BaseModel] | None = None,
        stream: bool = True,
    ) -> str:
        """One node per item of `over` ("node" or "node.field"): `name[0]`, `name[1]`, ...
        An agent gets `{item}`/`{index}` (and `{item.field}`) in its prompt, a function
        `item`/`index` parameters; other dependencies as usual. Items run concurrently,
        each checkpointed by its own content; `name` is their outputs in item order.
        When `over` is a list field of an agent's structured output, each item starts as
        soon as its part of the streamed reply is complete and valid (`stream=False`: only
        once the whole output is written); keys are the same either way."""
        if max_items < 0:
            raise GraphError(f"graph '{self.name}': map '{name}' max_items must be >= 0.")
        root = field_root(over)
        if isinstance(worker, Agent):
            if prompt is None:
                raise GraphError(f"graph '{self.name}': map '{name}' with an agent needs a prompt.")
            deps = [d for d in self._implied_deps(prompt, depends_on) if d not in ("item", "index")]
            if depends_on is None:
                deps += [
                    ph
                    for ph in prompt_placeholders(prompt)
                    if ph not in deps and ph not in ("item", "index")
                ]
            proto: NodeSpec = AgentTask(
                name=name,
                agent=worker if output is None else worker.with_(output=output),
                prompt=prompt,
                depends_on=tuple(deps),
                timeout=timeout,
            )
        else:
            params = step_params(worker)
            names = [p.name for p in params if p.name not in ("item", "index")]
            if depends_on is None:
                deps = [
                    p.name
                    for p in params
                    if p.name in names and (p.default is p.empty or p.name in self._specs)
                ]
            else:
                deps = list(depends_on)
            proto = Step(
                name=name,
                fn=worker,
                depends_on=tuple(deps),
                params=tuple(d for d in deps if d in names or takes_var_keyword(worker)),
                timeout=timeout,
            )
        split_deps = (root, *(d for d in proto.depends_on if d != root))
        split = make_split(name, over, max_items, proto, split_deps, when=when, stream=stream)
        self.add(split, _internal=True)
        self.add(make_collect(name))
        return name

    def _add_all(self, nodes: list[NodeSpec], clash: str, where: str) -> None:
        """Add nodes a builder made (a subgraph's, a loop's first round): all or none."""
        for node in nodes:
            if node.name in self._specs:
                raise GraphError(f"{where}: node '{node.name}' {clash}.")
        for node in nodes:
            self.add(node, _internal=True)

    def subgraph(self, name: str, other: Graph, inputs: Mapping[str, str] | None = None) -> str:
        """Embed `other` under the namespace `name.` (`name.summary`): its nodes are scheduled
        with everything else, no barrier; `inputs` maps its inputs to nodes of this graph;
        the node `name` is its output."""
        other.validate()
        inputs = dict(inputs or {})
        where = f"graph '{self.name}': subgraph '{name}'"
        declared = other.inputs()
        for inner in inputs:
            if inner not in declared:
                raise GraphError(
                    f"{where}: graph '{other.name}' declares no input '{inner}' "
                    f"(its inputs: {', '.join(declared) or 'none'})."
                )
        for inner, spec in declared.items():
            if inner not in inputs and not spec.has_default:
                raise GraphError(
                    f"{where}: input '{inner}' of graph '{other.name}' is required; "
                    f"pass inputs={{'{inner}': '<node>'}}."
                )
        out = body_output(other)
        nodes = inline(other, name, lambda inp: inputs.get(inp.name), {"subgraph": name})
        self._add_all(nodes, f"clashes with a node of graph '{self.name}'", where)
        self.add(
            SubgraphOutput(
                name=name,
                fn=_identity,
                depends_on=(f"{name}.{out}",),
                params=(f"{name}.{out}",),
                tags={"subgraph": name, "role": "output"},
            )
        )
        return name

    def loop(
        self,
        name: str,
        body: Graph,
        *,
        until: Callable[..., Any] | None = None,
        max_rounds: int,
        carry: Mapping[str, str] | None = None,
        inputs: Mapping[str, str] | None = None,
    ) -> str:
        """Run `body` round after round: `carry` feeds a round's outputs into the next
        round's inputs (`{"feedback": "grade.feedback"}`), `until` is a predicate over a
        round's outputs by node name; at most `max_rounds`. Rounds are nodes `name[k].node`;
        `name` is the last round's output."""
        where = f"graph '{self.name}': loop '{name}'"
        if max_rounds < 1:
            raise GraphError(f"{where}: max_rounds must be at least 1 (got {max_rounds}).")
        body.validate()
        carry = dict(carry or {})
        inputs = dict(inputs or {})
        declared = body.inputs()
        nodes = [n for n, s in body.specs.items() if not isinstance(s, Input)]
        for inner in inputs:
            if inner not in declared:
                raise GraphError(
                    f"{where}: body '{body.name}' declares no input '{inner}' "
                    f"(its inputs: {', '.join(declared) or 'none'})."
                )
        for inner, source in carry.items():
            if inner not in declared:
                raise GraphError(
                    f"{where}: carry names '{inner}', which is not an input of body "
                    f"'{body.name}' (its inputs: {', '.join(declared) or 'none'})."
                )
            root = field_root(source)
            if root not in nodes:
                raise GraphError(
                    f"{where}: carry '{inner}' reads '{source}', but body '{body.name}' "
                    f"has no node '{root}'{did_you_mean(root, nodes)}."
                )
            check_field(where, "carry", source, output_model(body.specs[root]))
        for inner, spec in declared.items():
            if inner not in inputs and not spec.has_default:
                raise GraphError(
                    f"{where}: body input '{inner}' has no value for round 1 "
                    f"(pass inputs={{'{inner}': '<node>'}} or give it a default)."
                )
        if until is not None:
            for p in step_params(until):
                if p.name not in nodes and p.default is p.empty:
                    raise GraphError(
                        f"{where}: until parameter '{p.name}' names no node of body "
                        f"'{body.name}'{did_you_mean(p.name, nodes)}."
                    )
        loop = LoopDef(
            name=name,
            body=body,
            until=until,
            max_rounds=max_rounds,
            carry=carry,
            outer=inputs,
            output=body_output(body),
        )
        first = loop.round_nodes(1, None)
        self._add_all(first, "clashes with an existing node", where)
        self.add(
            LoopCollect(
                name=name,
                fn=_last_round,
                depends_on=(f"{name}[1]",),
                params=(f"{name}[1]",),
                max_rounds=max_rounds,
                tags={"loop": name, "role": "loop"},
            )
        )
        return name

    @overload
    def step(self, fn: F, /) -> F: ...
    @overload
    def step(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        depends_on: Iterable[str] | None = None,
        timeout: float | None = None,
        expand: Callable[[Any], Expansion] | None = None,
        version: str = "",
        estimate: float | None = None,
        when: Callable[..., Any] | None = None,
    ) -> Callable[[F], F]: ...

    def step(
        self,
        fn: F | None = None,
        /,
        *,
        name: str | None = None,
        depends_on: Iterable[str] | None = None,
        timeout: float | None = None,
        expand: Callable[[Any], Expansion] | None = None,
        version: str = "",
        estimate: float | None = None,
        when: Callable[..., Any] | None = None,
    ) -> F | Callable[[F], F]:
        """Decorator: a Python node whose parameter names are its dependencies. A parameter
        with a default that names a node is an optional dependency (None if skipped)."""

        def register(f: F) -> F:
            self.add_step(
                name or f.__name__,
                f,
                depends_on=depends_on,
                timeout=timeout,
                expand=expand,
                version=version,
                estimate=estimate,
                when=when,
            )
            return f

        return register(fn) if fn is not None else register

    def add_step(
        self,
        name: str,
        fn: F,
        depends_on: Iterable[str] | None = None,
        *,
        timeout: float | None = None,
        expand: Callable[[Any], Expansion] | None = None,
        version: str = "",
        tags: dict[str, str] | None = None,
        estimate: float | None = None,
        when: Callable[..., Any] | None = None,
    ) -> Step:
        """Programmatic form of `@g.step`. With `depends_on`, `fn` receives those outputs as
        keyword arguments (so `fn(**deps)` works); otherwise its parameters name them."""
        params = step_params(fn)
        has_var_kw = takes_var_keyword(fn)
        if depends_on is None:
            deps = tuple(p.name for p in params if p.default is p.empty or p.name in self._specs)
            passed = deps
        else:
            deps = tuple(depends_on)
            names = {p.name for p in params}
            passed = deps if has_var_kw else tuple(d for d in deps if d in names)
        optional = tuple(p.name for p in params if p.default is not p.empty and p.name in deps)
        spec = Step(
            name=name,
            fn=fn,
            depends_on=deps,
            params=passed,
            timeout=timeout,
            expand=expand,
            version=version,
            tags=tags or {},
            estimate=estimate,
            when=when,
            optional=optional,
        )
        self.add(spec)
        return spec

    # ----------------------------------------------------------------- reading
    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[NodeSpec]:
        return iter(self._specs.values())

    def __getitem__(self, name: str) -> NodeSpec:
        return self._specs[name]

    @property
    def specs(self) -> dict[str, NodeSpec]:
        return self._specs

    def copy(self) -> Graph:
        """A shallow copy: runs expand the copy, never the user's graph."""
        g = Graph(self.name, simulator=self.simulator, output=self.output)
        g.nx = self.nx.copy()
        g._specs = dict(self._specs)
        g._input_names = list(self._input_names)
        return g

    # --------------------------------------------------------------- validation
    def validate(self) -> list[str]:
        """Raise GraphError with one sentence for the first problem found. Returns the nodes
        in dependency order (the acyclicity check's own pass; the run's priorities reuse it)."""
        order = validate_specs(self.name, self._specs, self.nx)
        if self.output is not None and self.output not in self._specs:
            raise GraphError(
                f"graph '{self.name}': output names unknown node '{self.output}'"
                f"{did_you_mean(self.output, self._specs)}."
            )
        return order

    def inputs(self) -> dict[str, Input]:
        """The graph's inputs by name."""
        specs = self._specs
        return {
            n: s
            for n in self._input_names
            if (s := specs.get(n)) is not None and is_kind(s, Input) and s.exposed
        }

    def bind(self, inputs: Mapping[str, Any] | None) -> Graph:
        """A copy whose inputs hold these values; one sentence for a missing or bad one."""
        return bind_inputs(self, inputs)

    # ------------------------------------------------------------------ running
    def run(self, *, inputs: Mapping[str, Any] | None = None, **options: Any) -> RunResult:
        """Run synchronously: `dagagents.run(graph, **options)` (options: `RunOptions`);
        `inputs` give the graph's inputs.

        Inside a running event loop (Jupyter, an async web handler) a blocking run cannot
        start its own loop: that is refused in one sentence before any coroutine exists, so
        no "coroutine was never awaited" warning follows it."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise UserError(
                f"graph '{self.name}': Graph.run() cannot be called from a running event loop "
                "(Jupyter, async code); use `await graph.arun(...)` there instead."
            )
        import dagagents  # the public facade; the model never imports the engine itself

        return dagagents.run(self.bind(inputs), **options)

    async def arun(self, *, inputs: Mapping[str, Any] | None = None, **options: Any) -> RunResult:
        """Run inside an existing event loop: `await dagagents.arun(graph, **options)`."""
        import dagagents

        return await dagagents.arun(self.bind(inputs), **options)

    def astream(self, **options: Any) -> AsyncIterator[Any]:
        """`async for event in graph.astream(...)`: the run's events as they happen (token
        deltas too), then its RunResult. Options as for `run`."""
        import dagagents

        return dagagents.astream(self, **options)

    def approval(
        self,
        name: str,
        depends_on: Iterable[str] | None = None,
        *,
        prompt: str = "Approve?",
        tags: dict[str, str] | None = None,
    ) -> Approval:
        """A node that waits for a person. Once its dependencies are done the run reaches it
        and waits (other branches keep going); `approve`, `dagagents approve`, the web view or
        an `approver=` callback decides. Approved, its value (by default its input: the one
        dependency's output, else {dependency: output}) flows on as its output."""
        spec = Approval(
            name=name, depends_on=tuple(depends_on or ()), prompt=prompt, tags=tags or {}
        )
        self.add(spec)
        return spec

    def approve(
        self,
        run: str | None,
        node: str,
        *,
        approved: bool = True,
        value: Any = None,
        reason: str | None = None,
        store: Any = ".dagagents",
    ) -> None:
        """Record a decision for a waiting approval node of `run` (None: the latest); the
        next run of this graph resumes from its checkpoints and continues past it."""
        import dagagents

        dagagents.record_decision(
            store, run, node, approved=approved, value=value, reason=reason, graph=self.name
        )

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, target: str | Path) -> Graph:
        """Load a module-level Graph from `path.py` (attribute `graph`) or `path.py:attr`."""
        return load_graph(str(target))

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, nodes={len(self._specs)})"


def validate_specs(graph_name: str, specs: dict[str, NodeSpec], g: nx.DiGraph) -> list[str]:
    """Check dependencies, placeholders, step parameters and acyclicity; returns the nodes in
    dependency order."""
    where = f"graph '{graph_name}'"
    # A graph built dependencies first (the usual way) is in dependency order as added: then
    # it is acyclic and that order is the answer, with no pass over its edges.
    seen: set[str] = set()
    in_order = True
    for spec in specs.values():
        validate_spec(where, spec, specs)
        if in_order:
            in_order = seen.issuperset(spec.depends_on)
            seen.add(spec.name)
    return list(specs) if in_order else check_acyclic(where, g)


def validate_spec(where: str, spec: NodeSpec, known: Mapping[str, NodeSpec]) -> None:
    """One node's dependencies, placeholders, step parameters, condition and structured
    fields against the `known` nodes. (Runs for every node of every run: a step's parameters
    are read once, and the local-name map is built only when something reads it.)"""
    if not is_kind(spec, Step):
        _check_dependencies(where, spec, known)
        if spec.when is not None:
            _check_condition(where, spec, _local_names(spec))
        if is_kind(spec, AgentTask):
            _check_prompt(where, spec, spec, known)
        return
    params = step_params(spec.fn)
    local = _local_names(spec) if params or spec.when is not None else {}
    if params:
        _check_step_params_name_nodes(where, spec, params, local, known)
    _check_dependencies(where, spec, known)
    if spec.when is not None:
        _check_condition(where, spec, local)
    split = spec if is_kind(spec, MapSplit) else None
    if split is not None and is_kind(split.proto, AgentTask):
        _check_prompt(where, spec, split.proto, known)
    elif params:
        _check_step_params_are_dependencies(where, spec, params, local)
    if split is not None:
        _check_map(where, split, known)


def _local_names(spec: NodeSpec) -> dict[str, str]:
    """The name the node uses for each dependency -> the dependency."""
    deps = spec.depends_on
    if spec.aliases:
        return {spec.local(d): d for d in deps}
    return dict(zip(deps, deps, strict=True))


def _check_step_params_name_nodes(
    where: str,
    spec: Step,
    params: Iterable[inspect.Parameter],
    local: Mapping[str, str],
    known: Mapping[str, NodeSpec],
) -> None:
    for p in params:
        if local.get(p.name, p.name) != p.name or p.name in spec.bound:
            continue  # an aliased name (a namespaced node keeps its body's names)
        if p.name not in known and (p.name in spec.params or p.default is p.empty):
            raise GraphError(
                f"{where}: step '{spec.name}' parameter '{p.name}' names no node"
                f"{did_you_mean(p.name, known)}."
            )


def _check_dependencies(where: str, spec: NodeSpec, known: Mapping[str, NodeSpec]) -> None:
    for dep in spec.depends_on:
        if dep == spec.name:
            raise GraphError(f"{where}: node '{spec.name}' depends on itself.")
        if dep not in known:
            raise GraphError(
                f"{where}: node '{spec.name}' depends on unknown node '{dep}'"
                f"{did_you_mean(dep, known)}."
            )
    for dep in spec.optional:
        if dep not in spec.depends_on:
            raise GraphError(
                f"{where}: node '{spec.name}' lists '{dep}' as optional but does not depend on it."
            )


def _check_condition(where: str, spec: NodeSpec, local: Mapping[str, str]) -> None:
    if spec.when is None:
        return
    for p in step_params(spec.when):
        if p.name not in local and p.default is p.empty:
            raise GraphError(
                f"{where}: node '{spec.name}' condition parameter '{p.name}' is not one of "
                f"its dependencies ({', '.join(local) or 'none'})."
            )


def _check_prompt(
    where: str, spec: NodeSpec, prompt_spec: AgentTask, known: Mapping[str, NodeSpec]
) -> None:
    plocal = {prompt_spec.local(d): d for d in prompt_spec.depends_on}
    extra = ("item", "index") if prompt_spec is not spec else ()
    for ph in prompt_spec.placeholders():
        if ph not in plocal and ph not in extra:
            deps = ", ".join(plocal) or "none"
            raise GraphError(
                f"{where}: node '{spec.name}' prompt placeholder '{{{ph}}}' is not one of "
                f"its dependencies ({deps}); add it to depends_on or escape it as "
                f"'{{{{{ph}}}}}'."
            )
    for field in prompt_fields(prompt_spec.prompt):
        root = field_root(field)
        if root in plocal:
            check_field(
                f"{where}: node '{spec.name}'",
                "prompt placeholder",
                field,
                output_model(known.get(plocal[root])),
                shown="{" + field + "}",
            )


def _check_step_params_are_dependencies(
    where: str, spec: Step, params: Iterable[inspect.Parameter], local: Mapping[str, str]
) -> None:
    for p in params:
        if p.name not in local and p.default is p.empty and p.name not in spec.bound:
            raise GraphError(
                f"{where}: step '{spec.name}' parameter '{p.name}' is not among its "
                f"dependencies ({', '.join(spec.depends_on) or 'none'})."
            )


def _check_map(where: str, spec: MapSplit, known: Mapping[str, NodeSpec]) -> None:
    source = known.get(spec.depends_on[0]) if spec.depends_on else None
    check_field(f"{where}: map '{spec.map_name}'", "over", spec.over, output_model(source))
    if isinstance(spec.proto, Step):
        item_locals = {spec.proto.local(d) for d in spec.proto.depends_on}
        for p in step_params(spec.proto.fn):
            if p.name not in item_locals | {"item", "index"} and p.default is p.empty:
                raise GraphError(
                    f"{where}: map '{spec.map_name}' function parameter '{p.name}' names "
                    f"no node{did_you_mean(p.name, known)}."
                )


def prompt_fields(template: str) -> list[str]:
    """Placeholders that read into a dependency's output (`{grade.feedback}`, `{s.items[0]}`)."""
    return [
        field
        for _, field, _, _ in _formatter.parse(template)
        if field and ("." in field or "[" in field)
    ]


def topological_order(succ: Mapping[str, Iterable[str]]) -> list[str]:
    """Every node of the successor map `succ` after all its predecessors (Kahn's algorithm:
    one pass over the edges, ~5x cheaper per node than `nx.topological_sort`). Raises
    ValueError on a cycle (validated graphs have none)."""
    indegree = dict.fromkeys(succ, 0)
    for nbrs in succ.values():
        for s in nbrs:
            indegree[s] += 1
    order = [n for n, d in indegree.items() if d == 0]
    for node in order:  # grows as it goes
        for s in succ[node]:
            indegree[s] -= 1
            if indegree[s] == 0:
                order.append(s)
    if len(order) != len(indegree):
        raise ValueError("the graph has a cycle")
    return order


def check_acyclic(where: str, g: nx.DiGraph) -> list[str]:
    """The nodes in dependency order; GraphError naming a cycle if there is one."""
    try:
        return topological_order(dict(g.adjacency()))
    except ValueError:
        pass
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:  # (topological_order found one: never reached)
        return list(nx.topological_sort(g))
    path = [u for u, _ in cycle] + [cycle[0][0]]
    raise GraphError(f"{where}: dependency cycle {' -> '.join(path)}.")


def load_module(path: str | os.PathLike[str], what: str = "module") -> ModuleType:
    """Import a Python file under a stable name (so pydantic classes it defines decode on
    resume); errors become one-sentence UserErrors naming the file. Its folder is importable
    while it loads, so a graph file can import its neighbours (e.g. a workers module)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} '{path}' does not exist.")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"dagagents_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{what} '{path}' is not a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    parent = str(path.parent.resolve())
    sys.path.insert(0, parent)
    try:
        spec.loader.exec_module(module)
    except UserError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    except SyntaxError as exc:
        raise UserError(f"{path}:{exc.lineno}: syntax error: {exc.msg}.") from None
    except Exception as exc:
        raise UserError(
            f"{path}: importing the {what} raised {type(exc).__name__}: {clip(exc)}".rstrip(".")
            + "."
        ) from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(parent)
    return module


def load_graph(target: str) -> Graph:
    """Import a Python file and return its Graph (`graph` attribute unless `path:attr`)."""
    path_str, _, attr = target.partition(":")
    attr = attr or "graph"
    path = Path(path_str)
    module = load_module(path, "graph file")
    obj = getattr(module, attr, None)
    if callable(obj) and not isinstance(obj, Graph):
        obj = _call_factory(path, attr, obj)
    if not isinstance(obj, Graph):
        raise UserError(
            f"{path}: no Graph named '{attr}' (define a module-level `{attr} = Graph(...)`)."
        )
    return obj


def _call_factory(path: Path, attr: str, factory: Callable[..., Any]) -> Any:
    """`graph = make_graph` style: call it with no arguments; a factory that needs some or
    raises is one sentence naming the file and the function, not a traceback."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        needed = [
            p.name
            for p in signature.parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if needed:
            raise UserError(
                f"{path}: '{attr}' is a function that needs arguments "
                f"({', '.join(needed)}); a graph factory must take none."
            )
    try:
        return factory()
    except UserError as exc:
        raise type(exc)(f"{path}: {attr}(): {exc}") from None
    except RecursionError:
        raise UserError(f"{path}: calling {attr}() recursed too deeply.") from None
    except Exception as exc:
        raise UserError(
            f"{path}: calling {attr}() raised {type(exc).__name__}: {clip(exc)}".rstrip(".") + "."
        ) from None
