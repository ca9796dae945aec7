"""Where node bodies run. The scheduler never changes; only the executor does."""

from dagagents.executors.base import Executor
from dagagents.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor"]
