"""The `--executor` choice on the command line, turned into an executor (or a clear refusal)."""

from __future__ import annotations

from dagagents.engine.executors.base import Executor
from dagagents.errors import UserError

EXECUTORS = ("local", "dask", "dask-local")


def executor_from_options(
    kind: str,
    *,
    scheduler_address: str | None = None,
    dask_workers: int | None = None,
    semaphore: str | None = None,
) -> Executor | None:
    """None for the default local executor, else a DaskExecutor (imported only then).

    `dask` connects to `scheduler_address` (or Dask's own `scheduler-address` setting, e.g.
    DASK_SCHEDULER_ADDRESS); `dask-local` starts a LocalCluster of `dask_workers` processes
    for the run.
    """
    if kind not in EXECUTORS:
        raise UserError(f"unknown executor '{kind}' (choose one of: {', '.join(EXECUTORS)}).")
    if kind == "local":
        stray = [
            flag
            for flag, value in (
                ("--scheduler-address", scheduler_address),
                ("--dask-workers", dask_workers),
                ("--dask-semaphore", semaphore),
            )
            if value is not None
        ]
        if stray:
            raise UserError(f"{stray[0]} needs --executor dask or --executor dask-local.")
        return None
    from dagagents.engine.executors.dask import DaskExecutor, require_distributed

    require_distributed()
    if kind == "dask":
        if dask_workers is not None:
            raise UserError(
                "--dask-workers applies to --executor dask-local; a cluster at "
                "--scheduler-address has its own workers."
            )
        address = scheduler_address or _configured_address()
        if not address:
            raise UserError(
                "--executor dask needs --scheduler-address tcp://HOST:PORT "
                "(or --executor dask-local for a cluster on this machine)."
            )
        return DaskExecutor(address, semaphore_name=semaphore)
    if scheduler_address is not None:
        raise UserError(
            "--scheduler-address applies to --executor dask; --executor dask-local starts "
            "its own cluster."
        )
    if dask_workers is not None and dask_workers < 1:
        raise UserError(f"--dask-workers must be at least 1 (got {dask_workers}).")
    return DaskExecutor(None, n_workers=dask_workers, semaphore_name=semaphore)


def _configured_address() -> str | None:
    import dask

    value = dask.config.get("scheduler-address", None)
    return str(value) if value else None
