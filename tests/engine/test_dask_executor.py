"""DaskExecutor on a real LocalCluster (2 worker processes, loopback only).

One cluster for the whole module. Cross-process facts (how many steps run at once, how often
a body ran) are observed from inside the steps through files under a temp dir, with an
exclusive `flock` around each update.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import distributed
import fsspec
import pytest
from conftest import run_dagagents
from fsspec.implementations.memory import MemoryFileSystem
from typer.testing import CliRunner

from dagagents import Agent, Graph, SimulatedProvider, StoreError, UserError
from dagagents.cli import app
from dagagents.cli.commands import run as _run_command  # noqa: F401 - registers `run`
from dagagents.engine.executors.dask import DaskExecutor, refuse_secrets
from dagagents.providers.anthropic import AnthropicProvider
from dagagents.providers.base import Request
from dagagents.store import Store
from dagagents.testing import FakeAnthropic


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture
def dask_client(client: Any) -> Any:
    """The module's client, after a killed worker (earlier test) has been restarted."""
    client.wait_for_workers(2, timeout=180)  # a killed worker restarts slowly under load
    return client


# ------------------------------------------------------------- observations from steps
def _bump(path: str, delta: int) -> None:
    """Add `delta` to the running count in `path` and keep the peak (across processes)."""
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        current, peak = (int(x) for x in (fh.read() or "0 0").split())
        current += delta
        fh.seek(0)
        fh.truncate()
        fh.write(f"{current} {max(peak, current)}")


def _peak(path: Path) -> int:
    return int(path.read_text().split()[1])


def _log(path: str, line: str) -> None:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(line + "\n")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _digest(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:10]


def _counted_sleeper(counter: str, log: str, seconds: float) -> Callable[..., Any]:
    def body(**inputs: Any) -> int:
        _bump(counter, +1)
        try:
            _log(log, f"{os.getpid()}")
            time.sleep(seconds)
        finally:
            _bump(counter, -1)
        return len(inputs)

    return body


def _wide_graph(name: str, n: int, counter: Path, log: Path, seconds: float = 0.2) -> Graph:
    g = Graph(name)
    for i in range(n):
        g.add_step(f"s{i}", _counted_sleeper(str(counter), str(log), seconds), depends_on=[])
    return g


# ------------------------------------------------------------------- same as local
def _random_step(name: str, fail: bool, is_async: bool) -> Callable[..., Any]:
    if is_async:

        async def astep(**inputs: Any) -> dict[str, Any]:
            await asyncio.sleep(0.001)
            if fail:
                raise ValueError(f"{name} failed on purpose")
            return {"node": name, "of": _digest(inputs), "n": len(inputs)}

        return astep

    def step(**inputs: Any) -> dict[str, Any]:
        if fail:
            raise ValueError(f"{name} failed on purpose")
        return {"node": name, "of": _digest(inputs), "n": len(inputs)}

    return step


def _random_graph(seed: int) -> Graph:
    rng = random.Random(seed)
    g = Graph("random", simulator=SimulatedProvider(time_scale=0, seed=seed))
    writer = Agent("writer", model="claude-haiku-4-5", max_tokens=120)
    names: list[str] = []
    for i in range(28):
        name = f"n{i}"
        deps = rng.sample(names, k=min(len(names), rng.randint(0, 3)))
        if deps and rng.random() < 0.25:
            g.task(name, writer, f"Combine what you were given ({name}).", depends_on=deps)
        else:
            fail = rng.random() < 0.08
            g.add_step(name, _random_step(name, fail, rng.random() < 0.3), depends_on=deps)
        names.append(name)
    return g


def test_random_dag_gives_the_same_outputs_and_statuses_as_local(
    dask_client: Any, tmp_path: Path
) -> None:
    for seed in (3, 11):
        local = _random_graph(seed).run(store=tmp_path / f"local{seed}", concurrency=4)
        remote = _random_graph(seed).run(
            store=tmp_path / f"dask{seed}", concurrency=4, executor=DaskExecutor(dask_client)
        )
        assert remote.status == local.status
        assert remote.outputs == local.outputs
        assert remote.errors == local.errors
        assert {"failed", "skipped", "done"} <= set(local.status.values())
        # Outputs landed in the store (steps written by workers): a rerun is all cache hits.
        again = _random_graph(seed).run(
            store=tmp_path / f"dask{seed}", concurrency=4, executor=DaskExecutor(dask_client)
        )
        assert {n for n, s in again.status.items() if s == "cached"} == {
            n for n, s in remote.status.items() if s == "done"
        }
        assert again.outputs == remote.outputs
        for record in remote.records.values():
            if record.status == "done":
                stored = Store(tmp_path / f"dask{seed}").get(record.key or "")
                assert stored is not None and stored.digest == record.digest


