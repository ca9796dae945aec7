"""dagagents: run multi-agent LLM work as a DAG.

Eager scheduling under concurrency and rate limits, content-addressed checkpoints so partial
graphs resume, and traces that tell which agent cost what.
"""

from dagagents.engine.approvals import ApprovalRequest, Decision, record_decision
from dagagents.engine.cache_warming import CacheWarming
from dagagents.engine.executors import Executor, LocalExecutor
from dagagents.engine.limits import RateLimits
from dagagents.engine.retry import RetryPolicy
from dagagents.engine.run import RunOptions, arun, run
from dagagents.engine.shared_limits import SharedLimits
from dagagents.engine.stream import astream
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
from dagagents.store import Store

__version__ = "0.1.0"

# Heavy or optional dependencies load on first use: `anthropic` takes about a second to import
# and Dask is an extra (`pip install dagagents[dask]`).
_LAZY = {
    "AnthropicProvider": "dagagents.providers.anthropic",
    "DaskExecutor": "dagagents.engine.executors.dask",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dagagents' has no attribute '{name}'")


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
