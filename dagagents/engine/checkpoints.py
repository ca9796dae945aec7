"""Checkpoint keys: sha256 of a node's fingerprint, its name and its dependencies' output digests.

Keys chain through output digests, so an edited prompt changes that node's key and, only if
its output changes, its descendants' keys (early cutoff).

The node's name is part of the key. For Steps, closures made by one factory share their source
code; for agent tasks, several nodes may ask one agent the same prompt to get independent
samples (a fan-out of drafts). Keying by fingerprint alone would collapse those into one
checkpoint, and a resumed run would hand every such node the same answer. A map item is keyed
by its map's name and its item's content (`key_name`), so reordering a list reruns nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from dagagents.model.nodes import NodeSpec, spec_digest


def checkpoint_key(spec: NodeSpec, digests: Mapping[str, str], memo: dict[int, Any]) -> str:
    """The key of `spec` given the output digests of its dependencies."""
    deps = sorted((d, digests[d]) for d in spec.depends_on)
    payload = orjson.dumps([spec_digest(spec, memo), deps, spec.key_name or spec.name])
    return hashlib.sha256(payload).hexdigest()