# ------------------------------------------------------------------------ concurrency
def test_run_concurrency_is_never_exceeded_across_workers(dask_client: Any, tmp_path: Path) -> None:
    counter, log = tmp_path / "count", tmp_path / "log"
    result = _wide_graph("wide", 12, counter, log).run(
        store=tmp_path / "s", concurrency=3, executor=DaskExecutor(dask_client)
    )
    assert set(result.status.values()) == {"done"}
    assert 2 <= _peak(counter) <= 3  # the cluster has 4 slots; the run allows 3
    assert len(set(_lines(log))) == 2  # both worker processes took part


def test_semaphore_bounds_a_run_below_its_concurrency(dask_client: Any, tmp_path: Path) -> None:
    counter, log = tmp_path / "count", tmp_path / "log"
    executor = DaskExecutor(dask_client, semaphore_name="dagagents-test-one", semaphore_leases=2)
    result = _wide_graph("wide", 8, counter, log).run(
        store=tmp_path / "s", concurrency=8, executor=executor
    )
    assert set(result.status.values()) == {"done"}
    assert _peak(counter) <= 2


def test_two_drivers_sharing_a_named_semaphore_never_exceed_it(
    dask_client: Any, tmp_path: Path
) -> None:
    counter, log = tmp_path / "count", tmp_path / "log"
    results: dict[int, Any] = {}

    def driver(i: int) -> None:
        executor = DaskExecutor(
            dask_client, semaphore_name="dagagents-test-shared", semaphore_leases=2
        )
        graph = _wide_graph(f"driver{i}", 6, counter, log, seconds=0.3)
        results[i] = graph.run(store=tmp_path / f"s{i}", concurrency=4, executor=executor)

    threads = [threading.Thread(target=driver, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == [0, 1]
    assert all(set(r.status.values()) == {"done"} for r in results.values())
    assert _peak(counter) == 2  # each driver alone would allow 4 (8 together)
    assert len(_lines(log)) == 12

    # A driver asking for another size of the same semaphore is refused in one sentence.
    other = DaskExecutor(dask_client, semaphore_name="dagagents-test-shared", semaphore_leases=3)
    with pytest.raises(UserError, match="has 2 leases on this cluster, not 3"):
        _wide_graph("third", 1, counter, log).run(store=tmp_path / "s3", executor=other)


# ---------------------------------------------------------------------- dead workers
def _stage(log: str, value: int) -> Callable[..., Any]:
    def body(**inputs: Any) -> int:
        _log(log, "ran")
        return value + sum(inputs.values())

    return body


def _blocker(log: str, pid_file: str, release: str) -> Callable[..., Any]:
    def body(**inputs: Any) -> int:
        _log(log, str(os.getpid()))
        if not os.path.exists(pid_file):  # written whole, then renamed: never read half-written
            Path(pid_file + ".tmp").write_text(str(os.getpid()))
            os.replace(pid_file + ".tmp", pid_file)
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
        return sum(inputs.values())

    return body


@pytest.mark.slow
def test_worker_killed_mid_run_loses_no_finished_node(dask_client: Any, tmp_path: Path) -> None:
    logs = {name: str(tmp_path / f"{name}.log") for name in ("a0", "a1", "a2", "a3", "b")}
    pid_file, release = str(tmp_path / "victim.pid"), str(tmp_path / "release")
    g = Graph("killed")
    for i in range(4):
        g.add_step(f"a{i}", _stage(logs[f"a{i}"], i), depends_on=[])
    g.add_step(
        "victim",
        _blocker(str(tmp_path / "victim.log"), pid_file, release),
        depends_on=["a0", "a1", "a2", "a3"],
    )
    g.add_step("b", _stage(logs["b"], 100), depends_on=["victim"])
    worker_pids = set(dask_client.run(os.getpid).values())

    def assassin() -> None:
        deadline = time.monotonic() + 60
        while not os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.02)
        pid = int(Path(pid_file).read_text())
        assert pid in worker_pids  # the step runs in a worker process, never in the driver
        os.kill(pid, signal.SIGKILL)
        Path(release).touch()

    killer = threading.Thread(target=assassin)
    killer.start()
    store = tmp_path / "store"
    result = g.run(store=store, concurrency=4, executor=DaskExecutor(dask_client))
    killer.join(timeout=60)

    assert set(result.status.values()) == {"done"}
    assert result.outputs["victim"] == 0 + 1 + 2 + 3
    assert result.outputs["b"] == 106
    victim_runs = _lines(tmp_path / "victim.log")
    assert len(victim_runs) == 2 and victim_runs[0] != victim_runs[1]  # retried elsewhere
    for name in ("a0", "a1", "a2", "a3", "b"):
        assert _lines(Path(logs[name])) == ["ran"], name  # nothing finished ran twice
    for record in result.records.values():
        assert Store(store).get(record.key or "") is not None


def _crash_after_storing(marker: str, node: str) -> None:
    """Installed on the workers: die right after `node`'s checkpoint is written, once."""
    from dagagents.engine.executors import dask_tasks

    original = getattr(dask_tasks.store_output, "original", dask_tasks.store_output)

    def crashing(target: Any, value: Any, duration: float) -> str:
        digest = original(target, value, duration)
        if target.meta.get("node") == node and not os.path.exists(marker):
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return digest

    crashing.original = original  # type: ignore[attr-defined]
    dask_tasks.store_output = crashing


def _uninstall_crash() -> None:
    from dagagents.engine.executors import dask_tasks

    dask_tasks.store_output = getattr(dask_tasks.store_output, "original", dask_tasks.store_output)


@pytest.mark.slow
def test_checkpoint_written_before_the_worker_died_is_reused(
    dask_client: Any, tmp_path: Path
) -> None:
    marker, log = str(tmp_path / "crashed"), str(tmp_path / "victim.log")
    g = Graph("reuse")
    g.add_step("first", _stage(str(tmp_path / "first.log"), 1), depends_on=[])
    g.add_step("victim", _stage(log, 10), depends_on=["first"])
    dask_client.run(_crash_after_storing, marker, "victim")
    try:
        result = g.run(store=tmp_path / "store", executor=DaskExecutor(dask_client))
    finally:
        dask_client.run(_uninstall_crash)
    assert os.path.exists(marker)  # a worker really died after writing the checkpoint
    assert result.status == {"first": "done", "victim": "done"}
    assert result.outputs == {"first": 1, "victim": 11}
    assert _lines(Path(log)) == ["ran"]  # the retry reused the checkpoint, no second run


# ----------------------------------------------------------------------- the store
class _DriverOnlyFS(MemoryFileSystem):
    """A filesystem only this process knows (like s3:// without s3fs on the workers)."""

    protocol = ("driveronly",)
    store: dict[str, Any] = {}
    pseudo_dirs = [""]


def test_a_store_the_workers_cannot_reach_is_refused_before_anything_runs(
    dask_client: Any, tmp_path: Path
) -> None:
    fsspec.register_implementation("driveronly", _DriverOnlyFS, clobber=True)
    counter, log = tmp_path / "count", tmp_path / "log"
    with pytest.raises(StoreError, match=r"^store 'memory://x' lives in this process's memory"):
        _wide_graph("m", 2, counter, log).run(
            store="memory://x", executor=DaskExecutor(dask_client)
        )
    with pytest.raises(StoreError, match=r"not reachable from Dask worker tcp://127\.0\.0\.1"):
        _wide_graph("d", 2, counter, log).run(
            store="driveronly://runs", executor=DaskExecutor(dask_client)
        )
    assert not log.exists()  # no step started
    assert Store("driveronly://runs").list_runs() == []  # no manifest was written
    assert not _DriverOnlyFS().find("/runs")  # and the probe files were cleaned up


# ------------------------------------------------------------ graph files and the CLI
GRAPH_FILE = """
from pydantic import BaseModel
from dagagents import Agent, Graph, SimulatedProvider


class Score(BaseModel):
    value: int


graph = Graph("filegraph", simulator=SimulatedProvider(time_scale=0))


@graph.step
def numbers() -> list[int]:
    return list(range(10))


@graph.step
def score(numbers: list[int]) -> Score:
    return Score(value=sum(numbers))


graph.task("comment", Agent("critic", model="claude-haiku-4-5"), "Comment on {score}",
           depends_on=["score"])


@graph.step
def final(score: Score, comment: str) -> str:
    return f"{score.value}:{len(comment) > 0}"
"""


def test_graph_file_runs_on_workers_that_cannot_import_it(dask_client: Any, tmp_path: Path) -> None:
    path = tmp_path / "filegraph.py"
    path.write_text(GRAPH_FILE)
    store = tmp_path / "store"
    result = Graph.load(path).run(store=store, executor=DaskExecutor(dask_client))
    assert set(result.status.values()) == {"done"}
    assert result.outputs["final"] == "45:True"
    score_class = type(result.outputs["score"])
    assert score_class is sys.modules[score_class.__module__].Score  # the driver's own class
    resumed = Graph.load(path).run(store=store, executor=DaskExecutor(dask_client))
    assert set(resumed.status.values()) == {"cached"}
    assert resumed.outputs["score"].model_dump() == {"value": 45}


def test_cli_runs_on_a_scheduler_address_and_refuses_bad_options(
    dask_client: Any, tmp_path: Path
) -> None:
    path = tmp_path / "filegraph.py"
    path.write_text(GRAPH_FILE)
    address = dask_client.scheduler.address
    store = str(tmp_path / "store")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_dagagents(Path.cwd(), "run", str(path), "--quiet", *args, timeout=120)

    ok = cli("--executor", "dask", "--scheduler-address", address, "--store", store)
    assert ok.returncode == 0, ok.stderr
    assert len(Store(store).list_runs()) == 1
    manifest = Store(store).read_manifest()
    assert manifest["executor"] == "dask"
    assert {n["status"] for n in manifest["nodes"].values()} == {"done"}

    # Bad combinations: exit 2 with one sentence, checked in-process (no cluster is started).
    runner = CliRunner()
    for args, words in [
        (["--executor", "dask"], "--executor dask needs --scheduler-address"),
        (["--dask-workers", "2"], "--dask-workers needs --executor dask"),
        (
            ["--executor", "dask", "--scheduler-address", address, "--dask-workers", "2"],
            "--dask-workers applies to --executor dask-local",
        ),
        (
            ["--executor", "dask", "--scheduler-address", address, "--store", "memory://x"],
            "lives in this process's memory",
        ),
        (["--executor", "spark"], "unknown executor 'spark'"),
    ]:
        bad = runner.invoke(app, ["run", str(path), "--quiet", *args])
        assert bad.exit_code == 2, (args, bad.output)
        message = " ".join(bad.stderr.split())
        assert words in message, message
        assert message.startswith("error: ") and message.count("error:") == 1
        assert bad.exception is None or isinstance(bad.exception, SystemExit)


@pytest.mark.slow
def test_cli_dask_local_starts_and_stops_its_own_cluster(tmp_path: Path) -> None:
    path = tmp_path / "filegraph.py"
    path.write_text(GRAPH_FILE)
    done = run_dagagents(
        Path.cwd(),
        "run",
        str(path),
        "--quiet",
        "--executor",
        "dask-local",
        "--dask-workers",
        "1",
        "--store",
        str(tmp_path / "store"),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert Store(tmp_path / "store").read_manifest()["executor"] == "dask"


# ---------------------------------------------------------------- agents and secrets
def test_provider_errors_are_retried_by_the_driver_policy(dask_client: Any, tmp_path: Path) -> None:
    from dagagents.errors import ProviderError

    sim = SimulatedProvider(time_scale=0)
    sim.script(error=ProviderError("overloaded", status=529, retryable=True), times=1)
    g = Graph("retrying", simulator=sim)
    g.task("ask", Agent("a", model="claude-haiku-4-5"), "Say something.")
    from dagagents.engine.retry import RetryPolicy

    result = g.run(
        store=tmp_path / "s",
        executor=DaskExecutor(dask_client),
        retry=RetryPolicy(initial=0.01, max_wait=0.05),
    )
    assert result.status == {"ask": "done"}
    retries = [e for e in result.events if e["event"] == "retry"]
    assert retries and retries[0]["status"] == 529  # traced on the driver, counted once


def test_api_keys_never_travel_in_task_payloads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789abcdef")

    class Leaky:
        name = "leaky"

        def __init__(self) -> None:
            self.key = os.environ["ANTHROPIC_API_KEY"]

        async def complete(self, request: Request) -> Any: ...

        async def aclose(self) -> None: ...

    with pytest.raises(UserError, match="would carry ANTHROPIC_API_KEY"):
        refuse_secrets(cloudpickle.dumps(Leaky()), "leaky")
    executor = DaskExecutor("tcp://127.0.0.1:1")
    with pytest.raises(UserError, match="would carry ANTHROPIC_API_KEY"):
        executor.recipe(Leaky())  # type: ignore[arg-type]

    provider = AnthropicProvider(base_url="http://127.0.0.1:9", timeout=30.0)
    recipe = executor.recipe(provider)
    assert recipe.kind == "settings" and recipe.blob is not None
    assert b"sk-ant-test" not in recipe.blob  # settings only: workers use their own key
    cls, settings = cloudpickle.loads(recipe.blob)  # rebuilt by its class, never by name
    assert cls is AnthropicProvider and settings["base_url"] == "http://127.0.0.1:9"


def _set_worker_env(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_anthropic_requests_run_on_workers_with_their_own_key(
    dask_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-ant-test-worker-Zq8xW4vT2mN7pL0k"
    api = FakeAnthropic(api_key=key).start()
    try:
        g = Graph("real-sdk")
        for i in range(4):
            g.task(f"ask{i}", Agent("a", model="claude-haiku-4-5", max_tokens=64), f"Q{i}?")
        driver_provider = AnthropicProvider(api_key=key, base_url=api.url)

        # Workers without a key refuse in one sentence; the key is never sent to them.
        refused = g.run(
            store=tmp_path / "s0",
            provider=driver_provider,
            executor=DaskExecutor(dask_client),
            retry=1,
        )
        assert set(refused.status.values()) == {"failed"}
        assert "ANTHROPIC_API_KEY in every Dask worker's environment" in refused.errors["ask0"]
        assert not api.requests

        dask_client.run(_set_worker_env, {"ANTHROPIC_API_KEY": key})
        try:
            result = g.run(
                store=tmp_path / "s1", provider=driver_provider, executor=DaskExecutor(dask_client)
            )
        finally:
            dask_client.run(_set_worker_env, {"ANTHROPIC_API_KEY": None})
        assert set(result.status.values()) == {"done"}, result.errors
        assert len(api.requests) == 4
        assert all(r.usage.output_tokens > 0 for r in result.records.values())
    finally:
        api.stop()


def test_dask_drivers_share_rate_limits_and_concurrency_through_redis(
    dask_client: Any, tmp_path: Path
) -> None:
    """Two drivers on one cluster, requests sent from the workers: with `limits=redis://...`
    they share one concurrency limit of 3 and one 120 rpm bucket (capacity 120 at the server),
    instead of 3 + 3 in flight and 2 x 120 requests a minute."""
    from dagagents.engine.limits import RateLimits
    from dagagents.testing.redis_server import RedisServer

    pytest.importorskip("redis")
    key = "sk-ant-test-dask-shared-Zq8xW4vT"
    try:
        redis_server = RedisServer().start()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    api = FakeAnthropic(api_key=key, latency=0.15).start()
    api.rate_limit(rpm=120, capacity=120)
    results: dict[int, Any] = {}

    def driver(i: int) -> None:
        g = Graph(f"shared{i}")
        for n in range(65):
            g.task(f"ask{n}", Agent("a", model="claude-haiku-4-5", max_tokens=16), f"D{i} Q{n}?")
        results[i] = g.run(
            store=tmp_path / f"s{i}",
            provider=AnthropicProvider(api_key=key, base_url=api.url),
            executor=DaskExecutor(dask_client),
            concurrency=3,
            rate_limits=RateLimits(rpm=120),
            limits=redis_server.url,
        )

    dask_client.run(_set_worker_env, {"ANTHROPIC_API_KEY": key})
    try:
        threads = [threading.Thread(target=driver, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
    finally:
        dask_client.run(_set_worker_env, {"ANTHROPIC_API_KEY": None})
        api.stop()
        redis_server.close()
    assert sorted(results) == [0, 1]
    assert all(r.ok for r in results.values()), [r.errors for r in results.values()]
    assert api.max_in_flight <= 3  # one limit for both drivers (each alone allows 3)
    assert api.statuses() == {200: 130}  # 130 requests > 120 capacity, and not one 429


def test_batch_mode_composes_with_dask_the_batches_are_waited_for_on_the_driver(
    dask_client: Any, tmp_path: Path
) -> None:
    from dagagents.engine.batches import BatchOptions

    api = FakeAnthropic().start()
    try:
        g = Graph("dask-batch")
        for i in range(3):
            g.task(f"ask{i}", Agent("a", model="claude-haiku-4-5", max_tokens=64), f"Q{i}?")
        g.add_step("count", lambda ask0, ask1, ask2: len(ask0 + ask1 + ask2))
        result = g.run(
            store=tmp_path / "s",
            provider=AnthropicProvider(api_key="sk-ant-test-driver-only", base_url=api.url),
            executor=DaskExecutor(dask_client),
            batch=BatchOptions(window=0.1, poll=0.05, poll_max=0.2),
        )
        assert result.ok, result.errors
        assert [len(b.requests) for b in api.batches.submitted] == [3]
        assert not api.message_requests  # no direct calls, and none from the workers
        assert result.records["count"].status == "done"
    finally:
        api.stop()


# ------------------------------------------------------------------ timeouts, benchmark
def _stubborn(stop: str) -> Callable[..., Any]:
    def body() -> str:
        deadline = time.monotonic() + 30
        while not os.path.exists(stop) and time.monotonic() < deadline:
            time.sleep(0.02)
        return "late"

    return body


def test_a_timed_out_step_fails_like_locally_and_its_task_is_cancelled(
    dask_client: Any, tmp_path: Path
) -> None:
    stop = str(tmp_path / "stop")
    g = Graph("timeouts")
    g.add_step("slow", _stubborn(stop), depends_on=[], timeout=0.3)
    g.add_step("after", lambda slow: slow, depends_on=["slow"])
    g.add_step("other", lambda: "fine", depends_on=[])
    try:
        result = g.run(store=tmp_path / "s", executor=DaskExecutor(dask_client))
    finally:
        Path(stop).touch()  # the worker thread cannot be interrupted; let it return
    assert result.status == {"slow": "failed", "after": "skipped", "other": "done"}
    assert result.errors["slow"] == "timed out after 0.3s"
    assert not dask_client.run_on_scheduler(_tasks_named, "slow-")  # nothing left behind


def _tasks_named(prefix: str, dask_scheduler: Any = None) -> list[str]:
    return [str(k) for k in dask_scheduler.tasks if str(k).startswith(prefix)]


def test_benchmark_code_runs_at_tiny_size(dask_client: Any, tmp_path: Path) -> None:
    from benchmarks import dask_steps

    report = dask_steps.measure(
        dask_client, nodes=8, step_ms=1.0, workers=2, concurrency=4, root=str(tmp_path)
    )
    assert report["nodes"] == 8 and report["speedup"] > 0
    assert set(report["noop_ms_per_node"]) == {"local", "dask"}


def test_a_module_the_workers_cannot_import_is_named_or_shipped(
    dask_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Importable here (its directory joins sys.path after the workers started), not there.
    (tmp_path / "dask_only_here.py").write_text("def triple(one):\n    return 3 * one\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "dask_only_here", raising=False)
    import dask_only_here  # type: ignore[import-not-found]

    g = Graph("helpers")
    g.add_step("one", lambda: 1, depends_on=[])
    g.add_step("tripled", dask_only_here.triple, depends_on=["one"])
    refused = g.run(store=None, executor=DaskExecutor(dask_client))
    assert refused.status == {"one": "done", "tripled": "failed"}
    assert refused.errors["tripled"] == (
        "node 'tripled' needs module 'dask_only_here', which this Dask worker cannot import; "
        "install it on the workers or pass DaskExecutor(ship_modules=('dask_only_here',))."
    )
    shipped = g.run(
        store=None, executor=DaskExecutor(dask_client, ship_modules=("dask_only_here",))
    )
    assert shipped.outputs == {"one": 1, "tripled": 3}
    monkeypatch.delitem(sys.modules, "dask_only_here")


def _suicidal(marker: str) -> Callable[..., Any]:
    def body() -> str:
        if not os.path.exists(marker):
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"

    return body


def _set_allowed_failures(value: int, dask_scheduler: Any = None) -> int:
    old = int(dask_scheduler.allowed_failures)
    dask_scheduler.allowed_failures = value
    return old


@pytest.mark.slow
def test_killed_worker_is_resubmitted_then_reported(tmp_path: Path) -> None:
    # A cluster of its own: Dask's nanny sometimes closes instead of restarting a worker killed
    # this way, and the module's cluster must keep its two workers for the tests after this one.
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        # With allowed-failures 0 the scheduler gives up (KilledWorker) at the first death.
        client.run_on_scheduler(_set_allowed_failures, 0)
        g = Graph("poison")
        g.add_step("poison", _suicidal(str(tmp_path / "once")), depends_on=[])
        result = g.run(store=tmp_path / "s1", executor=DaskExecutor(client))
        assert result.outputs == {"poison": "survived"}  # resubmitted once, then it lived

        client.wait_for_workers(1, timeout=60)
        g = Graph("poison2")
        g.add_step("poison", _suicidal(str(tmp_path / "twice")), depends_on=[])
        failed = g.run(
            store=tmp_path / "s2", executor=DaskExecutor(client, killed_worker_retries=0)
        )
        assert failed.status == {"poison": "failed"}
        assert failed.errors["poison"] == (
            "node 'poison' failed: Dask gave up after the workers running it died 1 time(s) "
            "(KilledWorker); it may be crashing them (memory, segfault)."
        )


async def test_an_async_client_on_the_runs_loop_is_used_as_is(
    dask_client: Any, tmp_path: Path
) -> None:
    async with distributed.Client(
        dask_client.scheduler.address, asynchronous=True, set_as_default=False
    ) as client:
        g = Graph("async-client")
        g.add_step("a", lambda: 2, depends_on=[])
        g.add_step("b", lambda a: a * 21, depends_on=["a"])
        executor = DaskExecutor(client)
        result = await g.arun(store=tmp_path / "s", executor=executor)
        assert result.outputs == {"a": 2, "b": 42}
        assert client.status == "running"  # the caller's client is not closed for them


def test_the_runs_cost_budget_holds_when_requests_run_on_workers(
    dask_client: Any, tmp_path: Path
) -> None:
    def graph() -> Graph:
        g = Graph("budget", simulator=SimulatedProvider(time_scale=0))
        for i in range(6):
            g.task(f"q{i}", Agent("a", model="claude-haiku-4-5", max_tokens=1000), f"Q{i}?")
        return g

    options: dict[str, Any] = {"concurrency": 1, "max_cost_usd": 0.0065}
    local = graph().run(store=tmp_path / "l", **options)
    remote = graph().run(store=tmp_path / "d", executor=DaskExecutor(dask_client), **options)
    assert remote.status == local.status
    assert 0 < list(local.status.values()).count("done") < 6  # the budget stopped some calls


def test_only_code_the_workers_cannot_import_is_sent_by_value(tmp_path: Path) -> None:
    from dagagents.engine.executors.dask import _needs_shipping

    path = tmp_path / "shipme.py"
    path.write_text("from dagagents import Graph\ngraph = Graph('shipme')\n")
    Graph.load(path)
    loaded = [m for n, m in sys.modules.items() if n.startswith("dagagents_user_shipme_")]
    assert loaded and _needs_shipping(loaded[0], ())  # loaded from a path: by value
    for installed in (sys.modules["dagagents"], sys.modules["distributed"], sys.modules["json"]):
        assert not _needs_shipping(installed, ())  # workers import these (editable or not)
    assert _needs_shipping(sys.modules["json"], ("json",))  # unless asked to
