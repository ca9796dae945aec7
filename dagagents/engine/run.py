"""The run loop: `EagerSorter` decides what may start; this module starts it.

One `asyncio.TaskGroup` owns every node task of a run. A node whose checkpoint exists completes
at once without taking a slot; every other ready node starts as soon as a slot is free. A node
changes state in one place, `_Run._transition`, which moves its record, the sorter and the
trace together. On failure with `fail_fast`, on Ctrl-C or on any error the run cancels what is
in flight, waits for it, and writes its manifest before returning.

Checkpoint keys, lookup and persistence live in `checkpoints.py`; growing the graph at run time
in `expand.py`; one agent invocation in `invoke.py`; where a body runs in `executors/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from dagagents.engine import approvals
from dagagents.engine.approvals import ApprovalRejected, ApprovalRequest, Approver
from dagagents.engine.cache_warming import CacheWarmer, CacheWarming, critical_slack, warming_option
from dagagents.engine.checkpoints import (
    Checkpoints,
    Hit,
    Miss,
    Rerun,
    last_run_nodes,
    previous_durations,
)
from dagagents.engine.executors.base import Executor
from dagagents.engine.executors.local import LocalExecutor
from dagagents.engine.expand import (
    ExpansionStream,
    Growth,
    apply_expansion,
    stream_survivors,
    streams_for,
)
from dagagents.engine.heap import freeze_built, frozen_heap
from dagagents.engine.invoke import AgentFailed, AgentResult, CallContext
from dagagents.engine.language import (
    CONDITION_FALSE,
    SKIPPED_DIGEST,
    condition_holds,
    loop_note,
    map_item_failure,
    node_inputs,
    step_kwargs,
)
from dagagents.engine.leases import Leases
from dagagents.engine.limits import Limiter, RateLimits
from dagagents.engine.retry import DEFAULT_RETRY, RetryPolicy
from dagagents.engine.scheduler import (
    CACHED,
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    SKIPPED,
    EagerSorter,
    remaining_path_lengths,
)
from dagagents.engine.shared_limits import SharedLimits, make_limiter
from dagagents.engine.token_count import make_counter
from dagagents.errors import (
    BudgetExceeded,
    DagAgentsError,
    GraphError,
    LimitsUnavailable,
    ProviderError,
    StoreUnwritable,
    UserError,
)
from dagagents.model.graph import Graph
from dagagents.model.nodes import (
    AgentTask,
    Approval,
    Expansion,
    NodeSpec,
    Step,
    describe_spec,
    is_kind,
    render_prompt,
)
from dagagents.observe.pricing import Pricing
from dagagents.observe.runs import NodeRecord, RunResult, number_or_none
from dagagents.observe.trace import BackgroundSink, Emit, Listener, Sink, Tracer
from dagagents.providers import Provider, resolve_provider
from dagagents.providers.base import capabilities_of
from dagagents.providers.deferred import DeferredProvider, resolved
from dagagents.store import Store, codec

if TYPE_CHECKING:
    from dagagents.engine.batches import BatchingProvider, BatchOptions

MANIFEST_VERSION = 1
# A Step is leased (awaited, not recomputed, while another process computes it) only if it is
# known to take at least this long; see `_Run._worth_leasing`.
LEASE_MIN_SECONDS = 0.05
# A slot whose nodes never wait lets the event loop run after this many of them.
SLOT_YIELD_EVERY = 32
DEFAULT_STORE = ".dagagents"
# How a run ended (the manifest's `status`); nodes use the sorter's vocabulary.
RUN_RUNNING, RUN_DONE, RUN_FAILED, RUN_INTERRUPTED, RUN_CRASHED = (
    "running",
    "done",
    "failed",
    "interrupted",
    "crashed",
)


@dataclass(frozen=True)
class RunOptions:
    """How to run a graph: the keywords of `dagagents.run`/`arun` and `Graph.run`/`arun`.

    `store=None` disables checkpoints; `fresh=True` ignores existing ones; `rerun` names nodes
    (or glob patterns, `research*`) to recompute even if checkpointed, expanded nodes of the
    last run included. `rate_limits` (requests/tokens per minute per model), `max_cost_usd`
    (no call starts that could exceed it) and `retry` (a RetryPolicy or a number of attempts)
    govern every agent call; `call_options` are extra CallContext fields (`auto_cache`,
    `structured_output`). `listener` sees every trace event as it happens. `cache_warming`
    (default: on for the Anthropic provider) lets calls sharing a cacheable prefix write it
    once (engine/cache_warming.py); a number is the most seconds a follower waits (default
    10), a `CacheWarming` also sets what a second of delay is worth. `batch=True` sends every agent call through the Message
    Batches API at the batch price, collected over `batch_window` seconds or `batch_max`
    requests (engine/batches.py); a `BatchOptions` also sets the poll backoff.
    `count_tokens=True` (or the endpoint's requests per minute) counts each prompt shape's
    first call exactly for the ITPM limit. `limits="redis://host:6379/0"` (or a SharedLimits,
    or env DAGAGENTS_LIMITS_URL) shares the rate limits, backoff, concurrency and, with a
    budget key, the budget with every process on the same API key (engine/shared_limits.py).
    `approver` decides approval nodes in-process (see engine/approvals.py); without one they
    wait and the run ends "waiting".
    """

    concurrency: int = 8
    provider: str | Provider | None = None
    store: str | os.PathLike[str] | Store | None = DEFAULT_STORE
    fresh: bool = False
    rerun: Iterable[str] = ()
    fail_fast: bool = False
    trace: str | os.PathLike[str] | None = None
    executor: Executor | None = None
    listener: Listener | None = None
    keep_events: bool = True
    rate_limits: RateLimits | None = None
    max_cost_usd: float | None = None
    retry: RetryPolicy | int | None = None
    pricing: Pricing | None = None
    call_options: Mapping[str, Any] = field(default_factory=dict)
    cache_warming: bool | float | CacheWarming | None = None
    batch: bool | BatchOptions = False
    batch_window: float = 2.0
    batch_max: int = 100_000
    count_tokens: bool | float = False
    limits: str | SharedLimits | None = None
    approver: Approver | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UserError(f"concurrency must be at least 1 (got {self.concurrency}).")
        rerun = (self.rerun,) if isinstance(self.rerun, str) else tuple(self.rerun)
        object.__setattr__(self, "rerun", rerun)

    @property
    def retry_policy(self) -> RetryPolicy:
        if isinstance(self.retry, int):
            return RetryPolicy(max_attempts=self.retry)
        return self.retry or DEFAULT_RETRY


def run(graph: Graph, options: RunOptions | None = None, /, **kwargs: Any) -> RunResult:
    """Run `graph` on a fresh event loop and return its RunResult (node failures are in the
    result, never raised). Ctrl-C cancels cleanly, then raises KeyboardInterrupt."""
    return asyncio.run(arun(graph, options, **kwargs))


async def arun(graph: Graph, options: RunOptions | None = None, /, **kwargs: Any) -> RunResult:
    """Run `graph` inside the running event loop. Options: `RunOptions` fields, as keywords or
    as one `RunOptions`. Raises UserError for an invalid graph or option."""
    opts = dataclasses.replace(options, **kwargs) if options else RunOptions(**kwargs)
    store = open_store(opts.store)
    provider = resolve_provider(opts.provider, graph.simulator)
    limiter = make_limiter(
        opts.limits,
        opts.rate_limits,
        provider=provider,
        concurrency=opts.concurrency,
        max_cost_usd=opts.max_cost_usd,
        pricing=opts.pricing,
    )
    await limiter.start()  # an unreachable shared-limits store is a UserError, before any work
    try:
        executor = opts.executor or LocalExecutor()
        await executor.prepare(store, opts.concurrency)  # may refuse before anything is written
        # No full collection walks the heap that existed before the run, nor the run's own
        # state once built (see engine/heap.py).
        appending = store.appending() if store is not None else contextlib.nullcontext()
        with frozen_heap() as froze, appending:
            try:
                state = _Run(graph, opts, store, executor, provider, limiter)
            except BaseException:
                await executor.close()
                raise
            freeze_built(froze)
            return await state.drive()
    finally:
        await limiter.aclose()


def open_store(store: str | os.PathLike[str] | Store | None) -> Store | None:
    if store is None or isinstance(store, Store):
        return store
    return Store(store)


class NodeTimeout(DagAgentsError):
    """A node exceeded its `timeout`."""


class NodeCancelled(DagAgentsError):
    """A node's body raised CancelledError of its own (nobody cancelled it)."""


class _Run:
    """State of one run; `execute` drives it to the end."""

    def __init__(
        self,
        graph: Graph,
        options: RunOptions,
        store: Store | None,
        executor: Executor,
        provider: Provider,
        limiter: Limiter,
    ) -> None:
        order = graph.validate()
        rerun = Rerun(options.rerun)
        if rerun.patterns:
            known = [*graph.specs, *(last_run_nodes(store, graph.name) if store else ())]
            rerun.check(graph.name, known)
        self.options = options
        # The user's graph is copied only if an expansion is about to grow it.
        self._graph = graph
        self.specs = graph.specs
        self._owns_graph = False
        # Streamed nodes a finished node's final expansion keeps (see `_end_stream`).
        self._kept: dict[str, set[str]] = {}
        self.concurrency = options.concurrency
        self.store = store
        self.checkpoints = (
            None if store is None else Checkpoints(store, fresh=options.fresh, rerun=rerun)
        )
        self.executor = executor
        self.approver = options.approver
        self._wire_calls(options, provider, limiter)
        self.history = (
            previous_durations(store, graph.name, graph.specs) if store is not None else {}
        )
        estimate = self._estimate
        self.durations = {name: estimate(spec) for name, spec in self.specs.items()}
        self.sorter = EagerSorter(
            graph.nx, remaining_path_lengths(graph.nx, self.durations.__getitem__, order)
        )
        self.records = {name: _new_record(spec) for name, spec in self.specs.items()}
        self.outputs: dict[str, Any] = {}
        self.digests: dict[str, str] = {}
        # Node -> the slot running it (fail_fast cancels them); open slots (<= concurrency).
        self._running: dict[str, asyncio.Task[None]] = {}
        self._slots = 0
        # A local store is read inline, before a node takes a slot; any other in its slot.
        self._lookup_inline_first = self.checkpoints is not None and self.checkpoints.inline
        self._lookup_in_slot = self.checkpoints is not None and not self.checkpoints.inline
        self._tasks: asyncio.TaskGroup | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.wall = 0.0
        self.run_id = Store.new_run_id()
        self._auth_failed = False  # a 401 was reported: later ones are skips, not failures
        self._started_at = time.time()
        # Another process computing a node this run needs is awaited, not paid twice.
        self.leases = Leases(store) if store is not None else None
        # A full or read-only store: outputs computed but not saved, and where the run's own
        # files went instead (said once, at the end, in one sentence).
        self.unwritable: StoreUnwritable | None = None
        self.unsaved: list[str] = []
        self._moved: Path | None = None
        run_warnings: list[str] = []
        self.tracer = self._open_tracer(options, run_warnings)
        self.emit = self.tracer.emit
        for message in run_warnings:
            self.emit("warning", node=None, message=message)

    def _wire_calls(self, options: RunOptions, provider: Provider, limiter: Limiter) -> None:
        """The provider every agent call goes to, the limiter it passes, and the rest of
        each call's context (retry policy, pricing, cache warming, token counting)."""
        self.provider = provider
        self.limiter = limiter
        self.pricing = self.limiter.pricing
        fields: dict[str, Any] = dict(options.call_options)
        warming = options.cache_warming
        self.batching: BatchingProvider | None = None
        if options.batch:
            from dagagents.engine.batches import BatchingProvider, BatchOptions  # imports the SDK

            given = options.batch if isinstance(options.batch, BatchOptions) else None
            self.batching = BatchingProvider(
                resolved(self.provider),  # batches call the SDK directly
                given or BatchOptions(options.batch_window, options.batch_max),
            )
            self.provider = self.batching
            self.limiter.batch = True
            warming = False  # a batch has no "response began" moment to wait for
        if warming is None:
            warming = capabilities_of(self.provider).caches_prompts
        if warming and "cache_warmer" not in fields:
            rule = warming_option(warming)
            fields["cache_warmer"] = CacheWarmer(self.pricing, rule, slack=self._slack)
        if options.count_tokens and not options.batch and "token_counter" not in fields:
            # counting calls the SDK directly
            fields["token_counter"] = make_counter(resolved(self.provider), options.count_tokens)
        self.call_fields: dict[str, Any] = {
            "limiter": self.limiter,
            "retry": options.retry_policy,
            "pricing": self.pricing,
            **fields,  # explicit CallContext fields win
        }

    def _slack(self, node: str) -> float:
        """How late `node` may start before the run ends later (cache warming's rule)."""
        now = self.tracer.now()
        records = self.records
        running = ((n, now - (records[n].start or now)) for n in self._running if n in records)
        return critical_slack(node, self.sorter, running)

    def _open_tracer(self, options: RunOptions, warnings: list[str]) -> Tracer:
        sinks: list[Sink] = []
        if self.store is not None:
            try:
                sink = self.store.open_trace(self.run_id)  # closed by the tracer
                # A remote store's trace uploads in a thread, never on the loop.
                sinks.append(sink if self.store.is_local else BackgroundSink(sink))
            except StoreUnwritable as exc:  # a read-only store still serves a cached rerun
                self.unwritable = exc
                path = self._elsewhere() / "trace.jsonl"
                sinks.append(open(path, "wb"))  # noqa: SIM115 - closed by the tracer
                warnings.append(f"{exc}: this run's trace is written to {path}")
        if options.trace is not None:
            Path(options.trace).parent.mkdir(parents=True, exist_ok=True)
            sinks.append(open(options.trace, "wb"))  # noqa: SIM115 - closed by the tracer
        tracer = Tracer(self.run_id, sinks=sinks, keep=options.keep_events)
        if options.listener is not None:
            tracer.subscribe(options.listener)
        return tracer

    @property
    def graph(self) -> Graph:
        """The graph as it stands (grown by expansions; the user's own graph never changes)."""
        return self._graph

    def _estimate(self, spec: NodeSpec) -> float:
        """A node's expected duration for prioritising: its last run's, else the user's
        `estimate=`, else a guess from its token budget (time to first token + output at a
        typical speed); steps default to cheap."""
        if self.history:
            known = self.history.get(spec.name)
            if known is not None:
                return known
        if spec.estimate is not None:
            return spec.estimate
        if is_kind(spec, AgentTask):
            return 0.5 + min(spec.agent.max_tokens, 600) / 80.0
        return 0.001

    # ------------------------------------------------------------------ the loop
    async def drive(self) -> RunResult:
        """`execute`, with a batching provider attached to the run's journal around it."""
        if self.batching is None:
            return await self.execute()
        from dagagents.engine.batches import BatchJournal

        self.batching.attach(
            BatchJournal(self.store, self.run_id, self.graph.name),
            key_of=lambda name: self.records[name].key if name in self.records else None,
            emit=self.emit,
        )
        finished = False
        try:
            result = await self.execute()
            finished = result.ok
            return result
        finally:
            await self.batching.finish(collected=finished)

    async def execute(self) -> RunResult:
        # No full collection walks the heap that existed before the run (see engine/heap.py).
        with frozen_heap():
            return await self._execute()

    async def _execute(self) -> RunResult:
        self.emit(
            "run_start",
            graph=self.graph.name,
            nodes=len(self.specs),
            concurrency=self.concurrency,
            provider=self.provider.name,
            store=self.store.url if self.store else None,
            executor=self.executor.name,
        )
        await self._write_manifest(RUN_RUNNING)
        status = RUN_DONE
        try:
            await self.executor.start(self.concurrency)
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self._flusher = tasks.create_task(self._keep_trace_current())
                self._launch()
        except BaseException as exc:
            cause = _unwrap(exc)
            interrupted = isinstance(cause, asyncio.CancelledError | KeyboardInterrupt)
            status = RUN_INTERRUPTED if interrupted else RUN_CRASHED
            self._close(status)
            if cause is exc:
                raise
            raise cause from None
        finally:
            counts: Counter[str] = Counter(r.status for r in self.records.values())
            if status == RUN_DONE and (counts[FAILED] or counts[CANCELLED]):
                status = RUN_FAILED
            if status == RUN_DONE and counts[approvals.WAITING]:
                status = approvals.RUN_WAITING
            await self.executor.close()
            self._finish(status, counts)
            await self.tracer.aclose()
            await self._write_manifest(status)
        return self._result(status)

    async def _keep_trace_current(self, every: float = 0.2) -> None:
        """Flush the on-disk trace while nodes run (watchers and kill-resume rely on it);
        cancelled by `_launch` when the run's work is over."""
        while True:
            await asyncio.sleep(every)
            await self.tracer.aflush()
            if self.leases is not None:
                self.leases.heartbeat()
            if self.tracer.listening:  # live views: what the limiter is doing (never traced)
                self.tracer.stream("limits", **self.limiter.snapshot())

    def _launch(self) -> bool:
        """Open a slot (a task of the run's TaskGroup) for each ready node while slots are
        free; checkpoint hits and false conditions complete without one. When no slot is
        open and nothing is ready, the run's work is over. Whether a slot was opened."""
        assert self._tasks is not None
        opened = False
        while self._slots < self.concurrency:
            name = self._take()
            if name is None:
                break
            self._slots += 1
            # Registered at once, so fail_fast or a retired stream can cancel a slot that has
            # not started yet; the callback closes it even then (its `finally` would not run).
            slot = self._running[name] = self._tasks.create_task(self._slot(name))
            slot.add_done_callback(self._slot_closed)
            opened = True
        self._end_if_idle()
        return opened

    def _slot_closed(self, _slot: asyncio.Task[None]) -> None:
        self._slots -= 1
        self._end_if_idle()

    def _take(self) -> str | None:
        """The ready node with the longest remaining path that needs a body, now running
        (the nodes passed over on the way, hits and false conditions, are settled)."""
        sorter = self.sorter
        while sorter.has_ready():
            name = sorter.pop_ready()
            self._transition(name, RUNNING)
            if self.specs[name].when is not None and self._condition_false(name):
                continue
            if self._lookup_inline_first and self._lookup_inline(name):
                continue
            return name
        return None

    def _end_if_idle(self) -> None:
        """No slot open and nothing ready (all done, or the rest waits for an approval):
        stop the flusher, so the TaskGroup ends."""
        if not self._slots and not self.sorter.has_ready():
            assert self._flusher is not None
            self._flusher.cancel()

    async def _slot(self, name: str | None) -> None:
        """One slot of the concurrency limit: run `name`, then take the next ready node, and
        so on while one is ready. A node whose body never waits then costs no task and no
        loop iteration of its own; the slot lets the loop run every `SLOT_YIELD_EVERY`
        nodes, so timers, signals and other slots are not starved."""
        task = asyncio.current_task()
        assert task is not None
        ran = 0
        while name is not None:
            if not await self._node(name, task):
                return  # the run is cancelling this slot
            ran += 1
            name = self._take()  # this slot first: the longest path goes on without a hop
            if name is None:
                return
            self._running[name] = task
            # Slots just opened for what else became ready start their nodes first.
            opened = self._slots < self.concurrency and self.sorter.has_ready() and self._launch()
            if opened or not ran % SLOT_YIELD_EVERY:
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    self._running.pop(name, None)  # settled by whoever cancelled it
                    raise

    async def _node(self, name: str, task: asyncio.Task[None]) -> bool:
        """Run one node in the current slot (`task`): (look up its checkpoint or wait for
        another process computing it,) run its body, settle it. False when the run is
        cancelling the slot (then whoever cancelled settles it). The body runs in this frame:
        a coroutine less per node."""
        value: Any = None
        error: BaseException | None = None
        cached = False
        record = self.records[name]
        leasing = self.leases is not None and self._worth_leasing(name)
        try:
            if (self._lookup_in_slot or leasing) and await self._found_elsewhere(name, leasing):
                cached = True
            else:
                spec = self.specs[name]
                checkpoints = self.checkpoints
                try:
                    inputs = node_inputs(spec, self.outputs)
                    if record.agent is None:
                        record.start = self.emit("node_start", node=name, kind=spec.kind)
                    else:
                        record.start = self.emit(
                            "node_start",
                            node=name,
                            kind=spec.kind,
                            agent=record.agent,
                            model=record.model,
                        )
                    for dep in spec.depends_on:
                        self.emit("message", src=dep, dst=name)
                    # What a checkpoint keeps beside the output (no store: nobody reads it).
                    meta: dict[str, Any] = (
                        {} if checkpoints is None else {"node": name, "graph": self.graph.name}
                    )
                    if spec.timeout is None:
                        value = await self._run_body(spec, inputs, record, meta)
                    else:
                        value = await self._timed_body(spec, inputs, record, meta)
                    record.end = self.tracer.now()
                    if checkpoints is None:
                        _encodable(name, value)  # no store: the same refusal, no coroutine
                    else:
                        meta["duration"] = record.duration
                        await self._persist(name, value, meta)
                finally:
                    if self.leases is not None:
                        self.leases.release(record.key)
        except _Waiting:
            self._running.pop(name, None)  # waits for a decision without holding a slot
            return True
        except asyncio.CancelledError:
            if task.cancelling():
                self._running.pop(name, None)
                raise  # the run is cancelling this node and settles it
            error = NodeCancelled("cancelled")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit, pytest.fail, ...: this node fails, no more
            error = exc
        self._running.pop(name, None)
        if not cached:
            if record.status != RUNNING or task.cancelling():
                return False  # settled by whoever cancelled it
            if error is None:
                self._complete(name, value, DONE)  # (maybe expanding the graph)
            else:
                self._settle_error(name, error)
        return True

    async def _found_elsewhere(self, name: str, leasing: bool) -> bool:
        """Before `name` starts: its checkpoint in a remote store, or the output of another
        process that holds its lease. Whether it completed so (else it computes here)."""
        self.emit("node_ready", node=name)  # it waits (store, lease) before it starts
        if self._lookup_in_slot and await self._lookup_off_loop(name):
            return True
        return leasing and await self._await_other_process(name)

    def _settle_error(self, name: str, error: BaseException) -> None:
        """Record a body that ended in an error: cancelled or failed."""
        if isinstance(error, NodeCancelled):
            self._transition(name, CANCELLED, error="cancelled")
        else:
            self._fail(name, error)

    def _condition_false(self, name: str) -> bool:
        """Evaluate `name`'s when= condition; if false, skip it and what requires it (zero
        cost), letting dependents that take it as optional run with None."""
        spec = self.specs[name]
        try:
            holds = condition_holds(spec, node_inputs(spec, self.outputs))
        except GraphError as exc:
            self._fail(name, exc)
            return True
        if holds:
            return False
        self.digests[name] = SKIPPED_DIGEST
        self._transition(name, SKIPPED, because=CONDITION_FALSE)
        specs = self.specs
        for skipped in self.sorter.skip_unneeded(name, lambda s, d: s in specs[d].optional):
            self.digests[skipped] = SKIPPED_DIGEST
            self._transition(skipped, SKIPPED, because=CONDITION_FALSE)
        return True

    def _complete(self, name: str, value: Any, status: str) -> None:
        """A node's output exists (computed or from its checkpoint): expand, then done."""
        spec = self.specs[name]
        if spec.expand is not None:
            try:
                expansion = spec.expand(value)
                kept = self._kept.pop(name, None)
                if kept and expansion is not None:  # already running from the streamed reply
                    expansion = expansion.model_copy(
                        update={"nodes": [n for n in expansion.nodes if n.name not in kept]}
                    )
                apply_expansion(self, name, expansion)
            except DagAgentsError as exc:
                self._fail(name, exc)
                return
            except Exception as exc:
                self._fail(name, GraphError(f"expansion raised {type(exc).__name__}: {exc}"))
                return
            note = loop_note(spec, value)  # a loop's round expands into the next one
            if note is not None:
                self.emit("warning", node=name, message=note)
        self.outputs[name] = value
        self._transition(name, status)

    def _fail(self, name: str, error: BaseException) -> None:
        record = self.records[name]
        auth = _is_auth_failure(error)
        if auth and self._auth_failed:
            # The key is bad for every call: one failure says so; the rest are skipped.
            for skipped in self.sorter.fail(name):
                self._transition(skipped, SKIPPED, because=AUTH_FAILED)
            record.end = self.tracer.now()
            self._transition(name, SKIPPED, because=AUTH_FAILED)
            self._skip_all(AUTH_FAILED)
            return
        record.error = _error_text(error)
        detail = None if isinstance(error, DagAgentsError) else _short_traceback(error)
        self._transition(name, FAILED, traceback=detail)
        if auth:
            self._auth_failed = True
            self._skip_all(AUTH_FAILED)
        if isinstance(error, BudgetExceeded):
            # No new call may start; in-flight calls finish (their cost was reserved).
            self._skip_all("cost budget reached")
        elif isinstance(error, LimitsUnavailable):
            self._skip_all("shared limits store unreachable")
        if self.options.fail_fast:
            self._skip_all(f"fail_fast after '{name}' failed")
            for running, task in list(self._running.items()):
                self._transition(running, CANCELLED, error="cancelled")
                task.cancel()

    def _skip_all(self, because: str) -> None:
        for skipped in self.sorter.skip_all():
            self._transition(skipped, SKIPPED, because=because)

    # --------------------------------------------------------------- transitions
    def _transition(self, name: str, to: str, **fields: Any) -> None:
        """The one place a node changes state: its record, the sorter and the trace together.

        RUNNING follows the sorter handing the node out (`pop_ready`); SKIPPED follows the
        sorter's own answer (`fail`, `skip_all`, `add` list what they skipped). Every other
        transition is told to the sorter here."""
        record = self.records[name]
        record.status = to
        if to == RUNNING:
            return  # traced by node_start (node_ready first if it waits to start: `_node`)
        if to == DONE:
            self.sorter.done(name)
            _emit_completion(self.emit, record)
        elif to == CACHED:
            record.start = record.end = self.tracer.now()
            self.sorter.done(name)
            self.emit("cache_hit", node=name, key=record.key, saved_cost=record.cost_usd)
        elif to == FAILED:
            record.end = self.tracer.now()
            self.emit("node_error", node=name, error=record.error, **fields)
            for skipped in self.sorter.fail(name):
                self._skip_below(skipped, name, name)
        elif to == CANCELLED:
            record.end = self.tracer.now()
            record.error = fields["error"]
            self.sorter.cancelled(name)
            self.emit("node_error", node=name, error=record.error)
        elif to == SKIPPED:
            if self.sorter.state.get(name) == RUNNING:  # a streamed node its source gave up
                record.end = self.tracer.now()
                self.sorter.cancelled(name)
            record.because = fields["because"]
            self.emit("node_skipped", node=name, because=record.because)
        else:
            raise ValueError(f"no transition of node '{name}' to {to!r}")

    # -------------------------------------------------------------- checkpoints
    def _skip_below(self, skipped: str, blocker: str, because: str) -> None:
        """`skipped` never runs because `blocker` did not finish. A map whose item failed
        (also a streamed item that failed before the map's edge from it existed) fails
        itself, naming the item, while the siblings still finish."""
        self._transition(skipped, SKIPPED, because=because)
        record = self.records[blocker]
        if record.status != FAILED:
            return
        failed_item = map_item_failure(self.specs[skipped], blocker, record.error)
        if failed_item:
            self.records[skipped].status = FAILED  # skipped by the sorter: never runs
            self.records[skipped].error = failed_item
            self.emit("node_error", node=skipped, error=failed_item)

    def _key(self, name: str) -> str | None:
        if self.checkpoints is None:
            return None
        key = self.records[name].key = self.checkpoints.key(self.specs[name], self.digests)
        return key

    def _lookup_inline(self, name: str) -> bool:
        """Complete `name` from its checkpoint if one exists and is intact (local store)."""
        key = self._key(name)
        checkpoints = self.checkpoints
        if key is None or checkpoints is None or not checkpoints.wanted(name):
            return False
        return self._use_checkpoint(name, checkpoints.lookup(self.specs[name], key))

    async def _lookup_off_loop(self, name: str) -> bool:
        """The same for a remote store: the lookup runs in a thread, off the loop."""
        key = self._key(name)
        checkpoints = self.checkpoints
        if key is None or checkpoints is None or not checkpoints.wanted(name):
            return False
        return self._use_checkpoint(name, await checkpoints.alookup(self.specs[name], key))

    def _use_checkpoint(self, name: str, found: Hit | Miss) -> bool:
        if isinstance(found, Miss):
            if found.warning:
                self.emit("warning", node=name, message=found.warning)
            return False
        record = self.records[name]
        record.digest = found.digest
        meta = found.meta
        record.cost_usd = float(meta.get("cost_usd", 0.0))
        record.calls = int(meta.get("calls", 0))
        record.simulated = bool(meta.get("simulated", False))
        record.compute_seconds = number_or_none(meta.get("duration"))
        if meta.get("usage"):
            record.usage = record.usage.model_validate(meta["usage"])
        if meta.get("model"):
            record.model = meta["model"]
        self.digests[name] = found.digest
        self._complete(name, found.value, CACHED)
        return True

    async def _persist(self, name: str, value: Any, meta: dict[str, Any]) -> None:
        """Store the output and set its digest. Unserialisable outputs fail the node."""
        record = self.records[name]
        if record.digest is not None:
            return  # the executor already stored it where the body ran
        encoded = _encodable(name, value)
        if self.checkpoints is None or record.key is None:
            return
        try:
            if self.checkpoints.inline:  # a local file: no coroutine, no thread hop
                digest = self.checkpoints.persist(record.key, encoded, meta)
            else:
                digest = await self.checkpoints.apersist(record.key, encoded, meta)
        except StoreUnwritable as exc:  # the output is good; only keeping it failed
            self.unwritable = self.unwritable or exc
            self.unsaved.append(name)
            digest = codec.digest(encoded)
        self.digests[name] = record.digest = digest

    def _worth_leasing(self, name: str) -> bool:
        """A lease costs three file operations (create, read back, remove), more than a
        quick step itself. Agent calls and approvals are always leased (a second process
        would pay for the call again, or ask a person again); a Step only when its history or
        `estimate=` says it takes at least `LEASE_MIN_SECONDS`: computing a quicker step in
        both processes costs less than coordinating them."""
        if not isinstance(self.specs[name], Step):
            return True
        return self.durations.get(name, 0.0) >= LEASE_MIN_SECONDS

    async def _await_other_process(self, name: str) -> bool:
        """Claim `name`'s lease before computing it. If another live process is computing
        it, wait for that output and complete from it (True); else this run holds the lease
        and computes (False)."""
        key = self.records[name].key
        store = self.store
        checkpoints = self.checkpoints
        if self.leases is None or store is None or key is None or checkpoints is None:
            return False
        if not checkpoints.wanted(name):
            return False

        hint = codec.output_hint(self.specs[name])

        def found() -> Any:
            """The other process's output, if stored and usable (else compute it here)."""
            try:
                stored = store.get(key)
                if stored is not None:
                    codec.decode(stored.value, hint)
                return stored
            except Exception:  # corrupt or undecodable: warned about once already
                return None

        got = await self.leases.claim(key, found)
        if got is None:
            return False
        return self._use_checkpoint(name, checkpoints.lookup(self.specs[name], key))

    def _elsewhere(self) -> Path:
        """Where this run's trace and manifest go when its store cannot take them."""
        if self._moved is None:
            self._moved = Path(tempfile.gettempdir()) / "dagagents" / "runs" / self.run_id
            self._moved.mkdir(parents=True, exist_ok=True)
        return self._moved

    # -------------------------------------------------------------- node bodies
    async def _timed_body(
        self, spec: NodeSpec, inputs: dict[str, Any], record: NodeRecord, meta: dict[str, Any]
    ) -> Any:
        """The body under the node's `timeout=`."""
        assert spec.timeout is not None
        try:
            async with asyncio.timeout(spec.timeout):
                return await self._run_body(spec, inputs, record, meta)
        except TimeoutError:
            raise NodeTimeout(f"timed out after {spec.timeout:g}s") from None

    def _run_body(
        self, spec: NodeSpec, inputs: dict[str, Any], record: NodeRecord, meta: dict[str, Any]
    ) -> Awaitable[Any]:
        """What to await for the node's output (no coroutine of its own: one frame less per
        node)."""
        if is_kind(spec, Step):  # the common case first
            kwargs = step_kwargs(spec, inputs)
            if self.store is not None and record.key is not None:
                return self._stored_step(spec, kwargs, record, meta)
            return self.executor.run_step(spec, kwargs)
        if is_kind(spec, AgentTask):
            return self._agent_body(spec, inputs, record, meta)
        assert isinstance(spec, Approval)
        return self._approval_body(spec, inputs, record, meta)

    async def _stored_step(
        self, spec: Step, kwargs: dict[str, Any], record: NodeRecord, meta: dict[str, Any]
    ) -> Any:
        assert self.store is not None and record.key is not None
        value, digest = await self.executor.run_step_stored(
            spec, kwargs, self.store, record.key, meta
        )
        if digest is not None:
            self.digests[spec.name] = record.digest = digest
        return value

    async def _agent_body(
        self, spec: AgentTask, inputs: dict[str, Any], record: NodeRecord, meta: dict[str, Any]
    ) -> Any:
        prompt = render_prompt(spec, inputs)
        # What was sent, kept beside the output so `dagagents show --prompt` can print it.
        meta.update(prompt=prompt, system=spec.agent.system)
        fields = self.call_fields
        if self.tracer.listening:  # live views show the prompt while the reply streams
            self.tracer.stream("prompt", node=spec.name, prompt=prompt, system=spec.agent.system)
            if "on_text" not in fields:
                stream, node = self.tracer.stream, spec.name
                fields = {**fields, "on_text": lambda text: stream("token", node=node, text=text)}
        # Grow the run while the reply is written: a streamed plan, maps over its output.
        growing = streams_for(self, spec, self._launch)
        if growing:
            on_text = fields.get("on_text")
            for grower in reversed(growing):
                on_text = _chain(grower.feed, on_text)
            fields = {**fields, "on_text": on_text, "on_reply": _restart_all(growing)}
        if isinstance(self.provider, DeferredProvider):
            # Wait for the SDK import before the limiter admits a call: an admitted call
            # that then waited for the import would reach the API later than its limits
            # assumed. Only agent nodes wait; steps never do.
            self.provider = await self.provider.aresolve()
        ctx = CallContext(provider=self.provider, node=spec.name, emit=self.emit, **fields)
        try:
            result = await self.executor.run_agent(spec, prompt, ctx)
        except AgentFailed as failed:
            # Calls made before the failure were still paid for: keep them on the record.
            self._record_usage(record, failed.spent, meta)
            for grower in growing:
                await self._end_stream(grower, None)
            raise failed.error from failed.error.__cause__  # a 401 behind it stays findable
        self._record_usage(record, result, meta)
        for grower in growing:
            await self._end_stream(grower, result.output)
        return result.output

    async def _approval_body(
        self, spec: Approval, inputs: dict[str, Any], record: NodeRecord, meta: dict[str, Any]
    ) -> Any:
        """A decision already in the store, else the approver's, else wait (see approvals)."""
        key = record.key
        reason = approvals.read_rejection(self.store, key) if self.store and key else None
        if reason is not None:
            raise ApprovalRejected(f"rejected: {reason}")
        record.status = approvals.WAITING
        self.emit("node_waiting", node=spec.name, prompt=spec.prompt, key=key)
        if self.approver is None:
            raise _Waiting(spec.name)
        request = ApprovalRequest(self.run_id, spec.name, spec.prompt, dict(inputs))
        decision = await approvals.ask(self.approver, request)
        record.status = RUNNING
        self.emit("approval", node=spec.name, approved=decision.approved, reason=decision.reason)
        if not decision.approved:
            if self.store is not None and key is not None:
                approvals.write_rejection(self.store, key, spec.name, decision.reason)
            raise ApprovalRejected(f"rejected: {decision.reason or 'rejected'}")
        meta.update(approvals.approval_meta(spec.name, decision.reason))
        if decision.value is not None:
            return decision.value
        return approvals.default_value(inputs)

    def _record_usage(self, record: NodeRecord, result: AgentResult, meta: dict[str, Any]) -> None:
        record.usage = result.usage
        record.model = result.model or record.model
        record.calls = result.calls
        record.simulated = result.simulated
        record.cost_usd = result.cost_usd  # computed once, where each call's usage was known
        record.saved_cache_usd = result.saved_cache_usd
        record.saved_batch_usd = result.saved_batch_usd
        record.batch_calls = result.batch_calls
        meta.update(
            usage=result.usage.model_dump(),
            model=record.model,
            calls=result.calls,
            cost_usd=record.cost_usd,
            simulated=result.simulated,
        )

    # ---------------------------------------------------------------- expansion
    def has_started(self, name: str) -> bool:
        return self.sorter.state.get(name, PENDING) != PENDING

    def grow(self, growth: Growth) -> None:
        """Apply an accepted expansion (see expand.py) to the graph, records, sorter, trace."""
        if not self._owns_graph:  # grow a copy: the user's graph never changes
            self._graph = self._graph.copy()
            self.specs = self._graph.specs
            self._owns_graph = True
        if growth.graph is not None:
            self._graph.nx = growth.graph
        else:  # only new sinks (see `Growth.graph`): added in place, nothing to re-check
            self._graph.nx.add_nodes_from(growth.nodes)
            self._graph.nx.add_edges_from(growth.edges)
        for name, spec in growth.nodes.items():
            self.specs[name] = spec
            self.records[name] = _new_record(spec)
            self.durations[name] = self._estimate(spec)
        for name, spec in growth.updated.items():
            self.specs[name] = spec
            self.records[name].depends_on = spec.depends_on
        if growth.graph is None:
            priority = self._sink_priorities(growth)
        else:
            priority = remaining_path_lengths(self._graph.nx, self.durations.__getitem__)
        blocked = self.sorter.add(growth.nodes, growth.edges, priority)
        self.emit(
            "expand",
            node=growth.source,
            added=list(growth.nodes),
            edges=[list(e) for e in growth.edges],
            agents={n: self.records[n].agent for n in growth.nodes},
            models={n: self.records[n].model for n in growth.nodes},
            **({"streamed": True} if growth.streamed else {}),
        )
        for skipped, blocker in blocked:
            because = self.records[blocker].because or blocker  # name the failed ancestor
            self._skip_below(skipped, blocker, because)

    def _sink_priorities(self, growth: Growth) -> dict[str, float]:
        """Remaining path lengths after a growth that only adds sinks (`Growth.graph` None):
        the new nodes' own, and each ancestor's that grew, walked up only while it grows. The
        numbers a whole-graph pass would give, at the cost of the new nodes and the ancestors
        they lengthen (a streamed map adds its items one at a time)."""
        new = growth.nodes
        children: dict[str, list[str]] = {}
        for src, dst in growth.edges:
            if src in new:
                children.setdefault(src, []).append(dst)
        longest: dict[str, float] = {}
        for name in reversed(list(new)):  # a new node's new dependencies come before it
            below = [longest[child] for child in children.get(name, ())]
            longest[name] = self.durations[name] + (max(below) if below else 0.0)
        durations, remaining = self.durations, self.sorter.remaining
        predecessors = self._graph.nx.predecessors
        stack = [(src, longest[dst]) for src, dst in growth.edges if src not in new]
        while stack:
            node, below_length = stack.pop()
            length = durations.get(node, 0.0) + below_length
            if length > longest.get(node, remaining(node)):
                longest[node] = length
                stack.extend((parent, length) for parent in predecessors(node))
        return longest

    async def _end_stream(self, stream: ExpansionStream, output: Any) -> None:
        """The node whose reply `stream` read finished (`output`) or failed (None): keep the
        streamed nodes the final expansion (`stream.final`, the expansion `stream.source`
        will make) contains unchanged, retire the rest, and free the names it redefines, so
        the source's `_complete` adds those afresh. An expansion that raises keeps none (the
        source's `_complete` then fails it with the reason)."""
        final: dict[str, NodeSpec] | None = None
        if output is not None and stream.final is not None:
            try:
                expansion = stream.final(output)
            except Exception:
                expansion = None
            if isinstance(expansion, Expansion):
                final = {n.name: n for n in expansion.nodes}
        kept, cancelled = self._retire(stream, final)
        if cancelled:  # a redefined name is reused only once its old task has unwound
            await asyncio.wait(cancelled)
        for name in stream.added:
            if final is not None and name in final and name not in kept:
                self._forget(name)
        self._kept[stream.source] = kept

    def _retire(
        self, stream: ExpansionStream, final: Mapping[str, NodeSpec] | None
    ) -> tuple[set[str], list[asyncio.Task[Any]]]:
        """Skip the streamed nodes the final answer does not keep (a running one is
        cancelled; a finished one stays as it is, its spend counted). Returns the kept names
        and the cancelled tasks."""
        kept, retired = stream_survivors(stream.added, final)
        cancelled: list[asyncio.Task[Any]] = []
        for name in retired:
            because = (
                f"superseded by the final {stream.label}"
                if final is not None and name in final
                else f"dropped from the final {stream.label}"
            )
            status = self.records[name].status
            if status == RUNNING:
                # Popped here: a task cancelled before its first step never runs its handler.
                task = self._running.pop(name, None)
                self._transition(name, SKIPPED, because=because)
                if task is not None:
                    task.cancel()
                    cancelled.append(task)
            elif status == PENDING:
                for skipped in self.sorter.skip([name]):
                    self._transition(skipped, SKIPPED, because=because)
        return kept, cancelled

    def _forget(self, name: str) -> None:
        """A finished streamed node whose name the final expansion redefines: its record is
        kept as `name~superseded` (what it spent still counts); the name is free again."""
        archived, n = f"{name}~superseded", 2
        while archived in self.records:
            archived, n = f"{name}~superseded{n}", n + 1
        self.records[archived] = dataclasses.replace(self.records.pop(name), name=archived)
        self.sorter.forget([name])
        self._graph.nx.remove_node(name)
        self.specs.pop(name, None)
        self.durations.pop(name, None)
        self.outputs.pop(name, None)
        self.digests.pop(name, None)

    # ------------------------------------------------------------------ ending
    def _close(self, reason: str) -> None:
        """After the node tasks ended early: what was running is cancelled, the rest skipped."""
        for name, record in self.records.items():
            if record.status == RUNNING:
                self._transition(name, CANCELLED, error=reason)
        self._skip_all(reason)

    def _finish(self, status: str, counts: Counter[str]) -> None:
        """The run is over with `status`; `counts`: its records by status."""
        if counts[PENDING]:
            for record in self.records.values():
                if record.status == PENDING:  # never reached: the run waits, or it stalled
                    record.status = SKIPPED
                    record.because = record.because or (
                        "the run is waiting for approval"
                        if status == approvals.RUN_WAITING
                        else status
                    )
            counts[SKIPPED] += counts.pop(PENDING)
        self.wall = self.tracer.now()
        cost = sum(
            (r.cost_usd for r in self.records.values() if r.cost_usd and r.status == DONE), 0.0
        )
        self.emit(
            "run_end",
            status=status,
            wall=self.wall,
            counts={s: n for s, n in counts.items() if n},
            cost=cost,
        )

    async def _write_manifest(self, status: str) -> None:
        """Locally inline (fast); to any other store from a thread, off the event loop."""
        if self.store is None:
            return
        manifest = self.manifest(status)
        try:
            if self.store.is_local:
                self.store.write_manifest(self.run_id, manifest)
            else:
                await asyncio.to_thread(self.store.write_manifest, self.run_id, manifest)
        except StoreUnwritable as exc:
            self.unwritable = self.unwritable or exc
            if status == RUN_RUNNING:
                return  # the final one is what matters
            path = self._elsewhere() / "manifest.json"
            path.write_bytes(orjson.dumps(manifest))
            self.emit("warning", node=None, message=f"{exc}: this run's manifest is at {path}")

    def _store_problem(self) -> str | None:
        """One sentence for outputs the store could not keep (full, read-only)."""
        if self.leases is not None:
            self.leases.release_all()
        for _, exc in self.tracer.failed_sinks:
            self.emit("warning", node=None, message=f"this run's trace is incomplete: {exc}")
        if not self.unsaved or self.unwritable is None:
            return None
        n = len(self.unsaved)
        return f"{self.unwritable}: {n} node{'s' if n != 1 else ''} could not be saved"

    def manifest(self, status: str) -> dict[str, Any]:
        """The run's record. While running it holds only the header (the trace has the rest)."""
        head = {
            "version": MANIFEST_VERSION,
            "graph": self.graph.name,
            "run_id": self.run_id,
            "status": status,
            "started": self._started_at,
            "pid": os.getpid(),
            "host": Store.host(),
        }
        if status == RUN_RUNNING:
            return head
        return {
            **head,
            "wall": self.wall,
            "concurrency": self.concurrency,
            "provider": self.provider.name,
            "executor": self.executor.name,
            "nodes": {name: r.to_json() for name, r in self.records.items()},
            "edges": [list(e) for e in self.graph.nx.edges],
            "specs": {name: describe_spec(spec) for name, spec in self.specs.items()},
        }

    def _result(self, status: str) -> RunResult:
        problem = self._store_problem()
        return RunResult(
            graph=self.graph.name,
            run_id=self.run_id,
            records=self.records,
            outputs=self.outputs,
            output_node=self.graph.output,
            wall=self.wall,
            concurrency=self.concurrency,
            provider=self.provider.name,
            store=self.store.url if self.store else None,
            interrupted=status == RUN_INTERRUPTED,
            events=self.tracer.events,
            edges=[(src, dst) for src, nbrs in self.graph.nx.adjacency() for dst in nbrs],
            store_problem=problem,
            unsaved=list(self.unsaved),
        )


class _Waiting(Exception):
    """An approval node with no decision and no approver: it waits; the run goes on."""


def _new_record(spec: NodeSpec) -> NodeRecord:
    if not is_kind(spec, AgentTask):
        return NodeRecord.pending(spec.name, spec.kind, spec.depends_on)
    agent = spec.agent
    return NodeRecord.pending(spec.name, spec.kind, spec.depends_on, agent.name, agent.model)


def _emit_completion(emit: Emit, record: NodeRecord) -> None:
    """The `node_complete` event. A field that would be null, zero or false is left out (a
    step's model, usage, cost; the key without a store): readers default them."""
    plain = record.model is None and record.key is None  # a step without a store
    if plain and not (record.calls or record.cost_usd or record.simulated):
        emit("node_complete", node=record.name, duration=record.duration)
        return
    fields: dict[str, Any] = {"node": record.name, "duration": record.duration}
    if record.model is not None:
        fields["model"] = record.model
    if record.calls:
        fields["usage"] = record.usage.model_dump()
    if record.cost_usd:
        fields["cost"] = record.cost_usd
    if record.key is not None:
        fields["key"] = record.key
    if record.simulated:
        fields["simulated"] = True
    emit("node_complete", **fields)


def _restart_all(streams: list[ExpansionStream]) -> Any:
    """One `on_reply` callback: every stream reads the new reply from its start."""

    def restart() -> None:
        for stream in streams:
            stream.restart()

    return restart


def _chain(first: Any, then: Any) -> Any:
    """One text callback calling `first`, then `then` (if any)."""
    if then is None:
        return first

    def both(text: str) -> None:
        first(text)
        then(text)

    return both


def _encodable(name: str, value: Any) -> bytes:
    """The encoded output; one that cannot be stored fails its node, with a store or without."""
    try:
        return codec.encode(value)
    except codec.NotSerialisable as exc:
        raise UserError(f"node '{name}' returned {exc}.") from None


def _unwrap(exc: BaseException) -> BaseException:
    """The TaskGroup wraps a node task's unexpected error in a group: the error itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


AUTH_FAILED = "authentication failed"


def _is_auth_failure(error: BaseException) -> bool:
    """A 401 (or no credentials at all): no other call with this key can succeed."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ProviderError) and (
            seen.status == 401 or seen.kind == "authentication_error"
        ):
            return True
        seen = seen.__cause__
    return False


def _error_text(error: BaseException) -> str:
    if isinstance(error, DagAgentsError):
        return str(error)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _short_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error, limit=-3))[-2000:]


__all__ = ["DEFAULT_STORE", "RunOptions", "arun", "open_store", "run"]
