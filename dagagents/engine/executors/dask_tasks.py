"""What runs on a Dask worker: a Step body, one provider request, and the store probe.

Imported by reference on the workers (they need dagagents installed), so nothing here may touch
driver state. A Step's output is checkpointed here, where it was computed: if the worker dies
after the write but before the result reaches the driver, the retried task finds the object
(tagged with the run's `writer` token) and returns it instead of running the body again.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections import OrderedDict
from typing import Any, NamedTuple

import cloudpickle

from dagagents.errors import ProviderError, UserError
from dagagents.providers.base import Provider, Request, Response
from dagagents.store import CorruptObject, Store, codec


class Target(NamedTuple):
    """Where a Step's output goes: store URL, checkpoint key, object meta, this run's token."""

    url: str
    key: str
    meta: dict[str, Any]
    writer: str


class Recipe(NamedTuple):
    """How a worker gets the run's provider without the driver's secrets.

    `kind` is "settings" (`blob`: the provider's class and its settings without the key, which
    the worker reads from its own environment), "factory" or "pickled" (`blob`: a cloudpickled
    zero-argument factory or provider object).
    """

    kind: str
    blob: bytes | None
    token: str


# (value, digest, encoded): `encoded` is set instead of `value` when an earlier attempt's
# checkpoint was reused, so the driver decodes it (its classes are importable there).
StepOutcome = tuple[Any, str | None, bytes | None]


# ---------------------------------------------------------------------------------- steps
# Bodies, arguments and results cross the wire as cloudpickle bytes made by us: Dask pickles a
# task by reference whenever plain pickle succeeds, and a worker that cannot import a graph
# file's module then fails to deserialize the task (and stalls). cloudpickle honours the
# by-value registrations the driver makes for such modules.
def _dumps(obj: object) -> bytes:
    blob: bytes = cloudpickle.dumps(obj)
    return blob


def run_step(node: str, fn_blob: bytes, args_blob: bytes, target: Target | None) -> bytes:
    """A sync Step body in a worker thread, checkpointed from here."""
    reused = _reuse(target)
    if reused is not None:
        return _dumps(reused)
    fn, kwargs = _load(node, fn_blob, args_blob)
    start = time.perf_counter()
    value = fn(**kwargs)
    return _dumps(_finish(target, value, time.perf_counter() - start))


async def arun_step(node: str, fn_blob: bytes, args_blob: bytes, target: Target | None) -> bytes:
    """An async Step body on the worker's event loop; store I/O goes to a thread."""
    reused = await asyncio.to_thread(_reuse, target) if target is not None else None
    if reused is not None:
        return _dumps(reused)
    fn, kwargs = _load(node, fn_blob, args_blob)
    start = time.perf_counter()
    value = await fn(**kwargs)
    duration = time.perf_counter() - start
    if target is None:
        return _dumps((value, None, None))
    return _dumps(await asyncio.to_thread(_finish, target, value, duration))


def _load(node: str, fn_blob: bytes, args_blob: bytes) -> tuple[Any, Any]:
    try:
        return cloudpickle.loads(fn_blob), cloudpickle.loads(args_blob)
    except ModuleNotFoundError as exc:
        raise UserError(
            f"node '{node}' needs module '{exc.name}', which this Dask worker cannot import; install "
            f"it on the workers or pass DaskExecutor(ship_modules=('{exc.name}',))."
        ) from None


def _finish(target: Target | None, value: Any, duration: float) -> StepOutcome:
    if target is None:
        return value, None, None
    return value, store_output(target, value, duration), None


def store_output(target: Target, value: Any, duration: float) -> str:
    """Encode and store one output; return its digest. (Tests patch this to inject crashes.)"""
    try:
        encoded = codec.encode(value)
    except codec.NotSerialisable as exc:  # the same words as the runtime's own write
        raise UserError(f"node '{target.meta.get('node')}' returned {exc}.") from None
    meta = {**target.meta, "duration": duration, "writer": target.writer}
    return worker_store(target.url).put(target.key, encoded, meta)


def _reuse(target: Target | None) -> StepOutcome | None:
    """This run's own checkpoint for the node, written by an attempt whose worker died."""
    if target is None:
        return None
    try:
        stored = worker_store(target.url).get(target.key)
    except CorruptObject:
        return None
    if stored is None or stored.meta.get("writer") != target.writer:
        return None
    return None, stored.digest, stored.value


@functools.lru_cache(maxsize=16)
def worker_store(url: str) -> Store:
    return Store(url)


# ------------------------------------------------------------------------------ providers
_PROVIDERS: OrderedDict[str, Provider] = OrderedDict()
_MAX_PROVIDERS = 8


async def provider_request(recipe: Recipe, request: Request) -> Response | ProviderError:
    """One provider call on the worker's event loop.

    A ProviderError comes back as a value, not raised: the driver's retry policy re-raises it,
    and the worker does not log an expected 429 as a failed task.
    """
    provider = _provider(recipe)
    try:
        return await provider.complete(request)
    except ProviderError as exc:
        return exc


def _provider(recipe: Recipe) -> Provider:
    """One provider per recipe per worker process, so HTTP connections are reused."""
    provider = _PROVIDERS.get(recipe.token)
    if provider is not None:
        _PROVIDERS.move_to_end(recipe.token)
        return provider
    if recipe.kind == "settings":  # a provider that declares `remote_settings`
        assert recipe.blob is not None
        cls, options = cloudpickle.loads(recipe.blob)
        check = getattr(cls, "check_worker_environment", None)
        if check is not None:
            check()  # e.g. no API key on this worker: one sentence, not an SDK traceback
        made: Provider = cls(**options)  # the key comes from this worker's environment
        provider = made
    else:
        assert recipe.blob is not None
        obj = cloudpickle.loads(recipe.blob)
        provider = obj() if recipe.kind == "factory" else obj
    _PROVIDERS[recipe.token] = provider
    while len(_PROVIDERS) > _MAX_PROVIDERS:
        _PROVIDERS.popitem(last=False)
    return provider


def recipe_token(kind: str, blob: bytes | None) -> str:
    return hashlib.sha256(kind.encode() + (blob or b"")).hexdigest()[:32]


# ---------------------------------------------------------------------------------- probe
def probe_store(url: str, path: str, expected: str, reply: str) -> str | None:
    """Read the driver's probe file and write a reply next to it; None if both work.

    Plain file or fsspec access only: opening a `Store` would create directories on a worker
    that does not share the driver's disk, which is the very case being detected.
    """
    try:
        if "://" in url and not url.startswith("file://"):
            import fsspec

            fs, _ = fsspec.core.url_to_fs(url)
            seen = bytes(fs.cat_file(path)).decode()
            if seen == expected:
                fs.pipe_file(reply, expected.encode())
        else:
            with open(path, encoding="utf-8") as fh:
                seen = fh.read()
            if seen == expected:
                with open(reply, "w", encoding="utf-8") as fh:
                    fh.write(expected)
    except FileNotFoundError:
        return "it cannot see the store's files"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    if seen != expected:
        return "it sees a different store at that location"
    return None
