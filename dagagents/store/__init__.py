"""The store: content-addressed objects (small ones packed into one append-only file per
writing process, `packs/`, on a local disk; others one file each, `objects/ab/cdef…`) and run
folders (`runs/<id>/`) on a local disk or any fsspec URL, and the codec that turns outputs into
exact bytes and back.

May import: `dagagents.errors` only (never a provider, the engine or the model).
"""

from dagagents.store import codec
from dagagents.store.store import (
    TMP_PREFIX,
    CorruptObject,
    GcResult,
    Store,
    StoredOutput,
    StoreWarning,
    manifest_problem,
    no_runs_message,
    no_store_message,
    pack,
    run_state,
    unpack,
    warn_once,
)

__all__ = [
    "TMP_PREFIX",
    "CorruptObject",
    "GcResult",
    "Store",
    "StoreWarning",
    "StoredOutput",
    "codec",
    "manifest_problem",
    "no_runs_message",
    "no_store_message",
    "pack",
    "run_state",
    "unpack",
    "warn_once",
]
