"""Approval nodes: a person's decision, kept in the store so it survives restarts and kills.

A decision is keyed by the approval node's checkpoint key (its prompt and its inputs' digests),
so the next run of the same graph finds it whichever process made it:
- approved: the value is stored as the node's checkpoint (the normal cache path carries it on);
- rejected: `approvals/<key>.json` holds the reason, and the node fails with it.
A run that reaches an undecided approval node with no `approver` leaves it waiting; when nothing
else can run the run ends with status "waiting" and its manifest names the waiting nodes.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from dagagents.errors import DagAgentsError, UserError
from dagagents.model.graph import did_you_mean
from dagagents.observe.resume import run_nodes
from dagagents.store import CorruptObject, Store, codec

WAITING = "waiting"
RUN_WAITING = "waiting"


class ApprovalRejected(DagAgentsError):
    """A person rejected an approval node; its descendants skip."""


@dataclass
class Decision:
    """`approved` with an optional `value` (None: the node's input flows on), or a rejection
    with its `reason`."""

    approved: bool
    value: Any = None
    reason: str | None = None


@dataclass
class ApprovalRequest:
    """What an `approver=` callback is asked: which node, its prompt, and its inputs."""

    run_id: str
    node: str
    prompt: str
    inputs: dict[str, Any] = field(default_factory=dict)


Approver = Callable[[ApprovalRequest], "Decision | bool | Awaitable[Decision | bool]"]


async def ask(approver: Approver, request: ApprovalRequest) -> Decision:
    """Call a sync or async approver; `True`/`False` are shorthand decisions."""
    answer = approver(request)
    if inspect.isawaitable(answer):
        answer = await answer
    if isinstance(answer, bool):
        return Decision(approved=answer, reason=None if answer else "rejected")
    if not isinstance(answer, Decision):
        raise UserError(
            f"the approver for node '{request.node}' returned {type(answer).__name__}; "
            "return a Decision or a bool."
        )
    return answer


def default_value(inputs: dict[str, Any]) -> Any:
    """What flows on when a decision names no value: the one input, else all of them."""
    if len(inputs) == 1:
        return next(iter(inputs.values()))
    return inputs


def _rejection_path(store: Store, key: str) -> str:
    return store.fs.join("approvals", f"{key}.json")


def read_rejection(store: Store, key: str) -> str | None:
    """The reason a decision under `key` was a rejection, or None if there is none."""
    data = store.fs.read(_rejection_path(store, key))
    if data is None:
        return None
    try:
        return str(orjson.loads(data).get("reason") or "rejected")
    except orjson.JSONDecodeError:
        return "rejected"


def write_rejection(store: Store, key: str, node: str, reason: str | None) -> None:
    record = {"node": node, "approved": False, "reason": reason or "rejected", "at": time.time()}
    store.fs.write_atomic(_rejection_path(store, key), orjson.dumps(record))


def approval_meta(node: str, reason: str | None = None) -> dict[str, Any]:
    """The checkpoint meta of an approved decision (no cost: nobody was paid)."""
    return {"node": node, "approval": True, "approved": True, "reason": reason, "at": time.time()}


def record_decision(
    store: str | Store,
    run: str | None,
    node: str,
    *,
    approved: bool = True,
    value: Any = None,
    reason: str | None = None,
    graph: str | None = None,
) -> Decision:
    """Decide a waiting approval node of `run` (None or 'latest': the newest run) from outside
    the run: `dagagents approve`, `Graph.approve`, the web view of a stored run. A node that is
    not waiting is refused in one sentence (UserError)."""
    st = store if isinstance(store, Store) else Store(store, create=False)
    manifest = st.read_manifest(run)
    run_id = manifest["run_id"]
    if graph is not None and manifest.get("graph") != graph:
        raise UserError(f"run '{run_id}' is of graph '{manifest.get('graph')}', not '{graph}'.")
    nodes = run_nodes(st, run_id, manifest)
    record = nodes.get(node)
    if record is None:
        raise UserError(f"run '{run_id}' has no node '{node}'{did_you_mean(node, nodes)}.")
    status = record.get("status")
    if status != WAITING:
        raise UserError(
            f"node '{node}' of run '{run_id}' is not waiting for approval (it is {status})."
        )
    key = record.get("key")
    if not key:
        raise UserError(f"node '{node}' of run '{run_id}' has no checkpoint key to decide on.")
    if st.contains(key) or read_rejection(st, key) is not None:
        raise UserError(f"node '{node}' of run '{run_id}' has already been decided.")
    decision = Decision(approved=approved, value=value, reason=reason)
    if not approved:
        write_rejection(st, key, node, reason)
        return decision
    if value is None:
        value = default_value(_inputs(st, run_id, record, nodes))
    try:
        encoded = codec.encode(value)
    except codec.NotSerialisable as exc:
        raise UserError(f"the value for node '{node}' is {exc}.") from None
    st.put(key, encoded, approval_meta(node, reason))
    return decision


def _inputs(
    store: Store, run_id: str, record: dict[str, Any], nodes: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The approval node's dependency outputs, read back from the store as stored."""
    out: dict[str, Any] = {}
    for dep in record.get("depends_on") or ():
        key = (nodes.get(dep) or {}).get("key")
        try:
            stored = store.get(key) if key else None
        except CorruptObject:
            stored = None
        if stored is None:
            raise UserError(
                f"the output of '{dep}' (input of the approval) is not in the store of run "
                f"'{run_id}'; pass the value to approve with --value."
            )
        out[dep] = codec.decode_json(stored.value)
    return out


__all__ = [
    "RUN_WAITING",
    "WAITING",
    "ApprovalRejected",
    "ApprovalRequest",
    "Approver",
    "Decision",
    "approval_meta",
    "ask",
    "default_value",
    "read_rejection",
    "record_decision",
    "write_rejection",
]
