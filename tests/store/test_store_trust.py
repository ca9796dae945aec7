"""Issue 12, the store's share of "what a user sees is what happened": outputs round-trip
exactly, an object is bound to its key, damaged files are skipped with one warning, a full or
read-only store says so in one sentence, and read-only commands never make a store."""

from __future__ import annotations

import errno
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_dagagents
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from dagagents import Graph, Store
from dagagents.errors import StoreError, StoreUnwritable
from dagagents.observe.trace import Tracer
from dagagents.store import TMP_PREFIX, CorruptObject, StoreWarning, codec

# ------------------------------------------------------------------ item 1: exact round trip
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: beyond 64 bits too
    | st.floats(allow_nan=False)  # infinities included; NaN != NaN, tested apart
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def _same(a: Any, b: Any) -> bool:
    """Equal, of the same type (1 is not 1.0, True is not 1), dict keys in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and a == 0.0:
        return math.copysign(1.0, a) == math.copysign(1.0, b)  # -0.0 stays -0.0
    return bool(a == b)


@settings(max_examples=300, deadline=None)
@given(value=JSON)
def test_decode_of_encode_is_the_same_value_with_key_order(value: Any) -> None:
    back = codec.decode(codec.encode(value))
    assert back == value
    assert _same(back, value)


def test_non_finite_floats_and_big_integers_round_trip() -> None:
    value = {"z": float("inf"), "a": -float("inf"), "n": 2**80, "m": -(2**70), "f": 1.0}
    back = codec.decode(codec.encode(value))
    assert _same(back, value)
    assert math.isnan(codec.decode(codec.encode(float("nan"))))


class Inner(BaseModel):
    tags: dict[str, int]


class Outer(BaseModel):
    name: str
    inner: list[Inner]
    ratio: float


def test_pydantic_models_keep_their_dict_order_and_number_types() -> None:
    value = {"b": Outer(name="é😀", inner=[Inner(tags={"z": 1, "a": 2})], ratio=1.0), "a": 3}
    back = codec.decode(codec.encode(value))
    assert list(back) == ["b", "a"] and back == value
    assert list(back["b"].inner[0].tags) == ["z", "a"] and type(back["b"].ratio) is float


def test_output_digest_covers_key_order() -> None:
    assert codec.digest(codec.encode({"zebra": 1, "apple": 2})) != codec.digest(
        codec.encode({"apple": 2, "zebra": 1})
    )


def _zebra_graph() -> Graph:
    g = Graph("zebra")

    @g.step
    def animals() -> dict[str, int]:
        return {"zebra": 1, "apple": 2, "mango": {"y": 1.0, "x": 2}}  # type: ignore[dict-item]

    @g.step
    def joined(animals: dict[str, Any]) -> str:
        return ",".join(animals) + "|" + ",".join(animals["mango"]) + repr(animals["mango"]["y"])

    return g


def test_resumed_run_hands_downstream_the_same_dict_order_as_a_fresh_run(tmp_path: Path) -> None:
    store = tmp_path / "s"
    fresh = _zebra_graph().run(store=store)
    assert fresh.outputs["joined"] == "zebra,apple,mango|y,x1.0"
    again = _zebra_graph().run(store=store, rerun={"joined"})
    assert again.status["animals"] == "cached" and again.status["joined"] == "done"
    assert again.outputs["joined"] == fresh.outputs["joined"]
    assert list(again.outputs["animals"]) == ["zebra", "apple", "mango"]


def test_objects_of_the_old_format_are_recomputed_not_served(tmp_path: Path) -> None:
    store = tmp_path / "s"
    first = _zebra_graph().run(store=Store(store, pack_max=0))  # objects as files, as before packs
    key = first.records["animals"].key
    assert key is not None
    path = Path(Store(store).object_path(key))
    # What format 2 wrote for this output: sorted keys, a checksum that ignores the key.
    path.write_bytes(
        b"dagagents-object 2 x y\n{}\n" + b'{"apple":2,"mango":{"x":2,"y":1.0},"zebra":1}'
    )
    again = _zebra_graph().run(store=store)
    assert again.status["animals"] == "done"
    assert again.outputs["joined"] == "zebra,apple,mango|y,x1.0"


# ------------------------------------------------------------- item 3: the key is in the check
def _two_outputs_graph() -> Graph:
    g = Graph("pair")

    @g.step
    def left() -> str:
        return "left output"

    @g.step
    def right() -> str:
        return "right output"

    @g.step
    def shout(left: str) -> str:
        return left.upper()

    return g


def test_an_object_copied_onto_another_key_is_detected_and_recomputed(tmp_path: Path) -> None:
    store = tmp_path / "s"
    first = _two_outputs_graph().run(store=Store(store, pack_max=0))  # objects as files
    st_ = Store(store)
    left_key, right_key = first.records["left"].key, first.records["right"].key
    assert left_key and right_key
    shutil.copyfile(st_.object_path(right_key), st_.object_path(left_key))
    with pytest.raises(CorruptObject, match="not this key's object"):
        st_.get(left_key)
    again = _two_outputs_graph().run(store=store)
    assert again.outputs["left"] == "left output"
    assert again.outputs["shout"] == "LEFT OUTPUT"
    assert again.status["left"] == "done" and again.status["right"] == "cached"
    warned = [e for e in again.events if e["event"] == "warning"]
    assert [e["node"] for e in warned] == ["left"] and "corrupt" in warned[0]["message"]
    assert st_.get(left_key) is not None  # rewritten intact


# ---------------------------------------------------- item 7: a directory is a corrupt object
def test_an_object_path_that_is_a_directory_is_a_corrupt_object(tmp_path: Path) -> None:
    store = tmp_path / "s"
    first = _two_outputs_graph().run(store=Store(store, pack_max=0))  # objects as files
    st_ = Store(store)
    key = first.records["left"].key
    assert key
    path = Path(st_.object_path(key))
    path.unlink()
    (path / "inside").mkdir(parents=True)
    with pytest.raises(CorruptObject, match="directory"):
        st_.get(key)
    assert key in st_.verify()
    again = _two_outputs_graph().run(store=Store(store, pack_max=0))
    assert again.status["left"] == "done" and again.outputs["shout"] == "LEFT OUTPUT"
    assert path.is_file() and st_.get(key) is not None
    # gc of a store where a directory squats on an object path does not crash either
    (path.parent / ("f" * 62)).mkdir()
    Store(store).gc(keep_runs=0)


# ------------------------------------------------------- item 6: a damaged manifest is skipped
SMALL_GRAPH = """
from dagagents import Agent, Graph, SimulatedProvider

