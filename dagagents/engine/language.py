"""Runtime side of the graph language: what a node receives, and `when=` conditions.

A node receives its dependencies' outputs under the names its prompt or function uses (a
namespaced subgraph node keeps its body's names); a condition-skipped optional dependency
arrives as None. A function with `**outputs` receives every dependency, including ones an
expansion added while the graph ran (a map's items, a loop's rounds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagagents.errors import GraphError
from dagagents.model.language import SKIPPED_DIGEST, LoopRound, MapCollect
from dagagents.model.nodes import NodeSpec, Step, is_kind, step_params, takes_var_keyword
from dagagents.observe.runs import CONDITION_FALSE

__all__ = [
    "CONDITION_FALSE",
    "SKIPPED_DIGEST",
    "condition_holds",
    "loop_note",
    "map_item_failure",
    "node_inputs",
    "step_kwargs",
]


def node_inputs(spec: NodeSpec, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Dependency outputs keyed by the names `spec` uses for them (None if skipped)."""
    deps = spec.depends_on
    if not deps:
        return {}
    if not spec.aliases and not spec.optional:
        return {dep: outputs[dep] for dep in deps}
    return {spec.local(dep): outputs.get(dep) for dep in deps}


def step_kwargs(spec: Step, inputs: dict[str, Any]) -> dict[str, Any]:
    """A step's keyword arguments: its named parameters, or everything for `**outputs`."""
    if not inputs or takes_var_keyword(spec.fn):
        kwargs = inputs
    else:
        kwargs = {p: inputs[p] for p in spec.params if p in inputs}
    return {**kwargs, **spec.bound} if spec.bound else kwargs


def condition_holds(spec: NodeSpec, inputs: dict[str, Any]) -> bool:
    """Evaluate `spec.when` on its dependency outputs (by parameter name)."""
    assert spec.when is not None
    kwargs = {p.name: inputs[p.name] for p in step_params(spec.when) if p.name in inputs}
    try:
        return bool(spec.when(**kwargs))
    except Exception as exc:
        raise GraphError(
            f"node '{spec.name}': its when= condition raised {type(exc).__name__}: {exc}".rstrip(
                "."
            )
            + "."
        ) from None


def loop_note(spec: NodeSpec, output: Any) -> str | None:
    """The warning for a loop's last allowed round ending without `until` holding."""
    if not is_kind(spec, LoopRound) or spec.loop.until is None:
        return None
    if spec.round < spec.loop.max_rounds or (isinstance(output, dict) and output.get("done")):
        return None
    return (
        f"loop '{spec.loop.name}' reached max_rounds={spec.loop.max_rounds} without its "
        "until condition holding; its output is the last round's"
    )


def map_item_failure(spec: NodeSpec, failed: str, error: str | None) -> str | None:
    """If `spec` is a map and `failed` one of its items, why the map failed."""
    if not isinstance(spec, MapCollect) or not failed.startswith(spec.name + "["):
        return None
    if failed.endswith("[*]"):
        return None
    return f"item '{failed}' failed: {error}"
