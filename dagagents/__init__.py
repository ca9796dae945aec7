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
from dagagents.nodes import AgentTask, Expansion, NodeSpec, Step
from dagagents.orchestrator import Orchestrator
from dagagents.plan import Plan, Subtask
from dagagents.providers import Provider, Script, SimulatedProvider
from dagagents.result import NodeRecord, RunFailed, RunResult
from dagagents.store import Store
from dagagents.summary import RunData, Summary, load_run, summarize

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentTask",
    "BudgetExceeded",
    "DagAgentsError",
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
    "Provider",
    "ProviderError",
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
    "estimate",
    "load_run",
    "summarize",
    "__version__",
]
