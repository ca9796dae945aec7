"""One run of a graph: checkpoint lookups, the eager loop, node bodies, the manifest.

`EagerSorter` decides what may start; this module starts it. A node whose checkpoint exists
completes at once without taking a slot. Every other ready node starts as soon as a slot is
free. Every task is owned by the run: on failure with `fail_fast`, on Ctrl-C or on any error
the run cancels what is in flight, waits for it, and writes its manifest before returning.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from dagagents.engine import approvals
from dagagents.engine.approvals import ApprovalRejected, ApprovalRequest, Approver
from dagagents.engine.cache_warming import CacheWarmer
from dagagents.engine.checkpoints import checkpoint_key
from dagagents.engine.executors.base import Executor
from dagagents.engine.executors.local import LocalExecutor
from dagagents.engine.heap import frozen_heap
from dagagents.engine.invoke import AgentResult, CallContext
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
from dagagents.engine.scheduler import EagerSorter, remaining_path_lengths
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
from dagagents.model.graph import Graph, check_acyclic, validate_spec
from dagagents.model.nodes import AgentTask, Approval, Expansion, NodeSpec, Step, render_prompt
from dagagents.observe.pricing import Pricing, cost_usd
from dagagents.observe.runs import NodeRecord, RunResult
from dagagents.observe.trace import Tracer
from dagagents.providers import Provider, resolve_provider
from dagagents.store import CorruptObject, Store, codec

if TYPE_CHECKING:
    from dagagents.engine.batches import BatchingProvider, BatchOptions

MANIFEST_VERSION = 1
DEFAULT_STORE = ".dagagents"
_DEFAULT = object()


def run_sync(graph: Graph, **options: Any) -> RunResult:
    """`Graph.run`: a fresh event loop; Ctrl-C cancels cleanly, then raises KeyboardInterrupt."""
    return asyncio.run(arun(graph, **options))


async def arun(
    graph: Graph,
    *,
    concurrency: int = 8,
    provider: str | Provider | None = None,
    store: str | os.PathLike[str] | Store | None = DEFAULT_STORE,
    fresh: bool = False,
    rerun: Iterable[str] = (),
    fail_fast: bool = False,
    trace: str | os.PathLike[str] | None = None,
    executor: Executor | None = None,
    listener: Callable[[dict[str, Any]], None] | None = None,
    keep_events: bool = True,
    rate_limits: RateLimits | None = None,
    max_cost_usd: float | None = None,
    retry: RetryPolicy | int | None = None,
    pricing: Pricing | None = None,
    call_options: dict[str, Any] | None = None,
    cache_warming: bool | float | None = None,
    batch: bool | BatchOptions = False,
    batch_window: float = 2.0,
    batch_max: int = 100_000,
    count_tokens: bool | float = False,
    limits: str | SharedLimits | None = None,
    approver: Approver | None = None,
) -> RunResult:
    """Run `graph` and return its RunResult (never raises for node failures).

    `approver` decides approval nodes in-process (see engine/approvals.py); without one they
    wait and the run ends "waiting". `store=None` disables checkpoints; `fresh=True` ignores
    existing ones; `rerun` names nodes
    to recompute even if checkpointed. `rate_limits` (requests/tokens per minute per model),
    `max_cost_usd` (no call starts that could exceed it) and `retry` (a RetryPolicy or a number
    of attempts) govern every agent call; `call_options` are extra CallContext fields
    (`auto_cache`, `structured_output`). `cache_warming` (default: on for the Anthropic
    provider) lets calls sharing a cacheable prefix write it once (engine/cache_warming.py);
    a number is the most seconds a follower waits (default 10).
    `batch=True` sends every agent call through the Message Batches API at the batch price,
    collected over `batch_window` seconds or `batch_max` requests (engine/batches.py); a
    `BatchOptions` also sets the poll backoff. `count_tokens=True` (or the endpoint's
    requests per minute) counts each prompt shape's first call exactly for the ITPM limit.
    `limits="redis://host:6379/0"` (or a SharedLimits, or env DAGAGENTS_LIMITS_URL) shares the
    rate limits, backoff, concurrency and, with a budget key, the budget with every process on
    the same API key (engine/shared_limits.py).
    Raises UserError for an invalid graph or option.
    """
    if concurrency < 1:
        raise UserError(f"concurrency must be at least 1 (got {concurrency}).")
    opened = _open_store(store)
    resolved = resolve_provider(provider, graph.simulator)
    limiter = make_limiter(
        limits,
        rate_limits,
        provider=resolved,
        concurrency=concurrency,
        max_cost_usd=max_cost_usd,
        pricing=pricing,
    )
    await limiter.start()  # an unreachable shared-limits store is a UserError, before any work
    try:
        executor = executor or LocalExecutor()
        prepare = getattr(executor, "prepare", None)  # optional hook, see executors/base.py
        if prepare is not None:
            await prepare(opened, concurrency)
        try:
            extras = dict(call_options or {})
            batching: BatchingProvider | None = None
            if batch:
                from dagagents.engine.batches import (  # imports the SDK
                    BatchingProvider,
                    BatchOptions,
                )

                options = batch if isinstance(batch, BatchOptions) else None
                batching = BatchingProvider(
                    resolved, options or BatchOptions(batch_window, batch_max)
                )
                resolved = batching
                limiter.batch = True
                cache_warming = False  # a batch has no "response began" moment to wait for
            if cache_warming is None:
                cache_warming = resolved.name == "anthropic"
            if cache_warming and "cache_warmer" not in extras:
                wait = 10.0 if cache_warming is True else float(cache_warming)
                if wait < 0:
                    raise UserError(
                        f"cache_warming must be True, False or the most seconds to wait (got {wait})."
                    )
                extras["cache_warmer"] = CacheWarmer(limiter.pricing, max_wait=wait)
            if count_tokens and not batch and "token_counter" not in extras:
                extras["token_counter"] = make_counter(resolved, count_tokens)
            run = _Run(
                graph,
                concurrency=concurrency,
                provider=resolved,
                store=opened,
                fresh=fresh,
                rerun=set(rerun),
                fail_fast=fail_fast,
                trace=trace,
                executor=executor,
                listener=listener,
                keep_events=keep_events,
                limiter=limiter,
                retry=RetryPolicy(max_attempts=retry)
                if isinstance(retry, int)
                else retry or DEFAULT_RETRY,
                call_options=extras,
                approver=approver,
            )
        except BaseException:
            if prepare is not None:
                await executor.close()
            raise
        if batching is None:
            return await run.execute()
        from dagagents.engine.batches import BatchJournal

        batching.attach(
            BatchJournal(opened, run.run_id, graph.name),
            key_of=lambda name: run.records[name].key if name in run.records else None,
            emit=run.emit,
        )
        finished = False
        try:
            result = await run.execute()
            finished = result.ok
            return result
        finally:
            await batching.finish(collected=finished)
    finally:
        await limiter.aclose()


def _open_store(store: str | os.PathLike[str] | Store | None) -> Store | None:
    if store is None or isinstance(store, Store):
        return store
    return Store(store)


class _Run:
    """State of one run; `execute` drives it to the end."""

    def __init__(
        self,
        graph: Graph,
        *,
        concurrency: int,
        provider: Provider,
        store: Store | None,
        fresh: bool,
        rerun: set[str],
        fail_fast: bool,
        trace: str | os.PathLike[str] | None,
        executor: Executor,
        listener: Callable[[dict[str, Any]], None] | None,
        keep_events: bool,
        limiter: Limiter,
        retry: RetryPolicy,
        call_options: dict[str, Any],
        approver: Approver | None = None,
    ) -> None:
        graph.validate()
        unknown = sorted(n for n in rerun - set(graph.specs) if not _grown_name(n, graph.specs))
        if unknown:
            raise UserError(f"--rerun names unknown node '{unknown[0]}' in graph '{graph.name}'.")
        # The user's graph is copied only if an expansion is about to grow it.
        self.graph = graph
        self.specs = graph.specs
        self._owns_graph = False
        self.concurrency = concurrency
        self.provider = provider
        self.store = store
        self.fresh = fresh
        self.rerun = rerun
        self.fail_fast = fail_fast
        self.executor = executor
        self.call_options = call_options
        self.approver = approver
        self.limiter = limiter
        self.retry = retry
        self.pricing = limiter.pricing
        self.run_id = Store.new_run_id()
        # Another process computing a node this run needs is awaited, not paid twice.
        self.leases = Leases(store) if store is not None else None
        # A full or read-only store: outputs computed but not saved, and where the run's own
        # files went instead (said once, at the end, in one sentence).
        self.unwritable: StoreUnwritable | None = None
        self.unsaved: list[str] = []
        self._moved: Path | None = None
        run_warnings: list[str] = []
        sinks: list[IO[bytes]] = []
        if store is not None:
            try:
                sinks.append(store.open_trace(self.run_id))  # closed by the tracer
            except StoreUnwritable as exc:  # a read-only store still serves a cached rerun
                self.unwritable = exc
                path = self._elsewhere() / "trace.jsonl"
                sinks.append(open(path, "wb"))  # noqa: SIM115 - closed by the tracer
                run_warnings.append(f"{exc}: this run's trace is written to {path}")
        if trace is not None:
            Path(trace).parent.mkdir(parents=True, exist_ok=True)
            sinks.append(open(trace, "wb"))  # noqa: SIM115 - closed by the tracer
        self.tracer = Tracer(self.run_id, sinks=sinks, keep=keep_events)
        if listener is not None:
            self.tracer.subscribe(listener)
        self.emit = self.tracer.emit
        for message in run_warnings:
            self.emit("warning", node=None, message=message)
        self.records: dict[str, NodeRecord] = {
            name: self._new_record(spec) for name, spec in self.specs.items()
        }
        self.outputs: dict[str, Any] = {}
        self.digests: dict[str, str] = {}
        self._memo: dict[int, Any] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._closing = ""  # set to the reason when the run is being torn down
        self._auth_failed = False  # a 401 was reported: later ones are skips, not failures
        self._started_at = time.time()

    @staticmethod
    def _new_record(spec: NodeSpec) -> NodeRecord:
        agent = spec.agent if isinstance(spec, AgentTask) else None
        return NodeRecord(
            name=spec.name,
            kind=spec.kind,
            agent=agent.name if agent else None,
            model=agent.model if agent else None,
            depends_on=spec.depends_on,
        )

    # ------------------------------------------------------------ estimation
    def _estimate(self, name: str, spec: NodeSpec) -> float:
        """A node's expected duration for prioritising: its last run's, else the user's
        `estimate=`, else a guess from its token budget (time to first token + output at a
        typical speed); steps default to cheap."""
        if name in self._history:
            return self._history[name]
        if spec.estimate is not None:
            return spec.estimate
        if isinstance(spec, AgentTask):
            return 0.5 + min(spec.agent.max_tokens, 600) / 80.0
        return 0.001

    # ------------------------------------------------------------------ loop
    async def execute(self) -> RunResult:
        # No full collection walks the heap that existed before the run (see engine/heap.py).
        with frozen_heap():
            return await self._execute()

    async def _execute(self) -> RunResult:
        self._history = (
            previous_durations(self.store, self.graph.name) if self.store is not None else {}
        )
        self._durations = {name: self._estimate(name, spec) for name, spec in self.specs.items()}
        priority = remaining_path_lengths(self.graph.nx, self._durations.__getitem__)
        self.sorter = EagerSorter(self.graph.nx, priority)
        self.emit(
            "run_start",
            graph=self.graph.name,
            nodes=len(self.specs),
            concurrency=self.concurrency,
            provider=self.provider.name,
            store=self.store.url if self.store else None,
            executor=self.executor.name,
        )
        self._write_manifest("running")
        await self.executor.start(self.concurrency)
        if any(isinstance(s, AgentTask) and s.agent.output for s in self.specs.values()):
            # Structured output uses the SDK's schema transform; importing the SDK takes about
            # a second, which must not stall the event loop in the middle of the run.
            await asyncio.to_thread(importlib.import_module, "anthropic")
        flusher = asyncio.create_task(self._flush_periodically())
        self._all_done = asyncio.get_running_loop().create_future()
        status = "done"
        try:
            self._launch()
            await self._all_done
        except BaseException as exc:
            status = (
                "interrupted"
                if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
                else "crashed"
            )
            await self._cancel_running(status)
            raise
        finally:
            if status == "done" and any(
                r.status in ("failed", "cancelled") for r in self.records.values()
            ):
                status = "failed"
            if status == "done" and any(
                r.status == approvals.WAITING for r in self.records.values()
            ):
                status = approvals.RUN_WAITING
            flusher.cancel()
            await self.executor.close()
            self._finish(status)
        return self._result(status)

    async def _flush_periodically(self, every: float = 0.2) -> None:
        """Keep the on-disk trace current while nodes run (watchers and kill-resume rely on it)."""
        while True:
            await asyncio.sleep(every)
            self.tracer.flush()
            if self.leases is not None:
                self.leases.heartbeat()
            if self.tracer.listening:  # live views: what the limiter is doing (never traced)
                self.tracer.stream("limits", **self.limiter.snapshot())

    def _launch(self) -> None:
        """Start ready nodes while slots are free; checkpoint hits complete immediately.
        Ends the run when nothing is left to start or running."""
        sorter = self.sorter
        running = self._running
        while sorter.has_ready() and len(running) < self.concurrency:
            name = sorter.pop_ready()
            self.emit("node_ready", node=name)
            if self.specs[name].when is not None and self._condition_false(name):
                continue
            if self._try_cache(name):
                continue
            running[name] = asyncio.ensure_future(self._node(name))
        # Over when nothing runs and nothing is ready: all done, or the rest waits for approval.
        if not running and not sorter.has_ready() and not self._all_done.done():
            self._all_done.set_result(None)

    async def _node(self, name: str) -> None:
        """Own one node: run its body, then settle it and start what became ready.

        Settling inside the task (not in a done-callback feeding a queue) costs one event
        loop iteration per node instead of three."""
        value: Any = None
        error: BaseException | None = None
        try:
            if await self._await_other_process(name):
                del self._running[name]  # completed from the other process's output
                self._launch()
                return
            try:
                value = await self._body(name)
            finally:
                if self.leases is not None:
                    self.leases.release(self.records[name].key)
        except _Waiting:
            del self._running[name]  # waits for a decision without holding a slot
            self._launch()
            return
        except asyncio.CancelledError as exc:
            error = exc
        except Exception as exc:
            error = exc
        del self._running[name]
        if self._closing:
            self._settle_cancelled(name, self._closing)
            return
        try:
            self._settle(name, value, error)
            self._launch()
        except BaseException as exc:  # a bug in settling must end the run, not hang it
            if not self._all_done.done():
                self._all_done.set_exception(exc)

    def _settle(self, name: str, value: Any, error: BaseException | None) -> None:
        """Record a finished body: done (maybe expanding the graph) or failed."""
        record = self.records[name]
        if error is None:
            self._complete(name, value)
            return
        if isinstance(error, asyncio.CancelledError):
            self._settle_cancelled(name, "cancelled")
            return
        auth = _is_auth_failure(error)
        if auth and self._auth_failed:
            # The key is bad for every call: one failure says so; the rest are skipped.
            record.end = self.tracer.now()
            self.sorter.fail(name)
            self._mark_skipped(name, because=AUTH_FAILED)
            self._skip_all(AUTH_FAILED)
            return
        record.status = "failed"
        record.end = self.tracer.now()
        record.error = _error_text(name, error)
        detail = None if isinstance(error, DagAgentsError) else _short_traceback(error)
        self.emit("node_error", node=name, error=record.error, traceback=detail)
        for skipped in self.sorter.fail(name):
            self._mark_skipped(skipped, because=name)
            failed_item = map_item_failure(self.specs[skipped], name, record.error)
            if failed_item:  # a map fails, naming its item; the siblings still finish
                self.records[skipped].status = "failed"
                self.records[skipped].error = failed_item
                self.emit("node_error", node=skipped, error=failed_item)
        if auth:
            self._auth_failed = True
            self._skip_all(AUTH_FAILED)
        if isinstance(error, BudgetExceeded | LimitsUnavailable):
            # No new call may start; in-flight calls finish (their cost was reserved).
            because = (
                "cost budget reached"
                if isinstance(error, BudgetExceeded)
                else "shared limits store unreachable"
            )
            for skipped in self.sorter.skip_all():
                self._mark_skipped(skipped, because=because)
        if self.fail_fast:
            for skipped in self.sorter.skip_all():
                self._mark_skipped(skipped, because=f"fail_fast after '{name}' failed")
            for task in list(self._running.values()):
                task.cancel()

    def _skip_all(self, because: str) -> None:
        for skipped in self.sorter.skip_all():
            self._mark_skipped(skipped, because=because)

    def _settle_cancelled(self, name: str, reason: str) -> None:
        record = self.records[name]
        if record.status in ("done", "failed", "cancelled"):
            return
        record.status = "cancelled"
        record.end = self.tracer.now()
        record.error = reason
        self.sorter.cancelled(name)
        self.emit("node_error", node=name, error=reason)

    def _condition_false(self, name: str) -> bool:
        """Evaluate `name`'s when= condition; if false, skip it and what requires it (zero
        cost), letting dependents that take it as optional run with None."""
        spec = self.specs[name]
        try:
            holds = condition_holds(spec, node_inputs(spec, self.outputs))
        except GraphError as exc:
            self._settle(name, None, exc)
            return True
        if holds:
            return False
        self.digests[name] = SKIPPED_DIGEST
        self._mark_skipped(name, because=CONDITION_FALSE)
        specs = self.specs
        for skipped in self.sorter.skip_unneeded(name, lambda s, d: s in specs[d].optional):
            self.digests[skipped] = SKIPPED_DIGEST
            self._mark_skipped(skipped, because=CONDITION_FALSE)
        return True

    def _mark_skipped(self, name: str, because: str) -> None:
        record = self.records[name]
        record.status = "skipped"
        record.because = because
        self.emit("node_skipped", node=name, because=because)

    def _complete(self, name: str, value: Any) -> None:
        spec = self.specs[name]
        if spec.expand is not None:
            try:
                self._expand(name, spec.expand(value))
            except DagAgentsError as exc:
                self._settle(name, None, exc)
                return
            except Exception as exc:
                self._settle(
                    name, None, GraphError(f"expansion raised {type(exc).__name__}: {exc}")
                )
                return
        self.outputs[name] = value
        note = loop_note(spec, value)
        if note is not None:
            self.emit("warning", node=name, message=note)
        self.sorter.done(name)  # what became ready is started by the next _launch

    # -------------------------------------------------------------- checkpoints
    def _key(self, name: str) -> str | None:
        if self.store is None:
            return None
        return checkpoint_key(self.specs[name], self.digests, self._memo)

    def _try_cache(self, name: str) -> bool:
        """Complete `name` from its checkpoint if one exists and is intact."""
        key = self._key(name)
        record = self.records[name]
        record.key = key
        if key is None or self.store is None or self.fresh or name in self.rerun:
            return False
        try:
            stored = self.store.get(key)
        except CorruptObject as exc:
            self.emit(
                "warning",
                node=name,
                message=f"checkpoint {key[:12]} is corrupt ({exc}); recomputing",
            )
            self.store.discard(key)
            return False
        if stored is None:
            return False
        spec = self.specs[name]
        hint = codec.output_hint(spec)
        try:
            value = codec.decode(stored.value, hint)
        except Exception as exc:
            self.emit("warning", node=name, message=f"checkpoint unreadable ({exc}); recomputing")
            return False
        now = self.tracer.now()
        record.status = "cached"
        record.start = record.end = now
        record.digest = stored.digest
        meta = stored.meta
        record.cost_usd = float(meta.get("cost_usd", 0.0))
        record.calls = int(meta.get("calls", 0))
        record.simulated = bool(meta.get("simulated", False))
        if meta.get("usage"):
            record.usage = record.usage.model_validate(meta["usage"])
        if meta.get("model"):
            record.model = meta["model"]
        self.digests[name] = stored.digest
        self.emit("cache_hit", node=name, key=key, saved_cost=record.cost_usd)
        self._complete(name, value)
        return True

    def _persist(self, name: str, value: Any, meta: dict[str, Any]) -> None:
        """Store the output; sets its digest. Unserialisable outputs fail the node."""
        record = self.records[name]
        if self.store is None or record.key is None or record.digest is not None:
            return  # no store, or the executor already stored it where the body ran
        encoded = codec.encode(value)
        try:
            digest = self.store.put(record.key, encoded, meta)
        except StoreUnwritable as exc:  # the output is good; only keeping it failed
            self.unwritable = self.unwritable or exc
            self.unsaved.append(name)
            digest = codec.digest(encoded)
        self.digests[name] = record.digest = digest

    async def _await_other_process(self, name: str) -> bool:
        """Claim `name`'s lease before computing it. If another live process is computing
        it, wait for that output and complete from it (True); else this run holds the lease
        and computes (False)."""
        key = self.records[name].key
        store = self.store
        if self.leases is None or store is None or key is None:
            return False
        if self.fresh or name in self.rerun:
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
        return got is not None and self._try_cache(name)

    def _elsewhere(self) -> Path:
        """Where this run's trace and manifest go when its store cannot take them."""
        if self._moved is None:
            self._moved = Path(tempfile.gettempdir()) / "dagagents" / "runs" / self.run_id
            self._moved.mkdir(parents=True, exist_ok=True)
        return self._moved

    # -------------------------------------------------------------- node bodies
    async def _body(self, name: str) -> Any:
        spec = self.specs[name]
        record = self.records[name]
        inputs = node_inputs(spec, self.outputs)
        record.start = self.tracer.now()
        self.emit("node_start", node=name, kind=spec.kind, agent=record.agent, model=record.model)
        for dep in spec.depends_on:
            self.emit("message", src=dep, dst=name)
        meta: dict[str, Any] = {"node": name, "graph": self.graph.name}
        if spec.timeout is None:
            value = await self._run_body(spec, inputs, record, meta)
        else:
            try:
                async with asyncio.timeout(spec.timeout):
                    value = await self._run_body(spec, inputs, record, meta)
            except TimeoutError:
                raise NodeTimeout(f"timed out after {spec.timeout:g}s") from None
        record.end = self.tracer.now()
        meta["duration"] = record.duration
        try:
            self._persist(name, value, meta)
        except codec.NotSerialisable as exc:
            raise UserError(f"node '{name}' returned {exc}.") from None
        record.status = "done"
        self.emit(
            "node_complete",
            node=name,
            duration=record.duration,
            model=record.model,
            usage=record.usage.model_dump() if record.calls else None,
            cost=record.cost_usd,
            key=record.key,
            simulated=record.simulated,
        )
        return value

    async def _run_body(
        self, spec: NodeSpec, inputs: dict[str, Any], record: NodeRecord, meta: dict[str, Any]
    ) -> Any:
        if isinstance(spec, AgentTask):
            return await self._agent_body(spec, inputs, record, meta)
        if isinstance(spec, Approval):
            return await self._approval_body(spec, inputs, record, meta)
        assert isinstance(spec, Step)
        kwargs = step_kwargs(spec, inputs)
        stored = getattr(self.executor, "run_step_stored", None)  # see executors/base.py
        if stored is not None and self.store is not None and record.key is not None:
            value, digest = await stored(spec, kwargs, self.store, record.key, meta)
            self.digests[spec.name] = record.digest = digest
            return value
        return await self.executor.run_step(spec, kwargs)

    async def _agent_body(
        self,
        spec: AgentTask,
        inputs: dict[str, Any],
        record: NodeRecord,
        meta: dict[str, Any],
    ) -> Any:
        prompt = render_prompt(spec, inputs)
        # What was sent, kept beside the output so `dagagents show --prompt` can print it.
        meta.update(prompt=prompt, system=spec.agent.system)
        fields: dict[str, Any] = {
            "limiter": self.limiter,
            "retry": self.retry,
            "pricing": self.pricing,
            **self.call_options,  # explicit CallContext fields win
        }
        if self.tracer.listening:  # live views show the prompt while the reply streams
            self.tracer.stream("prompt", node=spec.name, prompt=prompt, system=spec.agent.system)
        if self.tracer.listening and "on_text" not in fields:
            stream, node = self.tracer.stream, spec.name
            fields["on_text"] = lambda text: stream("token", node=node, text=text)
        ctx = CallContext(provider=self.provider, node=spec.name, emit=self.emit, **fields)
        try:
            result = await self.executor.run_agent(spec, prompt, ctx)
        except Exception as exc:
            # Calls made before the failure were still paid for: keep them on the record.
            spent = getattr(exc, "spent", None)
            if isinstance(spent, AgentResult):
                self._record_usage(record, spent, meta)
            raise
        self._record_usage(record, result, meta)
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
        record.status = "pending"
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
        record.model = result.model
        record.calls = result.calls
        record.simulated = result.simulated
        record.cost_usd = result.cost_usd or cost_usd(result.model, result.usage, self.pricing)
        record.saved_cache_usd = result.saved_cache_usd
        record.saved_batch_usd = result.saved_batch_usd
        record.batch_calls = result.batch_calls
        meta.update(
            usage=result.usage.model_dump(),
            model=result.model,
            calls=result.calls,
            cost_usd=record.cost_usd,
            simulated=result.simulated,
        )

    # ---------------------------------------------------------------- expansion
    def _expand(self, name: str, expansion: Expansion | None) -> None:
        """Add nodes/edges from `name`'s output; reject clashes and cycles (graph unchanged)."""
        if expansion is None:
            return
        if not isinstance(expansion, Expansion):
            raise GraphError(
                f"expand of node '{name}' must return an Expansion, not {type(expansion).__name__}"
            )
        new = {spec.name: spec for spec in expansion.nodes}
        for spec_name in new:
            if spec_name in self.specs:
                raise GraphError(
                    f"expansion from node '{name}' adds node '{spec_name}', which already exists"
                )
        for src, dst in expansion.edges:
            if src not in new and src not in self.specs:
                raise GraphError(
                    f"expansion from node '{name}' adds an edge from unknown node '{src}'"
                )
            if dst in self.specs and self.sorter.state.get(dst) != "pending":
                raise GraphError(
                    f"expansion from node '{name}' adds an edge into '{dst}', which has already started"
                )
            if dst not in new and dst not in self.specs:
                raise GraphError(
                    f"expansion from node '{name}' adds an edge to unknown node '{dst}'"
                )
        trial = self.graph.nx.copy()
        for spec in new.values():
            trial.add_node(spec.name)
            for dep in spec.depends_on:
                trial.add_edge(dep, spec.name)
        trial.add_edges_from(expansion.edges)
        combined = {**self.specs, **new}
        for spec in new.values():
            validate_spec(f"expansion from node '{name}'", spec, combined)
        try:
            check_acyclic(f"expansion from node '{name}'", trial)
        except GraphError as exc:
            raise GraphError(
                str(exc).rstrip(".") + " would be created; expansion rejected"
            ) from None
        # Accepted: grow the run's graph (a copy: the user's graph never changes).
        if not self._owns_graph:
            self.graph = self.graph.copy()
            self.specs = self.graph.specs
            self._owns_graph = True
        self.graph.nx = trial
        for spec in new.values():
            self.specs[spec.name] = spec
            self.records[spec.name] = self._new_record(spec)
        for src, dst in expansion.edges:
            dst_spec = self.specs[dst]
            if src not in dst_spec.depends_on:
                self.specs[dst] = dst_spec.model_copy(
                    update={"depends_on": (*dst_spec.depends_on, src)}
                )
                self.records[dst].depends_on = self.specs[dst].depends_on
        for spec_name, spec in new.items():
            self._durations[spec_name] = self._estimate(spec_name, spec)
        priority = remaining_path_lengths(self.graph.nx, self._durations.__getitem__)
        edges = [(d, s.name) for s in new.values() for d in s.depends_on] + list(expansion.edges)
        for skipped, blocker in self.sorter.add(new, edges, priority):
            because = self.records[blocker].because or blocker  # name the failed ancestor
            self._mark_skipped(skipped, because=because)
        self.emit(
            "expand",
            node=name,
            added=list(new),
            edges=[list(e) for e in edges],
            agents={n: self.records[n].agent for n in new},
            models={n: self.records[n].model for n in new},
        )

    # ------------------------------------------------------------------ ending
    async def _cancel_running(self, reason: str) -> None:
        """Cancel every in-flight node and wait for it; skip what never started."""
        self._closing = reason
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for skipped in self.sorter.skip_all():
            self._mark_skipped(skipped, because=reason)

    def _finish(self, status: str) -> None:
        counts: dict[str, int] = {}
        for record in self.records.values():
            if record.status == "pending":
                record.status = "skipped"
                record.because = record.because or (
                    "the run is waiting for approval" if status == approvals.RUN_WAITING else status
                )
            counts[record.status] = counts.get(record.status, 0) + 1
        self.wall = self.tracer.now()
        self.emit(
            "run_end",
            status=status,
            wall=self.wall,
            counts=counts,
            cost=sum(r.cost_usd for r in self.records.values() if r.status == "done"),
        )
        self.tracer.close()
        self._write_manifest(status)

    def _write_manifest(self, status: str) -> None:
        if self.store is None:
            return
        try:
            self.store.write_manifest(self.run_id, self.manifest(status))
        except StoreUnwritable as exc:
            self.unwritable = self.unwritable or exc
            if status == "running":
                return  # the final one is what matters
            path = self._elsewhere() / "manifest.json"
            path.write_bytes(orjson.dumps(self.manifest(status), option=orjson.OPT_INDENT_2))
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
        if status == "running":
            return head
        return {
            **head,
            "wall": getattr(self, "wall", None),
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
            interrupted=status == "interrupted",
            events=self.tracer.events,
            edges=list(self.graph.nx.edges),
            store_problem=problem,
            unsaved=list(self.unsaved),
        )


