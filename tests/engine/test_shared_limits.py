"""Limits shared by several driver processes through a real Redis.

Every multi-process test here starts a real `redis-server` (dagagents.testing.redis_server, on a
free loopback port with a temp dir) and real `python -m dagagents run ...` processes that call
the fake Messages API through the real `anthropic` SDK; the fake server enforces the limits and
keeps the request log the assertions read. Nothing is patched and nothing imitates Redis.

Scaled from the issue's figures to keep the suite quick (the full-size run is
`python -m benchmarks.shared_limits`): 4 drivers x 33 nodes against 120 requests per minute
(bucket capacity 120) instead of 4 x 60 against 60 rpm, and the same shape for input tokens per
minute; the structure (a burst of one bucket, then a steady trickle fought over by 4 processes)
is the same.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import cli_env, dagagents_cmd

from dagagents.engine.limits import RateLimits
from dagagents.engine.shared_limits import RedisLimiter, SharedLimits, snapshot
from dagagents.errors import ProviderError
from dagagents.observe.pricing import default_pricing
from dagagents.observe.trace import Emit
from dagagents.providers.base import Request, Response, Usage
from dagagents.store import Store
from dagagents.testing import FakeAnthropic, fake_anthropic_fixture, text  # noqa: F401
from dagagents.testing.redis_server import RedisServer

redis = pytest.importorskip("redis")

KEY = "sk-ant-test-Shared8xW4vT2mN7pL0"
MODEL = "claude-sonnet-4-6"

GRAPH = """
import os

from dagagents import Agent, Graph

W = Agent("w", model="claude-sonnet-4-6", max_tokens=int(os.environ.get("MAX_TOKENS", "50")))
if os.environ.get("BARRIER"):  # start together: every driver has loaded before any sends
    import pathlib, time
    import anthropic  # noqa: F401 - the SDK too, so no driver's first call waits for it
    pathlib.Path(f"ready-{os.environ['DRIVER']}").touch()
    while len(list(pathlib.Path().glob("ready-*"))) < int(os.environ["BARRIER"]):
        time.sleep(0.01)
graph = Graph("driver-" + os.environ["DRIVER"])
pad = " " + "x" * int(os.environ.get("PAD", "0"))
for i in range(int(os.environ["NODES"])):
    graph.task(f"n{i}", W, f"driver {os.environ['DRIVER']} task {i}" + pad)
