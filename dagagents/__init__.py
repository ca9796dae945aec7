"""dagagents: run multi-agent LLM work as a DAG.

Eager scheduling under concurrency and rate limits, content-addressed checkpoints so partial
graphs resume, and traces that tell which agent cost what.
"""

from dagagents.agents import Agent
from dagagents.errors import (
    BudgetExceeded,
    DagAgentsError,
    GraphError,
    PlanError,
    ProviderError,
    StoreError,
    UserError,
)
from dagagents.estimate import Estimate, estimate
from dagagents.executors import Executor, LocalExecutor
from dagagents.graph import Graph
from dagagents.limits import RateLimits
from dagagents.nodes import AgentTask, Expansion, NodeSpec, Step
from dagagents.orchestrator import Orchestrator
from dagagents.plan import Plan, Subtask
from dagagents.pricing import Pricing, cost_usd
from dagagents.providers import Provider, Script, SimulatedProvider
from dagagents.result import NodeRecord, RunFailed, RunResult
from dagagents.retry import RetryPolicy
from dagagents.store import Store
from dagagents.summary import RunData, Summary, load_run, summarize

__version__ = "0.1.0"

# Heavy or optional dependencies load on first use: `anthropic` takes about a second to import
# and Dask is an extra (`pip install dagagents[dask]`).
_LAZY = {
    "AnthropicProvider": "dagagents.providers.anthropic",
    "DaskExecutor": "dagagents.executors.dask",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dagagents' has no attribute '{name}'")


__all__ = [
    "Agent",
    "AgentTask",
    "AnthropicProvider",
    "BudgetExceeded",
    "DagAgentsError",
    "DaskExecutor",
    "Estimate",
    "Executor",
    "Expansion",
    "Graph",
    "GraphError",
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
    "RunData",
    "RunResult",
    "Script",
    "SimulatedProvider",
    "Step",
    "Store",
    "StoreError",
    "Summary",
    "Subtask",
    "UserError",
    "cost_usd",
    "estimate",
    "load_run",
    "summarize",
    "__version__",
]
