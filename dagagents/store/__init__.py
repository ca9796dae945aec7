"""The store: content-addressed objects (`objects/ab/cdef…`) and run folders (`runs/<id>/`) on
a local disk or any fsspec URL, and the codec that turns outputs into exact bytes and back.

May import: `dagagents.errors` only (never a provider, the engine or the model).
"""

from dagagents.store import codec
from dagagents.store.store import (
    TMP_PREFIX,
    CorruptObject,
    GcResult,
    Store,
    StoredOutput,
    pack,
    run_state,
    unpack,
)

__all__ = [
    "TMP_PREFIX",
    "CorruptObject",
    "GcResult",
    "Store",
    "StoredOutput",
    "codec",
    "pack",
    "run_state",
    "unpack",
]
