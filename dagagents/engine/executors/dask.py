"""DaskExecutor: node bodies on a Dask cluster while the same eager scheduler drives.

Why it is built this way:

- **Steps** run on workers (sync ones in worker threads, async ones on the worker's event
  loop) and the worker that computed an output checkpoints it into the run's store. So the
  store must be reachable from every worker; `prepare` proves it (the driver writes a probe,
  every worker reads it and writes a reply) before anything runs, and `memory://` is refused.
- **Agent nodes**: the invocation (tool loop, retries, rate limits, cost budget, trace) stays on
  the driver and every provider request runs on a worker. The request rate and token budgets
  are thereby enforced in one place for the whole run, exactly as locally. Workers build the
  provider from a recipe: Anthropic from the worker's own `ANTHROPIC_API_KEY` (a key is never
  put in a task), other providers by cloudpickle (refused if the bytes contain the key).
- **Limits**: the run's `concurrency` bounds this driver. `semaphore_name` adds a
  `distributed.Semaphore` that bounds every driver sharing the cluster. The driver takes a
  lease before submitting a node and returns it when the result is back: a node waiting for a
  lease holds no worker thread, and a lease outlives the death of its worker (the node's retry
  keeps it) instead of leaking until the scheduler's lease timeout.
- **Dead workers**: the Dask scheduler reschedules a task whose worker died (up to
  `distributed.scheduler.allowed-failures`); when it gives up (`KilledWorker`) the node is
  resubmitted `killed_worker_retries` times. Dask's `retries=` is not used: it would also rerun
  steps that raised ordinary exceptions, which the local executor never does. A retried step
  first looks for the checkpoint its dead attempt may have written and reuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import re
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dagagents.errors import DagAgentsError, ProviderError, StoreError, UserError
from dagagents.store import codec

try:
    import cloudpickle
except ImportError:  # pragma: no cover - dask (and with it cloudpickle) is an extra
    raise UserError(
        "the Dask executor needs Dask distributed: pip install 'dagagents[dask]'."
    ) from None

from dagagents.engine.executors import dask_tasks
from dagagents.engine.executors.base import Executor
from dagagents.engine.executors.dask_tasks import Recipe, Target
from dagagents.engine.invoke import AgentResult, CallContext, answer_task
from dagagents.model.nodes import AgentTask, Step
from dagagents.providers.base import Provider, Request, Response, capabilities_of
from dagagents.providers.deferred import resolved
from dagagents.store import Store

if TYPE_CHECKING:
    from distributed import Client

_SECRET_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
# Top-level module name -> can a process find it by name on sys.path? (graph files cannot)
_FINDABLE: dict[str, bool] = {}


class WorkerLost(DagAgentsError):
    """A node could not finish because the Dask workers running it kept dying."""


def require_distributed() -> Any:
    """The `distributed` module, or a one-sentence UserError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise UserError(
            "the Dask executor needs Dask distributed: pip install 'dagagents[dask]'."
        ) from None
    return distributed


