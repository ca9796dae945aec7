"""dagagents: run multi-agent LLM work as a DAG.

Eager scheduling under concurrency and rate limits, content-addressed checkpoints so partial
graphs resume, and traces that tell which agent cost what.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dagagents.errors import (
    BudgetExceeded,
    DagAgentsError,
    GraphError,
    LimitsUnavailable,
    PlanError,
    ProviderError,
    StoreError,
    UserError,
)

if TYPE_CHECKING:
    from dagagents.engine.approvals import ApprovalRequest, Decision, record_decision
    from dagagents.engine.cache_warming import CacheWarming
    from dagagents.engine.executors import Executor, LocalExecutor
    from dagagents.engine.executors.dask import DaskExecutor
    from dagagents.engine.limits import RateLimits
    from dagagents.engine.retry import RetryPolicy
    from dagagents.engine.run import RunOptions, arun, run
    from dagagents.engine.shared_limits import SharedLimits
    from dagagents.engine.stream import astream
    from dagagents.model.agents import Agent
    from dagagents.model.graph import Graph
    from dagagents.model.nodes import AgentTask, Approval, Expansion, NodeSpec, Step
    from dagagents.model.orchestrator import Orchestrator
    from dagagents.model.plan import Plan, Subtask
    from dagagents.observe.estimate import Estimate, estimate
    from dagagents.observe.pricing import Pricing, cost_usd
    from dagagents.observe.runs import NodeRecord, RunFailed, RunResult
    from dagagents.observe.summary import RunData, Summary, load_run, summarize
    from dagagents.providers import Provider, Script, SimulatedProvider
    from dagagents.providers.anthropic import AnthropicProvider
    from dagagents.store import Store

__version__ = "0.1.0"

# Every public name but the errors loads on first use (start-up time: `dagagents run` on the
# simulated provider should not wait for what it does not use, such as the orchestrator's plan
# models, the estimator, the trace summary, the shared limits; `anthropic` alone takes about a
# second to import, and Dask is an extra: `pip install dagagents[dask]`). A name is imported
# from its room the first time it is read, then kept in this module like an eager import.
_LAZY = {
    "ApprovalRequest": "dagagents.engine.approvals",
    "Decision": "dagagents.engine.approvals",
    "record_decision": "dagagents.engine.approvals",
    "CacheWarming": "dagagents.engine.cache_warming",
    "Executor": "dagagents.engine.executors",
    "LocalExecutor": "dagagents.engine.executors",
    "DaskExecutor": "dagagents.engine.executors.dask",
    "RateLimits": "dagagents.engine.limits",
    "RetryPolicy": "dagagents.engine.retry",
    "RunOptions": "dagagents.engine.run",
    "arun": "dagagents.engine.run",
    "run": "dagagents.engine.run",
    "SharedLimits": "dagagents.engine.shared_limits",
    "astream": "dagagents.engine.stream",
    "Agent": "dagagents.model.agents",
    "Graph": "dagagents.model.graph",
    "AgentTask": "dagagents.model.nodes",
    "Approval": "dagagents.model.nodes",
    "Expansion": "dagagents.model.nodes",
    "NodeSpec": "dagagents.model.nodes",
    "Step": "dagagents.model.nodes",
    "Orchestrator": "dagagents.model.orchestrator",
    "Plan": "dagagents.model.plan",
    "Subtask": "dagagents.model.plan",
    "Estimate": "dagagents.observe.estimate",
    "estimate": "dagagents.observe.estimate",
    "Pricing": "dagagents.observe.pricing",
    "cost_usd": "dagagents.observe.pricing",
    "NodeRecord": "dagagents.observe.runs",
    "RunFailed": "dagagents.observe.runs",
    "RunResult": "dagagents.observe.runs",
    "RunData": "dagagents.observe.summary",
    "Summary": "dagagents.observe.summary",
    "load_run": "dagagents.observe.summary",
    "summarize": "dagagents.observe.summary",
    "Provider": "dagagents.providers",
    "Script": "dagagents.providers",
    "SimulatedProvider": "dagagents.providers",
    "AnthropicProvider": "dagagents.providers.anthropic",
    "Store": "dagagents.store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dagagents' has no attribute '{name}'")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Agent",
    "AgentTask",
    "Approval",
    "ApprovalRequest",
    "AnthropicProvider",
    "BudgetExceeded",
    "CacheWarming",
    "DagAgentsError",
    "DaskExecutor",
    "Decision",
    "Estimate",
    "Executor",
    "Expansion",
    "Graph",
    "GraphError",
    "LimitsUnavailable",
    "LocalExecutor",
    "NodeRecord",
    "NodeSpec",
    "Orchestrator",
    "Plan",
    "PlanError",
    "Pricing",
    "Provider",
    "ProviderError",
    "RateLimits",
    "RetryPolicy",
    "RunFailed",
    "RunOptions",
    "RunData",
    "RunResult",
    "Script",
    "SharedLimits",
    "SimulatedProvider",
    "Step",
    "Store",
    "StoreError",
    "Summary",
    "Subtask",
    "UserError",
    "arun",
    "astream",
    "cost_usd",
    "estimate",
    "load_run",
    "run",
    "record_decision",
    "summarize",
    "__version__",
]
