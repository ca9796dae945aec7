"""Where node bodies run. The scheduler never changes; only the executor does."""

from dagagents.engine.executors.base import Executor
from dagagents.engine.executors.local import LocalExecutor

__all__ = ["DaskExecutor", "Executor", "LocalExecutor"]


def __getattr__(name: str) -> object:
    """`DaskExecutor` is imported on first use: the local executor needs no Dask."""
    if name == "DaskExecutor":
        from dagagents.engine.executors.dask import DaskExecutor

        return DaskExecutor
    raise AttributeError(f"module 'dagagents.engine.executors' has no attribute {name!r}")