class DaskExecutor(Executor):
    """Runs Step bodies and provider requests on a Dask cluster.

    `client` is a `distributed.Client` (sync or async), a scheduler address
    (`tcp://HOST:PORT`), or None for a `LocalCluster` started for each run (`n_workers`
    worker processes on 127.0.0.1). `semaphore_name` bounds all drivers sharing the cluster to
    `semaphore_leases` nodes at once (default: the run's concurrency; every driver must use
    the same size). `ship_modules` names installed modules whose code should still be sent
    with each task (by default only modules workers cannot import by name are, such as graph
    files loaded from a path).
    """

    name = "dask"

    def __init__(
        self,
        client: Client | str | None = None,
        *,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        semaphore_name: str | None = None,
        semaphore_leases: int | None = None,
        killed_worker_retries: int = 1,
        probe_timeout: float = 60.0,
        connect_timeout: float = 30.0,
        ship_modules: tuple[str, ...] = (),
        cluster_options: dict[str, Any] | None = None,
    ) -> None:
        if semaphore_leases is not None and semaphore_leases < 1:
            raise UserError(f"semaphore_leases must be at least 1 (got {semaphore_leases}).")
        if killed_worker_retries < 0:
            raise UserError("killed_worker_retries must not be negative.")
        if n_workers is not None and n_workers < 1:
            raise UserError(f"the Dask cluster needs at least 1 worker (got {n_workers}).")
        self._given = client
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.semaphore_name = semaphore_name
        self.semaphore_leases = semaphore_leases
        self.killed_worker_retries = killed_worker_retries
        self.probe_timeout = probe_timeout
        self.connect_timeout = connect_timeout
        self.ship_modules = tuple(ship_modules)
        self.cluster_options = dict(cluster_options or {})
        self._client: Client | None = None
        self._owned: list[Any] = []  # clients/clusters this executor opened, closed in close()
        self._sem: Any = None
        self._prepared = False
        self._writer = secrets.token_hex(8)
        self._fn_blobs: dict[int, tuple[Callable[..., Any], bytes]] = {}
        self._recipes: dict[int, tuple[Provider, Recipe]] = {}
        self._background: set[asyncio.Future[Any]] = set()
        self._instance = secrets.token_hex(6)

    # ------------------------------------------------------------------ lifecycle
    async def prepare(self, store: Store | None, concurrency: int) -> None:
        """Connect, register the semaphore and prove the workers reach `store`.

        Called by the runtime before anything runs or is written; raises a one-sentence
        UserError (StoreError for the store) instead of starting a run that cannot work.
        """
        refuse_process_local(store)
        client = await self._connect()
        try:
            await self._register_semaphore(client, concurrency)
            if store is not None:
                await self._probe(client, store)
        except BaseException:
            await self.close()
            raise
        self._prepared = True

    async def start(self, concurrency: int) -> None:
        self._writer = secrets.token_hex(8)
        # Code the workers cannot import travels by value: graph files loaded from a path,
        # their helper modules, and whatever `ship_modules` names.
        _ship_loaded_modules(self.ship_modules)
        if not self._prepared:  # a caller that skipped `prepare` (no store check then)
            client = await self._connect()
            await self._register_semaphore(client, concurrency)

    async def close(self) -> None:
        if self._background:  # lease releases and task cancels already sent; let them land
            await asyncio.wait(list(self._background), timeout=5)
        sem, self._sem = self._sem, None
        if sem is not None:
            # Stop refreshing our leases; never `sem.close()`: other drivers may share it.
            refresher = getattr(sem, "refresh_callback", None)
            if refresher is not None:
                refresher.stop()
        owned, self._owned = self._owned, []
        for resource in reversed(owned):
            with contextlib.suppress(Exception):
                await resource.close()
        self._client = None
        self._prepared = False
        self._fn_blobs.clear()
        self._recipes.clear()

    async def _connect(self) -> Client:
        if self._client is not None:
            return self._client
        distributed = require_distributed()
        given = self._given
        if isinstance(given, distributed.Client) and given.asynchronous:
            ready: Client = given  # already on this event loop
            self._client = ready
            return ready
        if isinstance(given, distributed.Client):
            # A sync client lives on its own thread's loop; talk to its scheduler from ours.
            address = given.scheduler.address
            security = given.security
        elif isinstance(given, str):
            address, security = given, None
        elif given is None:
            return await self._start_local_cluster(distributed)
        else:
            raise UserError(
                f"DaskExecutor needs a distributed.Client or a scheduler address, "
                f"not {type(given).__name__}."
            )
        try:
            client: Client = await distributed.Client(
                address,
                asynchronous=True,
                security=security,
                set_as_default=False,
                timeout=self.connect_timeout,
                name="dagagents-driver",
                direct_to_workers=True,
            )
        except (OSError, TimeoutError, ValueError) as exc:
            raise UserError(
                f"cannot connect to the Dask scheduler at {address} ({_one_line(exc)})."
            ) from None
        self._owned.append(client)
        self._client = client
        return client

    async def _start_local_cluster(self, distributed: Any) -> Client:
        options: dict[str, Any] = {
            "n_workers": self.n_workers,
            "threads_per_worker": self.threads_per_worker,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
            # dagagents reports each node's failure itself; worker tracebacks are noise here.
            "silence_logs": logging.CRITICAL,
        }
        options.update(self.cluster_options)
        cluster = await distributed.LocalCluster(asynchronous=True, **options)
        self._owned.append(cluster)
        client: Client = await distributed.Client(cluster, asynchronous=True, set_as_default=False)
        self._owned.append(client)
        self._client = client
        return client

    async def _register_semaphore(self, client: Client, concurrency: int) -> None:
        if self.semaphore_name is None or self._sem is not None:
            return
        distributed = require_distributed()
        leases = self.semaphore_leases or concurrency
        sem = distributed.Semaphore(
            max_leases=leases,
            name=self.semaphore_name,
            scheduler_rpc=client.scheduler,
            loop=client.loop,
        )
        try:
            await sem
        except Exception as exc:
            refresher = getattr(sem, "refresh_callback", None)
            if refresher is not None:
                refresher.stop()
            found = re.search(r"expected: (\d+)", str(exc))
            if found is None:
                raise
            raise UserError(
                f"Dask semaphore '{self.semaphore_name}' has {found.group(1)} leases on this "
                f"cluster, not {leases}; every driver sharing it must use the same size "
                "(semaphore_leases)."
            ) from None
        self._sem = sem

    # ------------------------------------------------------------------ the store
    async def _probe(self, client: Client, store: Store) -> None:
        """Every connected worker reads a file the driver wrote and writes one back."""
        token = secrets.token_hex(8)
        probe = store.path(f".dask-probe-{token}")
        try:
            await asyncio.to_thread(store.write_bytes, probe, token.encode())
        except Exception as exc:
            raise StoreError(
                f"store '{store.url}' cannot be written from this machine ({_one_line(exc)})."
            ) from None
        replies: dict[str, str] = {}
        try:
            async with asyncio.timeout(self.probe_timeout):
                while not (workers := await _workers(client)):
                    await asyncio.sleep(0.2)  # an adaptive cluster may still be starting one
                replies = {addr: f"{probe}-{secrets.token_hex(6)}" for addr in workers}
                results = await asyncio.gather(
                    *(
                        client.run(
                            dask_tasks.probe_store,
                            store.url,
                            probe,
                            token,
                            reply,
                            workers=[addr],
                            on_error="return",
                        )
                        for addr, reply in replies.items()
                    )
                )
        except TimeoutError:
            raise StoreError(
                f"the Dask workers did not answer the store check within "
                f"{self.probe_timeout:g} s (is any worker connected to the scheduler?)."
            ) from None
        finally:
            await asyncio.to_thread(_remove_quietly, store, [probe])
        try:
            for (addr, reply), answer in zip(replies.items(), results, strict=True):
                error = next(iter(answer.values()), "no answer") if answer else "no answer"
                if isinstance(error, BaseException):
                    error = _one_line(error)
                if error is None and await asyncio.to_thread(store.read_bytes, reply) != (
                    token.encode()
                ):
                    error = "its writes do not reach the driver"
                if error is not None:
                    raise StoreError(
                        f"store '{store.url}' is not reachable from Dask worker {addr} "
                        f"({error}); use a directory every worker shares or an object-store "
                        "URL such as s3://bucket/prefix."
                    )
        finally:
            await asyncio.to_thread(_remove_quietly, store, list(replies.values()))

    # ------------------------------------------------------------------ node bodies
    async def run_step(self, spec: Step, kwargs: dict[str, Any]) -> Any:
        """A Step on a worker, without a checkpoint (the run has no store)."""
        value, _ = await self._step(spec, kwargs, None)
        return value

    async def run_step_stored(
        self, spec: Step, kwargs: dict[str, Any], store: Store, key: str, meta: dict[str, Any]
    ) -> tuple[Any, str | None]:
        """A Step on a worker, which also checkpoints its output; returns (value, digest)."""
        value, digest = await self._step(spec, kwargs, Target(store.url, key, meta, self._writer))
        assert digest is not None
        return value, digest

    async def _step(
        self, spec: Step, kwargs: dict[str, Any], target: Target | None
    ) -> tuple[Any, str | None]:
        fn_blob = self._function_blob(spec)
        for value in kwargs.values():
            self._ship_module_of(type(value))
        try:
            args_blob = cloudpickle.dumps(kwargs)
        except Exception as exc:
            raise UserError(
                f"the inputs of step '{spec.name}' cannot be sent to Dask workers "
                f"({_one_line(exc)})."
            ) from None
        task = dask_tasks.arun_step if spec.is_async else dask_tasks.run_step
        async with self._lease():
            blob = await self._call(spec.name, task, spec.name, fn_blob, args_blob, target)
        value, digest, encoded = cloudpickle.loads(blob)
        if encoded is not None:  # an earlier attempt's checkpoint, reused after its worker died
            value = codec.decode(encoded, codec.output_hint(spec))
        return value, digest

    async def run_agent(self, spec: AgentTask, prompt: str, ctx: CallContext) -> AgentResult:
        """The invocation runs here (limits, retries, trace); each request on a worker."""
        remote = copy.copy(ctx)
        if not getattr(ctx.provider, "runs_on_driver", False):
            # (Batch mode's provider stays here: a batch is waited for, not computed.)
            remote.provider = _RemoteProvider(ctx.provider, self)
        async with self._lease():
            return await answer_task(spec, prompt, remote)

    async def _call(self, node: str, func: Callable[..., Any], *args: Any) -> Any:
        """Submit one task and await it; resubmit after KilledWorker; cancel if cancelled."""
        client = self._client
        if client is None:
            raise RuntimeError("DaskExecutor used before start()")
        distributed = require_distributed()
        resubmitted = 0
        while True:
            future = client.submit(
                func, *args, key=f"{_key_prefix(node)}-{uuid.uuid4().hex}", pure=False
            )
            try:
                return await future
            except asyncio.CancelledError:
                # distributed leaves Client.cancel unannotated.
                cancelling = client.cancel(  # type: ignore[no-untyped-call]
                    [future], reason="dagagents node cancelled"
                )
                self._in_background(cancelling)
                raise
            except distributed.KilledWorker as exc:
                if resubmitted >= self.killed_worker_retries:
                    deaths = exc.allowed_failures + 1
                    again = f", also after {resubmitted} resubmission(s)" if resubmitted else ""
                    raise WorkerLost(
                        f"node '{node}' failed: Dask gave up after the workers running it died "
                        f"{deaths} time(s) (KilledWorker){again}; it may be crashing them "
                        "(memory, segfault)."
                    ) from None
                resubmitted += 1
            except distributed.client.FutureCancelledError as exc:
                raise WorkerLost(
                    f"node '{node}' failed: Dask cancelled its task ({exc.reason})."
                ) from None
            finally:
                # A dead worker must not make the scheduler recompute it; distributed leaves
                # Future.release unannotated.
                future.release()  # type: ignore[no-untyped-call]

    def _in_background(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(_discard_from(self._background))

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[None]:
        """One lease of the cluster-wide semaphore (if any) around a node's body."""
        sem = self._sem
        if sem is None:
            yield
            return
        acquiring = asyncio.ensure_future(sem.acquire())
        try:
            await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            # The scheduler may still grant it: give it back as soon as it arrives.
            acquiring.add_done_callback(lambda t: self._release_if_granted(sem, t))
            raise
        try:
            yield
        finally:
            releasing = asyncio.ensure_future(sem.release())
            self._background.add(releasing)
            releasing.add_done_callback(_discard_from(self._background))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(releasing)

    def _release_if_granted(self, sem: Any, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is None and task.result():
            self._in_background(sem.release())

    # ------------------------------------------------------------------ shipping code
    def _function_blob(self, spec: Step) -> bytes:
        cached = self._fn_blobs.get(id(spec.fn))
        if cached is not None and cached[0] is spec.fn:
            return cached[1]
        self._ship_module_of(spec.fn)
        try:
            blob: bytes = cloudpickle.dumps(spec.fn)
        except Exception as exc:
            raise UserError(
                f"step '{spec.name}' cannot be sent to Dask workers ({_one_line(exc)})."
            ) from None
        self._fn_blobs[id(spec.fn)] = (spec.fn, blob)
        return blob

    def _ship_module_of(self, obj: Any) -> None:
        """Send `obj`'s module by value when workers could not import it by name."""
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        if module is not None and _needs_shipping(module, self.ship_modules):
            cloudpickle.register_pickle_by_value(module)

    def recipe(self, provider: Provider) -> Recipe:
        """How workers rebuild `provider` (cached per provider object)."""
        cached = self._recipes.get(id(provider))
        if cached is not None and cached[0] is provider:
            return cached[1]
        factory = getattr(provider, "dask_factory", None)
        obj: Any
        if callable(factory):
            kind, obj = "factory", factory()
        elif capabilities_of(provider).remote_settings:
            # Rebuilt on the worker by its class from settings; the key is the worker's own.
            real = resolved(provider)
            kind, obj = "settings", (type(real), remote_settings(real))
        else:
            kind, obj = "pickled", provider
        blob = None
        if obj is not None:
            _ship_loaded_modules(self.ship_modules)  # scripted responders from graph files
            try:
                blob = cloudpickle.dumps(obj)
            except Exception as exc:
                raise UserError(
                    f"provider '{provider.name}' cannot be sent to Dask workers "
                    f"({_one_line(exc)}); give it a dask_factory() method that returns a "
                    "picklable zero-argument function building it on a worker."
                ) from None
            refuse_secrets(blob, provider.name)
        # Per provider object and executor: like locally, one provider's state (a script's
        # `times`) is shared by its calls, never with another run's provider on that worker.
        token = f"{dask_tasks.recipe_token(kind, blob)}-{self._instance}-{id(provider)}"
        recipe = Recipe(kind, blob, token)
        self._recipes[id(provider)] = (provider, recipe)
        return recipe


class _RemoteProvider:
    """Stands in for the run's provider on the driver: each request runs on a worker."""

    def __init__(self, inner: Provider, executor: DaskExecutor) -> None:
        self.inner = inner
        self.name = inner.name
        self._executor = executor
        self._recipe = executor.recipe(inner)

    async def complete(self, request: Request) -> Response:
        outcome = await self._executor._call(
            f"{request.node or 'agent'}-request",
            dask_tasks.provider_request,
            self._recipe,
            request,
        )
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        return None  # the driver's provider belongs to the run, not to this proxy

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)


# -------------------------------------------------------------------------- helpers
def refuse_process_local(store: Store | None) -> None:
    """A `memory://` store exists only in this process: workers would write elsewhere."""
    if store is None or store.is_local:
        return
    if store.in_process_only:
        raise StoreError(
            f"store '{store.url}' lives in this process's memory, which Dask workers cannot "
            "reach; use a directory every worker shares or an object-store URL such as "
            "s3://bucket/prefix."
        )


def remote_settings(provider: Any) -> dict[str, Any]:
    """What a worker needs to rebuild a provider that declares `remote_settings`: its
    `settings()` (never the key or headers, which may carry credentials)."""
    return {name: value for name, value in provider.settings().items() if value is not None}


def refuse_secrets(blob: bytes, what: str) -> None:
    """Never let an API key travel inside a task payload."""
    for var in _SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 8 and value.encode() in blob:
            raise UserError(
                f"provider '{what}' would carry {var} to the Dask workers; set the key in the "
                "workers' environment and give the provider a dask_factory() that reads it there."
            )


def _needs_shipping(module: ModuleType, forced: tuple[str, ...]) -> bool:
    name = module.__name__
    if name in ("__main__", "__mp_main__"):
        return False  # cloudpickle already sends these by value
    top = name.partition(".")[0]
    if top in forced:
        return True
    if getattr(module, "__file__", None) is None:
        return False
    findable = _FINDABLE.get(top)
    if findable is None:
        findable = _FINDABLE[top] = _findable_by_name(top)
    return not findable


def _findable_by_name(top: str) -> bool:
    """Would a fresh interpreter with this sys.path find `top`? (Editable installs have their
    own meta-path finder, so every finder is asked, not just the path-based one.)"""
    if top in sys.builtin_module_names:
        return True
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            if find_spec(top, None) is not None:
                return True
        except Exception:
            continue
    return False


def _ship_loaded_modules(forced: tuple[str, ...]) -> None:
    """Register every loaded module workers could not import (graph files, forced ones)."""
    registered = cloudpickle.list_registry_pickle_by_value()
    for name, module in list(sys.modules.items()):
        if "." in name or name in registered or not isinstance(module, ModuleType):
            continue  # a registered package covers its submodules
        if _needs_shipping(module, forced):
            cloudpickle.register_pickle_by_value(module)


async def _workers(client: Client) -> dict[str, Any]:
    scheduler = client.scheduler
    if scheduler is None:
        raise RuntimeError("the Dask client has no scheduler connection")
    identity = await scheduler.identity(n_workers=-1)
    return dict(identity.get("workers") or {})


def _remove_quietly(store: Store, paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(Exception):
            store.remove_path(path)


def _discard_from(tasks: set[asyncio.Future[Any]]) -> Callable[[asyncio.Future[Any]], None]:
    def discard(task: asyncio.Future[Any]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it

    return discard


def _key_prefix(node: str) -> str:
    """Dask groups tasks by key prefix on its dashboard: name them after the node."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", node)[:80] or "node"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
