"""Checkpoints: keys, lookup, persist, and the duration history a run reads from the store.

Key = sha256 of a node's fingerprint, its name and its dependencies' output digests. Keys chain
through output digests, so an edited prompt changes that node's key and, only if its output
changes, its descendants' keys (early cutoff).

The node's name is part of the key. For Steps, closures made by one factory share their source
code; for agent tasks, several nodes may ask one agent the same prompt to get independent
samples (a fan-out of drafts). Keying by fingerprint alone would collapse those into one
checkpoint, and a resumed run would hand every such node the same answer. A map item is keyed
by its map's name and its item's content (`key_name`), so reordering a list reruns nothing.

A local store is read and written inline on the event loop (a thread hop costs more than the
file operation); any other store (fsspec: s3, gcs, ...) is read and written in a thread, so the
loop keeps scheduling while a checkpoint uploads.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from dagagents.errors import UserError
from dagagents.model.nodes import NodeSpec, spec_digest
from dagagents.store import CorruptObject, Store, codec


def checkpoint_key(spec: NodeSpec, digests: Mapping[str, str], memo: dict[int, Any]) -> str:
    """The key of `spec` given the output digests of its dependencies."""
    deps = sorted((d, digests[d]) for d in spec.depends_on)
    payload = orjson.dumps([spec_digest(spec, memo), deps, spec.key_name or spec.name])
    return hashlib.sha256(payload).hexdigest()


@dataclass
class Hit:
    """A usable checkpoint: the decoded output, its digest and what the store kept about it."""

    value: Any
    digest: str
    meta: dict[str, Any]


class Miss:
    """No usable checkpoint; `warning` says why one was passed over (corrupt, unreadable)."""

    __slots__ = ("warning",)

    def __init__(self, warning: str | None = None) -> None:
        self.warning = warning


MISS = Miss()


class Rerun:
    """The nodes `--rerun` names: exact names or glob patterns (`research*`)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._names = set(self.patterns)  # `jokes[3]` is a name (a map item) as well as a glob
        self._globs = [p for p in self.patterns if _is_glob(p)]

    def __contains__(self, name: object) -> bool:
        if not self.patterns:
            return False
        return name in self._names or any(fnmatch.fnmatchcase(str(name), g) for g in self._globs)

    def check(self, graph: str, known: Iterable[str]) -> None:
        """Refuse a pattern that matches no node of the graph nor of its last run."""
        names = set(known)
        for pattern in self.patterns:
            if pattern in names or _grown_name(pattern, names):
                continue
            if _is_glob(pattern) and any(fnmatch.fnmatchcase(n, pattern) for n in names):
                continue
            raise UserError(f"--rerun names unknown node '{pattern}' in graph '{graph}'.")


def _grown_name(name: str, known: set[str]) -> bool:
    """A node a run adds as it goes (a map item `jokes[3]`, a loop round `refine[2].joke`):
    `--rerun` may name it before it exists."""
    return "[" in name and name.split("[", 1)[0] in known


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class Checkpoints:
    """The run's view of its store: which key a node has, whether it is stored, storing it."""

    def __init__(self, store: Store, *, fresh: bool = False, rerun: Rerun | None = None) -> None:
        self.store = store
        self.fresh = fresh
        self.rerun = rerun or Rerun(())
        # Local files: inline is faster than a thread hop. Remote: never block the loop.
        self.inline = store.is_local
        self._memo: dict[int, Any] = {}

    def key(self, spec: NodeSpec, digests: Mapping[str, str]) -> str:
        return checkpoint_key(spec, digests, self._memo)

    def wanted(self, name: str) -> bool:
        """May this node be answered from the store at all?"""
        return not self.fresh and name not in self.rerun

    def lookup(self, spec: NodeSpec, key: str) -> Hit | Miss:
        """The intact, decodable checkpoint under `key`; a corrupt one is discarded."""
        try:
            stored = self.store.get(key)
        except CorruptObject as exc:
            self.store.discard(key)
            return Miss(f"checkpoint {key[:12]} is corrupt ({exc}); recomputing")
        if stored is None:
            return MISS
        try:
            value = codec.decode(stored.value, codec.output_hint(spec))
        except Exception as exc:
            return Miss(f"checkpoint unreadable ({exc}); recomputing")
        return Hit(value, stored.digest, stored.meta)

    async def alookup(self, spec: NodeSpec, key: str) -> Hit | Miss:
        return await asyncio.to_thread(self.lookup, spec, key)

    def persist(self, key: str, encoded: bytes, meta: dict[str, Any]) -> str:
        """Store an encoded output; returns its digest."""
        return self.store.put(key, encoded, meta)

    async def apersist(self, key: str, encoded: bytes, meta: dict[str, Any]) -> str:
        if self.inline:
            return self.store.put(key, encoded, meta)
        return await asyncio.to_thread(self.store.put, key, encoded, meta)


@dataclass
class PastRuns:
    """Per node the newest duration and usage among recent runs of a graph: a `done` node's
    own, a `cached` node's from when it was computed (`compute_seconds`); and the runs that
    supplied any. The one reader of duration history: the runtime's priorities and `estimate`
    read the same numbers."""

    durations: dict[str, float] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)

    def add(self, manifest: Mapping[str, Any]) -> bool:
        """Fold in one manifest, newest first: a node cached in a newer run takes the
        duration its checkpoint recorded, or (a manifest from before that was kept) its
        duration from an older run. Whether it supplied any."""
        used = False
        for name, node in manifest.get("nodes", {}).items():
            status = node.get("status")
            if status == "done":
                seconds = node.get("duration")
            elif status == "cached":
                seconds = node.get("compute_seconds")
            else:
                continue
            if not seconds:
                continue
            if name not in self.durations:
                self.durations[name] = float(seconds)
                if node.get("calls"):
                    self.usage[name] = dict(node.get("usage") or {})
                used = True
        if used:
            self.runs.append(str(manifest["run_id"]))
        return used


def previous_durations(
    store: Store, graph_name: str, nodes: Iterable[str] = (), lookback: int = 20
) -> dict[str, float]:
    """Node durations from recent finished runs of the same graph in `store`, newest first;
    stops reading older manifests once every one of `nodes` has one, or at one that adds
    nothing (a node that never completes, e.g. skipped by its condition, costs one read more,
    not `lookback`: every manifest read at the start of a run is a parse of the whole run)."""
    past = PastRuns()
    wanted = set(nodes)
    for manifest in store.recent_manifests(graph_name, lookback=lookback, finished=True):
        added = past.add(manifest)
        if wanted <= past.durations.keys() or (past.runs and not added):
            break
    return past.durations


def last_run_nodes(store: Store, graph_name: str, lookback: int = 20) -> list[str]:
    """Every node of the newest run of `graph_name`, expanded ones included."""
    for manifest in store.recent_manifests(graph_name, lookback=lookback):
        nodes = manifest.get("nodes")
        if isinstance(nodes, dict):
            return [str(n) for n in nodes]
        # A run killed before its final manifest: its trace names its nodes.
        try:
            events = store.read_trace(str(manifest.get("run_id")))
        except Exception:
            continue
        return sorted({str(e["node"]) for e in events if "node" in e})
    return []
