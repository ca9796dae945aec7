"""Checkpoint keys: sha256 of a node's fingerprint and its dependencies' output digests.

Keys chain through output digests, so an edited prompt changes that node's key and, only if
its output changes, its descendants' keys (early cutoff).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from dagagents.nodes import NodeSpec, Step, spec_digest


def checkpoint_key(spec: NodeSpec, digests: Mapping[str, str], memo: dict[int, Any]) -> str:
    """The key of `spec` given the output digests of its dependencies."""
    deps = sorted((d, digests[d]) for d in spec.depends_on)
    # Steps are keyed by name too: closures made by one factory share their source code.
    name = spec.name if isinstance(spec, Step) else None
    payload = orjson.dumps([spec_digest(spec, memo), deps, name])
    return hashlib.sha256(payload).hexdigest()