graph = Graph("small", simulator=SimulatedProvider(time_scale=0))
graph.task("facts", Agent("w", model="claude-haiku-4-5", max_tokens=40), "Three owl facts.")


@graph.step
def count(facts: str) -> int:
    return len(facts)
"""

DAMAGED = {
    "list": b"[1]",
    "null": b"null",
    "str": b'"str"',
    "number": b"42",
    "empty": b"{}",
    "nodes-list": b'{"run_id": "x", "graph": "small", "status": "done", "nodes": []}',
    "slow": (
        b'{"run_id": "x", "graph": "small", "status": "done", "started": 1.0, '
        b'"nodes": {"facts": {"status": "done", "duration": "slow"}}}'
    ),
    "not-json": b"{",
}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_dagagents(cwd, *args, timeout=120)


def test_damaged_manifests_are_warned_about_once_and_every_command_keeps_working(
    tmp_path: Path,
) -> None:
    (tmp_path / "g.py").write_text(SMALL_GRAPH)
    assert _cli("run", "g.py", "-q", cwd=tmp_path).returncode == 0
    runs = tmp_path / ".dagagents" / "runs"
    paths = []
    for i, (name, data) in enumerate(DAMAGED.items()):
        folder = runs / f"20991231-000000.{i:06d}-{name}"  # newer than the good run
        folder.mkdir()
        (folder / "manifest.json").write_bytes(data)
        paths.append(folder / "manifest.json")
    # A manifest that is a directory is damaged too.
    (runs / "20991231-000001.000000-dir" / "manifest.json").mkdir(parents=True)
    commands = [
        ("run", "g.py"),
        ("status",),
        ("report",),
        ("render", "g.py", "--run", "latest"),
        ("estimate", "g.py"),
        ("trace", "summary"),
        ("gc",),
    ]
    for command in commands:
        out = _cli(*command, cwd=tmp_path)
        assert out.returncode == 0, (command, out.stderr)
        assert "Traceback" not in out.stderr, (command, out.stderr)
        text = out.stderr.replace("\n", "")
        for path in paths:
            if command in (("render", "g.py", "--run", "latest"), ("estimate", "g.py")):
                continue  # these read only the newest run of the graph, which is good
            assert text.count(f"runs/{path.parent.name}/manifest.json") <= 1, (command, text)
    # the newest readable run is the one `status` shows; a damaged one asked for by name is
    # one sentence naming the file
    named = _cli("status", "20991231-000000.000006-slow", cwd=tmp_path)
    assert named.returncode == 2 and "Traceback" not in named.stderr
    assert "manifest.json" in named.stderr and "duration" in named.stderr


def test_damaged_manifests_are_each_reported_with_their_problem(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    for i, (name, data) in enumerate(DAMAGED.items()):
        folder = tmp_path / "s" / "runs" / f"20991231-000000.{i:06d}-{name}"
        folder.mkdir()
        (folder / "manifest.json").write_bytes(data)
    with pytest.warns(StoreWarning) as caught:
        assert list(store.recent_manifests("small")) == []
        with pytest.raises(StoreError, match="has no runs yet"):
            store.read_manifest()
        store.gc()
    messages = [str(w.message) for w in caught]
    assert len(messages) == len(set(messages)) == len(DAMAGED)  # once each
    assert any("'nodes' is a list" in m for m in messages)
    assert any("'nodes.facts.duration' is a str" in m for m in messages)
    assert any("JSON null" in m for m in messages)
    assert any("'run_id' is missing" in m for m in messages)


# ---------------------------------------------------------- item 9: torn last line, both ways
def test_trace_summary_accepts_a_torn_last_line_by_run_folder_and_by_run_id(
    tmp_path: Path,
) -> None:
    (tmp_path / "g.py").write_text(SMALL_GRAPH)
    assert _cli("run", "g.py", "-q", cwd=tmp_path).returncode == 0
    (folder,) = (tmp_path / ".dagagents" / "runs").iterdir()
    trace = folder / "trace.jsonl"
    trace.write_bytes(trace.read_bytes() + b'{"v": 1, "event": "node_sta')  # killed mid-write
    by_folder = _cli("trace", "summary", str(folder), cwd=tmp_path)
    by_id = _cli("trace", "summary", folder.name, cwd=tmp_path)
    by_file = _cli("trace", "summary", str(trace), cwd=tmp_path)
    for out in (by_folder, by_id, by_file):
        assert out.returncode == 0, out.stderr
        assert "small" in out.stdout
    # a damaged line that is not the last one is still an error
    trace.write_bytes(b'{"event": "run_start"}\nnot json\n' + trace.read_bytes())
    assert _cli("trace", "summary", str(folder), cwd=tmp_path).returncode == 2


# ------------------------------------------------ item 20: reading never creates a store
def test_read_only_commands_never_create_a_store(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(SMALL_GRAPH)
    for command in [
        ("render", "g.py"),
        ("estimate", "g.py"),
        ("report",),
        ("trace", "summary"),
        ("status",),
        ("render", "latest"),
        ("render", "g.py", "--run", "latest"),
    ]:
        out = _cli(*command, cwd=tmp_path)
        assert not (tmp_path / ".dagagents").exists(), command
        assert "Traceback" not in out.stderr, (command, out.stderr)
        if command[:2] not in (("render", "g.py"), ("estimate", "g.py")) or "--run" in command:
            assert out.returncode == 2, (command, out.stderr)
            assert "no store at '.dagagents'" in out.stderr.replace("\n", ""), (command, out.stderr)
        else:
            assert out.returncode == 0, (command, out.stderr)
    (tmp_path / "empty").mkdir()
    for command in [("status",), ("report",), ("trace", "summary")]:
        out = _cli(*command, "--store", "empty", cwd=tmp_path)
        assert out.returncode == 2 and "empty' has no runs yet." in out.stderr.replace("\n", "")
    assert list((tmp_path / "empty").iterdir()) == []


def test_trace_summary_of_a_missing_file_says_it_does_not_exist(tmp_path: Path) -> None:
    out = _cli("trace", "summary", "nosuch.jsonl", cwd=tmp_path)
    assert out.returncode == 2
    assert "trace file 'nosuch.jsonl' does not exist." in out.stderr
    assert not (tmp_path / ".dagagents").exists()


# ------------------------------------------------- item 8: a full or read-only store, in words
def test_a_full_store_says_so_and_keeps_every_object_it_stored(small_disk: Path) -> None:
    store = Store(small_disk / "s")
    stored = []
    with pytest.raises(StoreUnwritable, match=r"is full$") as caught:
        for i in range(100):
            key = f"{i:02x}" + "a" * 62
            store.put(key, b"x" * 8000, {"node": f"n{i}"})
            stored.append(key)
    assert caught.value.reason == "full" and 5 < len(stored) < 100
    assert store.verify() == {}  # nothing torn
    assert sorted(k for k, _ in store.iter_objects()) == sorted(stored)
    assert not [p for p in (small_disk / "s").rglob(f"{TMP_PREFIX}*")]


def test_a_read_only_store_reads_but_refuses_writes_and_gc_in_one_sentence(
    small_disk: Path,
    remount: Callable[[Path, str], None],
) -> None:
    store = Store(small_disk / "s")
    key = "ab" + "c" * 62
    store.put(key, b'"kept"', {"node": "n"})
    remount(small_disk, "ro")
    assert Store(small_disk / "s").get(key).value == b'"kept"'  # type: ignore[union-attr]
    with pytest.raises(StoreUnwritable, match="is read-only"):
        store.put("cd" + "c" * 62, b"1", {})
    with pytest.raises(StoreUnwritable, match="is read-only"):
        store.gc(keep_runs=0)
    out = run_dagagents(Path.cwd(), "gc", "--store", str(small_disk / "s"), "--keep-runs", "0")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "is read-only: gc removed nothing." in out.stderr.replace("\n", "")
    assert store.get(key) is not None


def test_a_trace_sink_on_a_full_disk_is_dropped_not_raised(small_disk: Path) -> None:
    sink = open(small_disk / "trace.jsonl", "wb")  # noqa: SIM115 - the tracer closes it
    tracer = Tracer("r", sinks=[sink], flush_every=0.0)
    for i in range(2000):
        tracer.emit("node_start", node=f"n{i}", padding="p" * 200)
    tracer.close()
    assert len(tracer.events) == 2000
    assert [exc.errno for _, exc in tracer.failed_sinks] == [errno.ENOSPC]


# -------------------------------------------- item 25: leases for work another process is doing
def test_a_lease_blocks_others_until_released(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    key = "ab" + "d" * 62
    lease = store.try_lease(key)
    assert lease is not None and Path(store.lease_path(key)).is_file()
    assert store.try_lease(key) is None and store.leased(key)
    assert [k for k, _ in store.iter_objects()] == []  # a lease is no object
    lease.release()
    assert not store.leased(key)
    again = store.try_lease(key)
    assert again is not None
    again.release()


def test_a_killed_holders_lease_does_not_block(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    key = "ab" + "e" * 62
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from dagagents import Store; "
            f"assert Store({str(tmp_path / 's')!r}).try_lease({key!r}); "
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert store.leased(key) and store.try_lease(key) is None
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not store.leased(key)
    assert store.try_lease(key) is not None


def test_a_lease_expires_without_heartbeat_and_a_heartbeat_keeps_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    key = "ab" + "f" * 62
    path = Path(store.lease_path(key))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Another machine's holder: its pid cannot be checked, only its heartbeat.
    path.write_bytes(b'{"pid": 1, "host": "elsewhere", "token": "t", "ttl": 30}')
    assert store.leased(key) and store.try_lease(key) is None
    old = time.time() - 31
    os.utime(path, (old, old))
    assert not store.leased(key)
    lease = store.try_lease(key, ttl=30)
    assert lease is not None
    os.utime(path, (old, old))
    lease.heartbeat()
    assert store.leased(key)
    # gc leaves a live lease alone and removes a stale one
    store.gc()
    assert path.exists()
    os.utime(path, (old, old))
    store.gc()
    assert not path.exists()


def test_a_read_only_store_grants_a_lease_that_holds_nothing(
    small_disk: Path, remount: Callable[[Path, str], None]
) -> None:
    store = Store(small_disk / "s")
    remount(small_disk, "ro")
    lease = store.try_lease("ab" + "9" * 62)  # objects/ab does not exist and cannot be made
    assert lease is not None and lease.path == ""
    lease.release()
