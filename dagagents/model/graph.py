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
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, overload

import networkx as nx

from dagagents.errors import GraphError, UserError, clip
from dagagents.model.agents import Agent
from dagagents.model.nodes import (
    AgentTask,
    Expansion,
    NodeSpec,
    Step,
    step_params,
    takes_var_keyword,
)

if TYPE_CHECKING:
    from dagagents.observe.runs import RunResult
    from dagagents.providers.base import Provider

F = Callable[..., Any]


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

    def __init__(self, name: str = "graph", *, simulator: Provider | None = None) -> None:
        self.name = name
        self.nx: nx.DiGraph = nx.DiGraph()
        self._specs: dict[str, NodeSpec] = {}
        # The provider used offline (no API key): lets example graphs script realistic answers.
        self.simulator = simulator

    # ----------------------------------------------------------------- building
    def add(self, spec: NodeSpec) -> NodeSpec:
        """Add a node spec. Dependencies may be added later; `validate` checks them."""
        if spec.name in self._specs:
            raise GraphError(f"graph '{self.name}': duplicate node name '{spec.name}'.")
        if not spec.name or not spec.name.replace("-", "_").replace(".", "_").isidentifier():
            raise GraphError(
                f"graph '{self.name}': node name {spec.name!r} must be an identifier "
                "(letters, digits, '_', '-', '.')."
            )
        self._specs[spec.name] = spec
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
    ) -> AgentTask:
        """An agent node. `{dep}` placeholders in `prompt` take dependency outputs."""
        spec = AgentTask(
            name=name,
            agent=agent,
            prompt=prompt,
            depends_on=tuple(depends_on or ()),
            timeout=timeout,
            expand=expand,
            tags=tags or {},
            estimate=estimate,
        )
        self.add(spec)
        return spec

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
    ) -> F | Callable[[F], F]:
        """Decorator: a Python node whose parameter names are its dependencies."""

        def register(f: F) -> F:
            self.add_step(
                name or f.__name__,
                f,
                depends_on=depends_on,
                timeout=timeout,
                expand=expand,
                version=version,
                estimate=estimate,
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

    def agents(self) -> dict[str, Agent]:
        """Every distinct agent used by the graph, by agent name."""
        return {s.agent.name: s.agent for s in self._specs.values() if isinstance(s, AgentTask)}

    def copy(self) -> Graph:
        """A shallow copy: runs expand the copy, never the user's graph."""
        g = Graph(self.name, simulator=self.simulator)
        g.nx = self.nx.copy()
        g._specs = dict(self._specs)
        return g

    # --------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise GraphError with one sentence for the first problem found."""
        validate_specs(self.name, self._specs, self.nx)

    # ------------------------------------------------------------------ running
    def run(self, **options: Any) -> RunResult:
        """Run synchronously. Options: see `dagagents.engine.run.arun`.

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
        from dagagents.engine.run import run_sync

        return run_sync(self, **options)

    async def arun(self, **options: Any) -> RunResult:
        """Run inside an existing event loop."""
        from dagagents.engine.run import arun

        return await arun(self, **options)

    def astream(self, **options: Any) -> AsyncIterator[Any]:
        """`async for event in graph.astream(...)`: the run's events as they happen (token
        deltas too), then its RunResult. Options as for `run`."""
        import dagagents

        return dagagents.astream(self, **options)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, target: str | Path) -> Graph:
        """Load a module-level Graph from `path.py` (attribute `graph`) or `path.py:attr`."""
        return load_graph(str(target))

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, nodes={len(self._specs)})"


def validate_specs(graph_name: str, specs: dict[str, NodeSpec], g: nx.DiGraph) -> None:
    """Check dependencies, placeholders, step parameters and acyclicity."""
    where = f"graph '{graph_name}'"
    for spec in specs.values():
        validate_spec(where, spec, specs)
    check_acyclic(where, g)


def validate_spec(where: str, spec: NodeSpec, known: Mapping[str, NodeSpec]) -> None:
    """One node's dependencies, placeholders and step parameters against the `known` nodes."""
    if isinstance(spec, Step):
        for p in step_params(spec.fn):
            if p.name not in known and (p.name in spec.params or p.default is p.empty):
                raise GraphError(
                    f"{where}: step '{spec.name}' parameter '{p.name}' names no node"
                    f"{did_you_mean(p.name, known)}."
                )
    for dep in spec.depends_on:
        if dep == spec.name:
            raise GraphError(f"{where}: node '{spec.name}' depends on itself.")
        if dep not in known:
            raise GraphError(
                f"{where}: node '{spec.name}' depends on unknown node '{dep}'"
                f"{did_you_mean(dep, known)}."
            )
    if isinstance(spec, AgentTask):
        for ph in spec.placeholders():
            if ph not in spec.depends_on:
                deps = ", ".join(spec.depends_on) or "none"
                raise GraphError(
                    f"{where}: node '{spec.name}' prompt placeholder '{{{ph}}}' is not one of "
                    f"its dependencies ({deps}); add it to depends_on or escape it as "
                    f"'{{{{{ph}}}}}'."
                )
    elif isinstance(spec, Step):
        for p in step_params(spec.fn):
            if p.name not in spec.depends_on and p.default is p.empty:
                raise GraphError(
                    f"{where}: step '{spec.name}' parameter '{p.name}' is not among its "
                    f"dependencies ({', '.join(spec.depends_on) or 'none'})."
                )


def check_acyclic(where: str, g: nx.DiGraph) -> None:
    if nx.is_directed_acyclic_graph(g):
        return
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return
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