"""


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with server:
        yield server


def start_driver(
    tmp_path: Path,
    api: FakeAnthropic,
    driver: int,
    nodes: int,
    *flags: str,
    quiet: bool = True,
    **env: str,
) -> subprocess.Popen[str]:
    (tmp_path / "g.py").write_text(GRAPH)
    return subprocess.Popen(
        dagagents_cmd(
            "run", "g.py", *(["-q"] if quiet else []), "--store", f"store{driver}", *flags
        ),
        cwd=tmp_path,
        env=cli_env(
            ANTHROPIC_API_KEY=KEY,
            ANTHROPIC_BASE_URL=api.url,
            DRIVER=str(driver),
            NODES=str(nodes),
            **env,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs: list[subprocess.Popen[str]], timeout: float = 240) -> list[tuple[int, str]]:
    out = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        out.append((proc.returncode, err))
    return out


def driver_of(request: object) -> str:
    body = getattr(request, "body", None) or {}
    content = body["messages"][0]["content"]
    return content.split()[1]


# ------------------------------------------------------------------ 4 drivers, one key
@pytest.mark.slow
@pytest.mark.parametrize("limit", ["rpm", "itpm"])
def test_four_drivers_sharing_redis_limits_get_no_429(
    tmp_path: Path, redis_server: RedisServer, fake_anthropic: FakeAnthropic, limit: str
) -> None:
    drivers, nodes = 4, 33
    if limit == "rpm":
        fake_anthropic.rate_limit(rpm=120, capacity=120)
        flags, env, per_call, per_minute = ["--rpm", "120"], {}, 1.0, 120.0
    else:
        # ~500 input tokens a call against 60,000 a minute: the same 120 calls/min shape.
        fake_anthropic.rate_limit(itpm=60_000)
        flags, env, per_call, per_minute = ["--itpm", "60000"], {"PAD": "1950"}, 0.0, 60_000.0
    procs = [
        start_driver(
            tmp_path, fake_anthropic, d, nodes, *flags, "--limits", redis_server.url, **env
        )
        for d in range(drivers)
    ]
    results = finish(procs)
    assert [code for code, _ in results] == [0] * drivers, results
    total = drivers * nodes
    assert fake_anthropic.statuses() == {200: total}  # not a single 429
    requests = fake_anthropic.message_requests
    assert {driver_of(r) for r in requests} == {str(d) for d in range(drivers)}
    if limit == "itpm":
        per_call = max(r.usage["input_tokens"] for r in requests if r.usage)
    # The server's bucket starts full: the log can only span less than this if the drivers
    # together sent faster than the limit (which the server would have answered with 429s).
    starts = sorted(r.started for r in requests)
    allowed = (total * per_call - per_minute) / (per_minute / 60.0)
    assert starts[-1] - starts[0] >= allowed - 1.0


@pytest.mark.slow
def test_without_shared_limits_the_same_four_drivers_collect_429s_and_still_finish(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    """The problem the shared limits fix: each driver under its own 120 rpm, 4 together over."""
    fake_anthropic.rate_limit(rpm=120, capacity=120)
    procs = [  # together, as cron jobs on one key are (a slow start must not stagger them)
        start_driver(
            tmp_path, fake_anthropic, d, 33, "--rpm", "120", "--retries", "30", BARRIER="4"
        )
        for d in range(4)
    ]
    results = finish(procs)
    assert [code for code, _ in results] == [0] * 4, results
    statuses = fake_anthropic.statuses()
    assert statuses[429] > 0
    assert statuses[200] == 4 * 33


# ------------------------------------------------------------------ concurrency leases
@pytest.mark.slow
def test_concurrency_is_shared_and_a_killed_drivers_leases_expire(
    tmp_path: Path, redis_server: RedisServer, fake_anthropic: FakeAnthropic
) -> None:
    """3 drivers share --concurrency 8; SIGKILL one while it holds leases; the other two get
    all 8 again once its leases expire (lease_ttl 2 s here; 30 s by default)."""
    fake_anthropic.latency = 0.5
    flags = ["--concurrency", "8", "--limits", redis_server.url, "--lease-ttl", "2"]
    # The victim has more work than it will live to do; the survivors enough to fill all 8
    # leases for a while after the victim's expire.
    procs = [
        start_driver(tmp_path, fake_anthropic, d, n, *flags) for d, n in enumerate([200, 60, 60])
    ]
    victim = procs[0]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until all three have reached the server
        if {driver_of(r) for r in list(fake_anthropic.message_requests)} == {"0", "1", "2"}:
            break
        time.sleep(0.01)
    # Watch the live leases in Redis (expiry after the Redis server's now) from here on.
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    (leases_key,) = client.keys("dagagents:*:leases")
    samples: list[tuple[int, int]] = []  # (the victim's leases, the survivors' leases)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            secs, micros = client.time()
            live = client.zrangebyscore(leases_key, secs * 1000 + micros / 1000, "+inf")
            mine = sum(1 for lease in live if lease.split(":")[1] == str(victim.pid))
            samples.append((mine, len(live) - mine))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        while time.monotonic() < deadline and not (samples and samples[-1][0] >= 1):
            time.sleep(0.005)
        killed = len(samples)
        victim.send_signal(signal.SIGKILL)  # while it holds leases only it could release
        victim.wait(30)
        # While the others run, `dagagents limits` names the lease holders by host and pid.
        state = subprocess.run(
            dagagents_cmd("limits", "--limits", redis_server.url, "--json"),
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=60,
        )
        results = finish(procs[1:])
    finally:
        stop.set()
        watcher.join()
        client.close()
    assert [code for code, _ in results] == [0, 0], results
    assert state.returncode == 0, state.stderr
    (model,) = orjson.loads(state.stdout)["keys"][0]["models"]
    assert model["holders"] and {int(h.rsplit(":", 1)[1]) for h in model["holders"]} <= {
        p.pid for p in procs
    }
    assert fake_anthropic.max_in_flight <= 8  # the server never saw more than the shared 8
    assert all(r.status == 200 for r in fake_anthropic.message_requests if driver_of(r) != "0")
    assert all(mine + alive <= 8 for mine, alive in samples)  # one limit for all three
    # After the kill the dead driver's leases still count against the 8 until they expire
    # (within lease_ttl); then the survivors hold all 8.
    after = samples[killed:]
    assert after[0][0] >= 1
    expired = next(i for i, (mine, _) in enumerate(after) if mine == 0)
    assert max(alive for _, alive in after[expired:]) == 8


# ------------------------------------------------------------------ the budget ledger
@pytest.mark.slow
def test_a_shared_budget_is_never_exceeded_by_three_drivers(
    tmp_path: Path, redis_server: RedisServer, fake_anthropic: FakeAnthropic
) -> None:
    usage = Usage(input_tokens=20, output_tokens=1000)
    fake_anthropic.reply(text("ok", usage=usage.model_dump()))
    per_call = default_pricing().cost_usd(MODEL, usage)
    flags = ["--limits", redis_server.url, "--max-cost", "0.05", "--budget-key", "nightly"]
    procs = [
        start_driver(tmp_path, fake_anthropic, d, 10, *flags, MAX_TOKENS="1000") for d in range(3)
    ]
    results = finish(procs)
    served = fake_anthropic.statuses()[200]
    assert served * per_call <= 0.05  # the fake server's priced usage, all drivers together
    assert served == int(0.05 // 0.01509)  # and the budget was used, not refused wholesale
    assert all(code == 1 for code, _ in results)  # each driver was refused further calls
    errors = [
        rec.get("error") or ""
        for d in range(3)
        for manifest in Store(tmp_path / f"store{d}").recent_manifests(
            "driver-0".replace("0", str(d))
        )
        for rec in manifest["nodes"].values()
    ]
    assert any("shared cost budget 'nightly' of $0.0500 reached" in e for e in errors)
    state = subprocess.run(
        dagagents_cmd("limits", "--limits", redis_server.url, "--budget-key", "nightly", "--json"),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
    )
    (budget,) = orjson.loads(state.stdout)["budgets"]
    assert budget["budget"] == "nightly" and budget["max_usd"] == 0.05
    assert budget["spent_usd"] == pytest.approx(served * per_call)
    assert budget["reserved_usd"] == 0 and budget["refused"] >= 3

    def limits(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            dagagents_cmd("limits", "--limits", redis_server.url, *args),
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=60,
        )

    reset = limits("--reset-budget", "nightly", "--json")  # e.g. a new month
    assert reset.returncode == 0 and orjson.loads(reset.stdout)["budgets"] == []
    again = limits("--reset-budget", "nightly")
    assert again.returncode == 2 and "no shared budget named 'nightly'" in again.stderr


@pytest.mark.slow
def test_a_driver_killed_after_the_api_answered_is_charged_its_reservation(
    tmp_path: Path, redis_server: RedisServer, fake_anthropic: FakeAnthropic
) -> None:
    """SIGKILL a driver whose calls the server has answered but that never settled them: once
    its reservations lapse (lease_ttl, 2 s here) they count as spent at their worst case, so
    the ledger never under-counts what was paid, and the survivors stay under the ceiling."""
    usage = Usage(input_tokens=20, output_tokens=1000)
    fake_anthropic.reply(text("ok", usage=usage.model_dump()))
    fake_anthropic.latency = 0.5
    per_call = default_pricing().cost_usd(MODEL, usage)
    ceiling = 0.15
    flags = ["--limits", redis_server.url, "--max-cost", str(ceiling), "--budget-key", "b"]
    flags += ["--lease-ttl", "2", "--concurrency", "2"]
    victim = start_driver(tmp_path, fake_anthropic, 0, 20, *flags, MAX_TOKENS="1000")
    deadline = time.monotonic() + 120

    def victims() -> list:
        return [r for r in list(fake_anthropic.message_requests) if driver_of(r) == "0"]

    while not (victims() and victims()[-1].finished is None) and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGSTOP)  # it can no longer settle anything...
    while any(r.finished is None for r in victims()) and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)  # ...and the server has answered all it sent
    victim.wait(30)
    killed = time.monotonic()
    answered = sum(1 for r in victims() if r.status == 200)
    assert answered >= 1
    survivors = [
        start_driver(tmp_path, fake_anthropic, d, 20, *flags, MAX_TOKENS="1000") for d in (1, 2)
    ]
    results = finish(survivors)
    assert [code for code, _ in results] == [1, 1], results  # refused further calls
    served = fake_anthropic.statuses()[200]
    assert served * per_call <= ceiling  # the fake server's priced usage, the victim's included
    time.sleep(max(0.0, killed + 2.1 - time.monotonic()))  # the victim's reservations lapsed
    state = asyncio.run(snapshot(SharedLimits(redis_server.url), budget="b"))
    (budget,) = state["budgets"]
    assert budget["spent_usd"] >= served * per_call - 1e-9  # nothing paid went uncounted
    assert budget["spent_usd"] <= ceiling + 1e-9 and budget["reserved_usd"] == 0
    assert budget["lapsed"] >= 1  # the victim's unsettled calls, counted at their worst case
    assert budget["lapsed_usd"] >= budget["lapsed"] * per_call


# ------------------------------------------------------------------ Redis going away
@pytest.mark.slow
def test_redis_killed_mid_run_stops_the_run_and_a_rerun_resumes(
    tmp_path: Path, redis_server: RedisServer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.latency = 0.3
    nodes = 30
    flags = ["--concurrency", "2", "--limits", redis_server.url, "--limits-timeout", "2"]
    proc = start_driver(tmp_path, fake_anthropic, 0, nodes, *flags, quiet=False)
    deadline = time.monotonic() + 120
    while fake_anthropic.statuses()[200] < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    redis_server.kill()
    ((code, err),) = finish([proc])
    assert code == 1, err
    assert f"shared limits store at {redis_server.url} was unreachable for 2 s" in err
    assert "Traceback" not in err
    first = len(fake_anthropic.message_requests)
    assert 5 <= first < nodes
    (manifest,) = Store(tmp_path / "store0").recent_manifests("driver-0", lookback=5)
    done = {n for n, rec in manifest["nodes"].items() if rec["status"] == "done"}
    assert len(done) == first  # every call that was answered became a checkpoint

    redis_server.start()  # the same port: the same --limits URL works again
    ((code, err),) = finish([start_driver(tmp_path, fake_anthropic, 0, nodes, *flags)])
    assert code == 0, err
    again = [r.body["messages"][0]["content"].split()[3] for r in fake_anthropic.message_requests]
    rerun = {f"n{i}" for i in again[first:]}
    assert rerun == {f"n{i}" for i in range(nodes)} - done  # nothing finished was re-requested


@pytest.mark.slow
def test_redis_back_within_the_timeout_the_run_goes_on(
    tmp_path: Path, redis_server: RedisServer, fake_anthropic: FakeAnthropic
) -> None:
    """New calls wait for Redis (retrying the connection) and carry on once it is back; the
    restarted Redis has lost its scripts and state, and is simply used again."""
    fake_anthropic.latency = 0.2
    nodes = 20
    flags = ["--concurrency", "2", "--limits", redis_server.url, "--limits-timeout", "60"]
    proc = start_driver(tmp_path, fake_anthropic, 0, nodes, *flags, quiet=False)
    deadline = time.monotonic() + 120
    while fake_anthropic.statuses()[200] < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    redis_server.kill()
    answered = fake_anthropic.statuses()[200]
    time.sleep(1.5)
    # Nothing new started while Redis was away (at most the two admitted calls finished).
    assert len(fake_anthropic.message_requests) <= answered + 2
    redis_server.start()
    ((code, err),) = finish([proc])
    assert code == 0, err
    assert fake_anthropic.statuses() == {200: nodes}  # each node asked once


def test_an_unreachable_redis_at_start_is_one_sentence_and_exit_2(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    url = "redis://:hunter2secret@127.0.0.1:1/0"
    ((code, err),) = finish([start_driver(tmp_path, fake_anthropic, 0, 3, "--limits", url)])
    assert code == 2
    assert len(err.strip().splitlines()) == 1  # one sentence, naming the URL (password masked)
    assert "cannot reach the shared limits store at redis://:***@127.0.0.1:1/0" in err
    assert "hunter2secret" not in err and "Traceback" not in err
    assert not fake_anthropic.requests


# ------------------------------------------------------------------ in one process, two limiters
def _request(node: str) -> Request:
    return Request(model=MODEL, messages=[{"role": "user", "content": node}], max_tokens=50)


def test_a_429_seen_by_one_process_slows_the_other_and_headers_calibrate_both(
    redis_server: RedisServer,
) -> None:
    """Two RedisLimiters stand for two processes on one key (the same scripts and Redis)."""

    async def scenario() -> tuple[list[str], dict]:
        config = SharedLimits(redis_server.url, key="team")
        a = RedisLimiter(config, RateLimits(rpm=600), key="team", concurrency=4)
        b = RedisLimiter(config, RateLimits(rpm=600), key="team", concurrency=4)
        await a.start()
        await b.start()
        seen: list[str] = []
        try:
            with pytest.raises(ProviderError):
                async with a.slot(_request("a1")):
                    raise ProviderError("429", status=429, retryable=True, retry_after=1.0)

            def emit(event: str, **fields: object) -> None:
                seen.append(f"{event}:{fields.get('limit')}")

            async with b.slot(_request("b1"), emit=emit) as slot:
                headers = {
                    "anthropic-ratelimit-requests-limit": "300",
                    "anthropic-ratelimit-requests-remaining": "250",
                }
                slot.done(
                    Response(
                        content=[{"type": "text", "text": "ok"}],
                        usage=Usage(input_tokens=5, output_tokens=2),
                        headers=headers,
                    )
                )
            state = await snapshot(config, key="team")
        finally:
            await a.aclose()
            await b.aclose()
        return seen, state

    seen, state = asyncio.run(scenario())
    assert seen == ["rate_limited:retry-after"]  # b waited for the pause a was told about
    (model,) = state["keys"][0]["models"]
    # AIMD, shared: a's 429 halved 4 to 2, b's success added 1/2.
    assert model["overloads"] == 1 and model["concurrency_limit"] == 2.5
    assert model["buckets"]["requests"]["server_limit"] == 300  # calibrated for everyone
    assert model["buckets"]["requests"]["level"] < 260  # followed the server's remaining (250)
    assert model["calls"] == 1 and model["leases"] == 0


def test_the_default_limits_key_is_a_hash_never_the_api_key(
    redis_server: RedisServer, tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    ((code, err),) = finish(
        [start_driver(tmp_path, fake_anthropic, 0, 2, "--limits", redis_server.url)]
    )
    assert code == 0, err
    client = redis.Redis.from_url(redis_server.url)
    keys = [k.decode() for k in client.keys("*")]
    client.close()
    assert keys and all(k.startswith("dagagents:{key-") for k in keys)
    assert not any(KEY in k or KEY[-12:] in k for k in keys)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--budget-key", "nightly", "--max-cost", "1"], "--budget-key needs --limits redis://"),
        (
            ["--limits", "http://127.0.0.1:6379"],
            "limits URL 'http://127.0.0.1:6379' is not a Redis URL",
        ),
        (
            ["--limits", "redis://127.0.0.1:1/0", "--budget-key", "nightly"],
            "without max_cost_usd (--max-cost)",
        ),
        (["--limits", "redis://127.0.0.1:1/0", "--limits-key", "a b"], "limits key 'a b' must be"),
    ],
)
def test_bad_shared_limits_flags_are_one_sentence_and_exit_2(
    tmp_path: Path, fake_anthropic: FakeAnthropic, flags: list[str], message: str
) -> None:
    ((code, err),) = finish([start_driver(tmp_path, fake_anthropic, 0, 1, *flags)])
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not fake_anthropic.requests


def test_the_benchmark_measures_the_added_latency(redis_server: RedisServer) -> None:
    """benchmarks.shared_limits at a tiny size (the README's figures come from the full one)."""
    from benchmarks.shared_limits import latency

    figures = latency(redis_server.url, 50)
    assert figures["calls"] == 50
    assert 0 < figures["local_p50_ms"] < figures["redis_p50_ms"]
    assert figures["redis_with_budget_p50_ms"] > 0


def test_shared_rate_limits_with_a_per_run_budget(redis_server: RedisServer) -> None:
    """--limits without --budget-key: the buckets are shared, --max-cost stays this run's own."""
    from dagagents.errors import BudgetExceeded

    async def scenario() -> tuple[int, float, dict]:
        config = SharedLimits(redis_server.url, key="solo")
        limiter = RedisLimiter(config, RateLimits(rpm=600), key="solo", max_cost_usd=0.002)
        await limiter.start()
        done = 0
        try:
            with pytest.raises(BudgetExceeded, match=r"cost budget of \$0.0020 reached"):
                for i in range(10):
                    async with limiter.slot(_request(f"call {i}")) as slot:
                        slot.done(
                            Response(
                                content=[{"type": "text", "text": "ok"}],
                                usage=Usage(input_tokens=10, output_tokens=40),
                            )
                        )
                    done += 1
            state = await snapshot(config, key="solo")
        finally:
            await limiter.aclose()
        return done, limiter.budget.spent_usd, state

    done, spent, state = asyncio.run(scenario())
    # Each call could cost up to ~$0.00079 (50 tokens out): two fit under $0.002, a third not.
    assert done == 2 and spent <= 0.002
    (model,) = state["keys"][0]["models"]
    assert model["calls"] == 2 and model["leases"] == 0 and not state["budgets"]


def test_providers_declare_the_limits_key_as_a_hash_of_their_api_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default --limits-key comes from the provider's public `limits_key`, which is a hash
    of the key it calls with (its own api_key= first, else the environment's), never the key."""
    from dagagents.engine.shared_limits import default_key
    from dagagents.providers import SimulatedProvider, resolve_provider
    from dagagents.providers.anthropic import AnthropicProvider
    from dagagents.providers.base import key_digest, limits_key_of

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    own = AnthropicProvider(api_key="sk-ant-other-key-1234567890")
    assert default_key(own) == own.limits_key == key_digest("sk-ant-other-key-1234567890")
    assert default_key(AnthropicProvider()) == key_digest(KEY)
    deferred = resolve_provider("anthropic")  # known before the SDK has finished loading
    assert limits_key_of(deferred) == key_digest(KEY) == default_key(deferred)
    assert KEY not in str(key_digest(KEY)) and str(key_digest(KEY)).startswith("key-")
    assert limits_key_of(SimulatedProvider()) is None


def test_processes_asking_for_different_concurrency_share_the_smallest(
    redis_server: RedisServer,
) -> None:
    """--concurrency 4 in one process and 2 in another on one key: the smallest, 2, applies to
    both (one warning for the process that asked for more); when the 2 leaves, 4 applies."""

    async def scenario() -> tuple[list[str], list[str], int, int, dict, dict, str]:
        config = SharedLimits(redis_server.url, key="mixed")
        wide = RedisLimiter(config, RateLimits(rpm=6000), key="mixed", concurrency=4)
        narrow = RedisLimiter(config, RateLimits(rpm=6000), key="mixed", concurrency=2)
        await wide.start()
        await narrow.start()
        wide_said: list[str] = []
        narrow_said: list[str] = []

        def said(into: list[str]) -> Emit:
            return lambda event, **fields: into.append(f"{event}: {fields.get('message')}")

        async def admitted(limiter: RedisLimiter, into: list[str], n: int, more: bool) -> int:
            """Admit `n` calls at once (each must get in), then, with `more`, check that one
            more would wait; returns how many were in at once."""
            slots = [limiter.slot(_request(f"c{i}"), emit=said(into)) for i in range(n)]
            for slot in slots:
                await asyncio.wait_for(slot.__aenter__(), 60)
            inside = n
            if more:
                extra = limiter.slot(_request("extra"), emit=said(into))
                try:  # a call past the shared limit waits (it is cancelled while waiting)
                    await asyncio.wait_for(extra.__aenter__(), 0.3)
                    inside += 1
                    await extra.__aexit__(None, None, None)
                except TimeoutError:
                    pass
            for slot in slots:
                await slot.__aexit__(None, None, None)
            return inside

        try:
            both = await admitted(wide, wide_said, 2, more=True)
            await admitted(narrow, narrow_said, 1, more=False)
            state = await snapshot(config, key="mixed")
            shown = await asyncio.to_thread(
                subprocess.run,
                dagagents_cmd("limits", "--limits", redis_server.url),
                capture_output=True,
                text=True,
                env=cli_env(COLUMNS="200"),
                timeout=60,
            )
            await narrow.aclose()
            alone = await admitted(wide, wide_said, 4, more=False)
            after = await snapshot(config, key="mixed")
        finally:
            await wide.aclose()
            await narrow.aclose()
        return wide_said, narrow_said, both, alone, state, after, shown.stdout

    wide_said, narrow_said, both, alone, state, after, shown = asyncio.run(scenario())
    assert both == 2 and alone == 4
    assert wide_said == [
        "warning: this run asked for --concurrency 4 but another process sharing limits key "
        "'mixed' asked for 2: the smallest applies to every process on the key, so at most 2 "
        "calls run at once across them"
    ]
    assert narrow_said == []  # it got what it asked for
    (entry,) = state["keys"]
    assert entry["concurrency"] == 2 and sorted(entry["concurrency_asked"].values()) == [2, 4]
    assert after["keys"][0]["concurrency"] == 4
    assert "the smallest, 2, applies to every process on the key" in " ".join(shown.split())


TOP = 5999.0  # the burst helper's bucket: 6000 less one request of headroom


async def _burst_levels(
    url: str, key: str, end_hold: Callable[[list[Any]], Awaitable[list[Any]]]
) -> tuple[float, float]:
    """Three calls taken from a full shared bucket (6000 rpm: 100 a second): the requests
    bucket's level 20 tokens' worth of time later, and 50 ms after `end_hold(slots)` (which
    returns the slots it closed; the rest are closed afterwards)."""
    config = SharedLimits(url, key=key)
    limiter = RedisLimiter(config, RateLimits(rpm=6000), key=key)
    await limiter.start()

    async def level() -> float:
        (model,) = (await snapshot(config, key=key))["keys"][0]["models"]
        return float(model["buckets"]["requests"]["level"])

    try:
        slots = [limiter.slot(_request(f"c{i}")) for i in range(3)]
        for slot in slots:
            await slot.__aenter__()
        await asyncio.sleep(0.2)  # 20 tokens' worth of time
        held = await level()
        closed = await end_hold(slots)
        await asyncio.sleep(0.05)
        refilling = await level()
        for slot in slots:
            if slot not in closed:
                await slot.__aexit__(None, None, None)
    finally:
        await limiter.aclose()
    return held, refilling


def test_a_shared_bucket_taken_from_full_refills_once_the_server_has_answered(
    redis_server: RedisServer,
) -> None:
    """As in process: after a take from a full bucket nothing accrues until a call admitted
    since is answered (the server's bucket refills from the first arrival, not our admission)."""

    async def answer_first(slots: list[Any]) -> list[Any]:
        slots[0].done(
            Response(content=[{"type": "text", "text": "ok"}], usage=Usage(input_tokens=1))
        )
        await slots[0].__aexit__(None, None, None)
        return slots[:1]

    held, refilling = asyncio.run(_burst_levels(redis_server.url, "hold", answer_first))
    assert held == TOP - 3  # nothing accrued while the server might not have seen the burst
    assert refilling > held  # the first answer started the refill


def test_a_shared_bucket_taken_from_full_refills_once_the_server_has_a_call_admitted_since(
    redis_server: RedisServer,
) -> None:
    """As in process: the server's response headers (the provider's `request_arrived`) end
    the hold, before any answer is settled."""

    async def headers_of_second(slots: list[Any]) -> list[Any]:
        assert all(slot.holding for slot in slots)
        await slots[1].arrived()  # its headers came: the server has a request of the burst
        return []

    held, refilling = asyncio.run(_burst_levels(redis_server.url, "sent", headers_of_second))
    assert held == TOP - 3  # nothing accrued while the server might not have the burst
    assert refilling > held  # the server's first headers started the refill, before any answer
