"""Batch mode: every agent call goes through the Message Batches API, at the batch price.

`BatchingProvider` wraps a provider that declares `batches` (the Anthropic one: see
providers/base.BatchesAPI) and looks like any provider to the invocation layer, so tool loops, structured output, retries, limits and the budget work unchanged: each
`complete()` joins the batch being collected, and returns when that batch has ended.

- **Collecting.** A batch is submitted when no new request has joined for `window` seconds
  (the ready set stopped growing), or at once when it holds `max_requests` (capped by the API's
  100,000 requests / 256 MB). As results come back, descendants become ready and form the next
  batch; each tool-loop turn is a request in a later batch.
- **custom_id** is derived from the node's checkpoint key and a hash of the request's exact
  parameters, so the same turn of the same node has the same id in every run.
- **Kill-safe.** Right after a batch is created, and before any polling, its id and which node
  each request belongs to are written to the run's folder in the store
  (`runs/<run>/batches/<batch id>.json`). A later run of the same graph reads the records that
  were never marked collected and, for a request whose custom_id is there, collects that
  batch's result instead of submitting again: nothing is paid twice. (A kill in the moment
  between the API accepting a batch and the record being written cannot be covered.)
- **Polling** backs off from `poll` to `poll_max` seconds.
- **Outcomes.** `errored` results raise the error a direct call would have (the retry policy
  retries what is retryable, in a later batch); `expired` ones are resubmitted once, then fail
  the node with a sentence saying so; `canceled` ones fail it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from dagagents.errors import ProviderError, UserError
from dagagents.observe.trace import Emit, no_emit
from dagagents.providers.base import (
    MAX_BATCH_BYTES,
    MAX_BATCH_REQUESTS,
    BatchesAPI,
    BatchExpired,
    Provider,
    Request,
    Response,
    capabilities_of,
)
from dagagents.store import Store

RECORD_VERSION = 1


@dataclass(frozen=True)
class BatchOptions:
    """`window`: seconds without a new request before a batch is submitted; `max_requests`:
    submit at once at this size; `poll` / `poll_max`: the status-poll backoff in seconds."""

    window: float = 2.0
    max_requests: int = MAX_BATCH_REQUESTS
    poll: float = 1.0
    poll_max: float = 60.0

    def __post_init__(self) -> None:
        if self.window < 0:
            raise UserError(f"batch_window must be 0 or more seconds (got {self.window}).")
        if not 1 <= self.max_requests <= MAX_BATCH_REQUESTS:
            raise UserError(
                f"batch_max must be between 1 and {MAX_BATCH_REQUESTS} (got {self.max_requests})."
            )


class BatchJournal:
    """Batch records in the store: written before polling, read back by later runs."""

    def __init__(self, store: Store | None, run_id: str, graph: str) -> None:
        self.store = store
        self.run_id = run_id
        self.graph = graph
        self.records: dict[str, dict[str, Any]] = {}

    def _path(self, run_id: str, batch_id: str | None = None) -> str:
        assert self.store is not None
        folder = self.store.batches_dir(run_id)  # `gc` keeps the uncollected ones
        return self.store.fs.join(folder, f"{batch_id}.json") if batch_id else folder

    def write(self, batch_id: str, requests: dict[str, str | None], state: str) -> None:
        record = {
            "version": RECORD_VERSION,
            "graph": self.graph,
            "run_id": self.run_id,
            "batch_id": batch_id,
            "created": time.time(),
            "state": state,
            "requests": requests,  # custom_id -> node
        }
        self.records[batch_id] = record
        self._save(record)

    def mark(self, batch_id: str, state: str) -> None:
        record = self.records.get(batch_id)
        if record is None:
            return
        record["state"] = state
        self._save(record)

    def _save(self, record: dict[str, Any]) -> None:
        if self.store is None:
            return
        data = orjson.dumps(record, option=orjson.OPT_INDENT_2)
        self.store.fs.write_atomic(self._path(record["run_id"], record["batch_id"]), data)

    def uncollected(self, lookback: int = 50) -> dict[str, str]:
        """custom_id -> batch id, from earlier runs of this graph whose results were never
        collected (newest batch wins)."""
        if self.store is None:
            return {}
        found: dict[str, str] = {}
        for run_id in self.store.list_runs()[-lookback:]:
            if run_id == self.run_id:
                continue
            for name in sorted(self.store.fs.listdir(self._path(run_id))):
                if not name.endswith(".json"):
                    continue
                data = self.store.fs.read(self._path(run_id, name[: -len(".json")]))
                try:
                    record = orjson.loads(data) if data else None
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(record, dict) or record.get("graph") != self.graph:
                    continue
                if record.get("state") == "collected":
                    continue
                self.records[record["batch_id"]] = record
                for custom_id in record.get("requests", {}):
                    found[custom_id] = record["batch_id"]
        return found


@dataclass
class _Pending:
    custom_id: str
    request: Request
    params: dict[str, Any]
    size: int
    futures: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)


class BatchingProvider:
    """A provider whose every call goes through the Message Batches API (module docstring)."""

    runs_on_driver = True  # executors keep it in the driver: it waits, it does not compute

    def __init__(
        self,
        inner: Provider,
        options: BatchOptions | None = None,
    ) -> None:
        if not capabilities_of(inner).batches:
            raise UserError(
                f"batch mode needs the Anthropic provider (the Message Batches API); "
                f"the run uses '{getattr(inner, 'name', type(inner).__name__)}'."
            )
        resolve = getattr(inner, "resolve", None)
        if callable(resolve):
            inner = resolve()  # a provider that builds the real one on first use
        self.inner = inner
        self.api: BatchesAPI = cast(BatchesAPI, inner)  # it declares `batches`
        self.name = inner.name
        self.options = options or BatchOptions()
        self.journal = BatchJournal(None, "", "")
        self.key_of: Callable[[str], str | None] = lambda node: None
        self.emit: Emit = no_emit
        self._queue: dict[str, _Pending] = {}
        self._queue_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._polls: dict[str, asyncio.Task[dict[str, dict[str, Any]]]] = {}
        self._recovered: dict[str, str] | None = None
        self._recovering = asyncio.Lock()
        self._flushes: set[asyncio.Task[None]] = set()
        self.submitted = 0
        self.reattached = 0

    def attach(
        self,
        journal: BatchJournal,
        key_of: Callable[[str], str | None],
        emit: Emit,
    ) -> None:
        """Bind to one run: where records go, how to find a node's checkpoint key, the trace."""
        self.journal = journal
        self.key_of = key_of
        self.emit = emit

    # ---------------------------------------------------------------- ids
    def custom_id(self, request: Request, params: dict[str, Any]) -> str:
        node = request.node or ""
        base = self.key_of(node) if node else None
        if base is None:
            base = hashlib.sha256(f"node:{node}".encode()).hexdigest()
        body = hashlib.sha256(orjson.dumps(params, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return f"{base[:24]}-{body[:32]}"  # [a-zA-Z0-9_-]{1,64}, as the API requires

    # ---------------------------------------------------------------- the call
    async def complete(self, request: Request) -> Response:
        params = self.api.batch_params(request)
        custom_id = self.custom_id(request, params)
        expired_once = False
        while True:
            result = await self._result_for(custom_id, request, params)
            try:
                return self.api.batch_response(result, request.node)
            except BatchExpired:
                if expired_once:
                    raise BatchExpired(
                        f"batch request for node '{request.node}' expired twice: the Message "
                        "Batches API did not process it within 24 hours, and not on "
                        "resubmission either"
                    ) from None
                expired_once = True
                self.emit("batch_expired", node=request.node, custom_id=custom_id)

    async def _result_for(
        self, custom_id: str, request: Request, params: dict[str, Any]
    ) -> dict[str, Any]:
        async with self._recovering:  # one scan of the store, however many calls start
            if self._recovered is None:
                self._recovered = await asyncio.to_thread(self.journal.uncollected)
        batch_id = self._recovered.pop(custom_id, None)
        if batch_id is not None:
            try:
                results = await asyncio.shield(self._poll(batch_id, request.node, reattached=True))
            except ProviderError as exc:  # gone (deleted, archived after 29 days): submit anew
                self.emit(
                    "warning",
                    node=request.node,
                    message=f"could not collect batch {batch_id} ({exc}); submitting again",
                )
                results = {}
            found = results.get(custom_id)
            if found is not None and found.get("type") == "succeeded":
                self.reattached += 1
                return found
        return await self._enqueue(custom_id, request, params)

    async def _enqueue(
        self, custom_id: str, request: Request, params: dict[str, Any]
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        pending = self._queue.get(custom_id)
        if pending is None:  # the same request twice (identical nodes) is sent once
            size = len(orjson.dumps(params)) + len(custom_id) + 32
            if self._queue and self._queue_bytes + size > MAX_BATCH_BYTES * 0.95:
                self._flush()
            pending = self._queue[custom_id] = _Pending(custom_id, request, params, size)
            self._queue_bytes += size
        pending.futures.append(future)
        self.emit("batch_wait", node=request.node, custom_id=custom_id)
        if len(self._queue) >= self.options.max_requests:
            self._flush()
        else:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_later(self.options.window, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._queue:
            return
        pending, self._queue, self._queue_bytes = list(self._queue.values()), {}, 0
        task = asyncio.get_running_loop().create_task(self._submit(pending))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _submit(self, pending: list[_Pending]) -> None:
        live = [p for p in pending if any(not f.done() for f in p.futures)]
        if not live:
            return
        try:
            batch_id = await self.api.create_batch(
                [{"custom_id": p.custom_id, "params": p.params} for p in live]
            )
            # Written before polling: a killed driver's next run re-attaches to this batch.
            await asyncio.to_thread(
                self.journal.write,
                batch_id,
                {p.custom_id: p.request.node for p in live},
                "submitted",
            )
            self.submitted += 1
            self.emit(
                "batch_submitted",
                batch_id=batch_id,
                requests=len(live),
                nodes=sorted({p.request.node or "" for p in live}),
            )
            results = await asyncio.shield(self._poll(batch_id))
        except BaseException as exc:
            for p in live:
                for f in p.futures:
                    if not f.done():
                        f.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            if not isinstance(exc, Exception):
                raise
            return
        for p in live:
            result = results.get(p.custom_id) or {"type": "lost"}
            for f in p.futures:
                if not f.done():
                    f.set_result(result)

    def _poll(
        self, batch_id: str, node: str | None = None, reattached: bool = False
    ) -> asyncio.Task[dict[str, dict[str, Any]]]:
        task = self._polls.get(batch_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._poll_until_ended(batch_id))
            self._polls[batch_id] = task
            if reattached:
                self.emit("batch_reattached", batch_id=batch_id, node=node)
        return task

    async def _poll_until_ended(self, batch_id: str) -> dict[str, dict[str, Any]]:
        delay = self.options.poll
        last = None
        while True:
            status = await self.api.retrieve_batch(batch_id)
            state = status.get("processing_status")
            if state != last:
                self.emit(
                    "batch_status",
                    batch_id=batch_id,
                    status=state,
                    counts=status.get("request_counts"),
                )
                last = state
            if state == "ended":
                return await self.api.batch_results(batch_id)
            await asyncio.sleep(delay)
            delay = min(self.options.poll_max, delay * 1.5)

    async def finish(self, collected: bool) -> None:
        """End of the run. Only a run that finished every node marks the batches it read as
        collected; after a failure or an interruption they stay open, so the next run reads
        their results again (free) rather than paying for a turn whose node never finished."""
        if self._timer is not None:
            self._timer.cancel()
        if collected:
            for batch_id, task in self._polls.items():
                if task.done() and not task.cancelled() and task.exception() is None:
                    with contextlib.suppress(OSError):
                        await asyncio.to_thread(self.journal.mark, batch_id, "collected")
        for poll in self._polls.values():
            poll.cancel()
        for flush in self._flushes:
            flush.cancel()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def settings(self) -> dict[str, Any]:
        return dict(getattr(self.inner, "settings")())  # noqa: B009 - not every provider has it