class _Waiting(Exception):
    """An approval node with no decision and no approver: it waits; the run goes on."""


class NodeTimeout(DagAgentsError):
    """A node exceeded its `timeout`."""


def describe_spec(spec: NodeSpec) -> dict[str, Any]:
    """What renderers and reports need to know about a node, without running anything."""
    out: dict[str, Any] = {
        "kind": spec.kind,
        "depends_on": list(spec.depends_on),
        "tags": spec.tags,
    }
    if isinstance(spec, AgentTask):
        out.update(
            agent=spec.agent.name,
            model=spec.agent.model,
            max_tokens=spec.agent.max_tokens,
            prompt=spec.prompt[:500],
        )
    elif isinstance(spec, Step):
        out.update(function=getattr(spec.fn, "__qualname__", repr(spec.fn)))
    return out


def previous_durations(store: Store, graph_name: str, lookback: int = 20) -> dict[str, float]:
    """Node durations from the newest finished run of the same graph in `store`."""
    for manifest in store.recent_manifests(graph_name, lookback=lookback, finished=True):
        return {
            name: float(node["duration"])
            for name, node in manifest.get("nodes", {}).items()
            if node.get("status") == "done" and node.get("duration")
        }
    return {}


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


def _grown_name(name: str, specs: dict[str, NodeSpec]) -> bool:
    """A node a run adds as it goes (a map item `jokes[3]`, a loop round `refine[2].joke`):
    `--rerun` may name it before it exists."""
    return "[" in name and name.split("[", 1)[0] in specs


def _error_text(name: str, error: BaseException) -> str:
    if isinstance(error, DagAgentsError):
        return str(error)
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _short_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error, limit=-3))[-2000:]
