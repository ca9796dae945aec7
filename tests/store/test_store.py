"""The checkpoint store on its own: object format and verification, atomic writes, run ids,
fsspec stores, gc, and the codec that turns outputs into canonical bytes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from dagagents.errors import StoreError
from dagagents.store import TMP_PREFIX, CorruptObject, Store, codec, pack, run_state, unpack


class Finding(BaseModel):
    claim: str
    confidence: float


class Report(BaseModel):
    title: str
    findings: list[Finding]


# ----------------------------------------------------------------------------- object format
def test_pack_unpack_round_trip() -> None:
    data, digest = pack("k1", b'{"a":1}', {"node": "n", "cost_usd": 0.5})
    stored = unpack(data, "k1")
    assert stored.value == b'{"a":1}'
    assert stored.digest == digest == codec.digest(b'{"a":1}')
    assert stored.meta == {"node": "n", "cost_usd": 0.5}


@settings(max_examples=200, deadline=None)
@given(
    value=st.binary(max_size=200),
    where=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
)
def test_any_flipped_byte_is_detected(value: bytes, where: int, flip: int) -> None:
    data, _ = pack("k1", value, {"node": "n"})
    i = where % len(data)
    damaged = data[:i] + bytes([data[i] ^ flip]) + data[i + 1 :]
    with pytest.raises(CorruptObject):
        unpack(damaged, "k1")


@settings(max_examples=100, deadline=None)
@given(value=st.binary(max_size=200), cut=st.integers(min_value=1))
def test_any_truncation_is_detected(value: bytes, cut: int) -> None:
    data, _ = pack("k1", value, {"node": "n"})
    with pytest.raises(CorruptObject):
        unpack(data[: len(data) - 1 - (cut % len(data))], "k1")


def test_empty_and_foreign_files_are_corrupt() -> None:
    for data in (b"", b"\n", b"hello world\n{}\n1", orjson.dumps({"a": 1})):
        with pytest.raises(CorruptObject):
            unpack(data, "k1")


# ----------------------------------------------------------------------------- local store
def test_put_get_and_no_temp_left(tmp_path: Path) -> None:
    store = Store(
        tmp_path / "s", pack_max=0
    )  # objects as files (tests/store/test_packs.py: packed)
    key = "ab" + "0" * 62
    digest = store.put(key, b"[1,2]", {"node": "x"})
    got = store.get(key)
    assert got is not None and got.value == b"[1,2]" and got.digest == digest
    assert Path(store.object_path(key)).is_file()
    leftovers = [p for p in (tmp_path / "s").rglob("*") if p.name.startswith(TMP_PREFIX)]
    assert leftovers == []
    assert store.get("cd" + "0" * 62) is None
    assert [k for k, _ in store.iter_objects()] == [key]


def test_failed_write_leaves_no_object_and_no_temp(tmp_path: Path) -> None:
    store = Store(
        tmp_path / "s", pack_max=0
    )  # objects as files (tests/store/test_packs.py: packed)
    key = "ab" + "1" * 62
    os.makedirs(store.object_path(key))  # a directory where the object should go
    with pytest.raises(OSError):
        store.put(key, b"1", {})
    names = os.listdir(os.path.dirname(store.object_path(key)))
    assert not any(n.startswith(TMP_PREFIX) for n in names)


def test_temp_files_are_never_listed_or_read(tmp_path: Path) -> None:
    store = Store(
        tmp_path / "s", pack_max=0
    )  # objects as files (tests/store/test_packs.py: packed)
    key = "ef" + "2" * 62
    store.put(key, b'"ok"', {})
    tmp = Path(store.object_path(key)).parent / f"{TMP_PREFIX}123-dead"
    tmp.write_bytes(b"partial")
    assert [k for k, _ in store.iter_objects()] == [key]
    assert store.verify() == {}


def test_verify_reports_damaged_objects(tmp_path: Path) -> None:
    store = Store(
        tmp_path / "s", pack_max=0
    )  # objects as files (tests/store/test_packs.py: packed)
    good, bad = "aa" + "3" * 62, "bb" + "4" * 62
    store.put(good, b"1", {})
    store.put(bad, b"2", {})
    path = Path(store.object_path(bad))
    path.write_bytes(path.read_bytes()[:-1])
    assert list(store.verify()) == [bad]
    with pytest.raises(CorruptObject):
        store.get(bad)


def test_run_ids_sort_in_start_order() -> None:
    ids = []
    for _ in range(50):
        ids.append(Store.new_run_id())
        time.sleep(0.0002)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_unusable_store_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot be created"):
        Store(blocker / "store")
    with pytest.raises(StoreError, match="nope://"):
        Store("nope://bucket/x")


def test_resolve_run_errors_name_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with pytest.raises(StoreError, match="has no runs yet"):
        store.read_manifest()
    store.write_manifest("20260101-000000.000000-aaaaaa", {"run_id": "x", "status": "done"})
    with pytest.raises(StoreError, match="no runs matching 'zzz'"):
        store.read_manifest("zzz")


def test_killed_and_live_runs_are_told_apart() -> None:
    me = Store.host()
    assert run_state({"status": "running", "pid": os.getpid(), "host": me}) == "running"
    assert run_state({"status": "running", "pid": 2**22 + 12345, "host": me}) == "killed"
    assert run_state({"status": "done", "pid": os.getpid()}) == "done"
    other = {"status": "running", "pid": 1, "host": me + "-elsewhere", "started": time.time()}
    assert run_state(other) == "running"  # can't see its pid: trust it for a while
    assert run_state({**other, "started": time.time() - 3 * 86400}) == "killed"


# ----------------------------------------------------------------------------- fsspec
def test_memory_store_objects_runs_and_traces() -> None:
    store = Store(f"memory://unit-{os.getpid()}-{time.time_ns()}")
    assert not store.is_local
    key = "12" + "5" * 62
    store.put(key, b'"v"', {"node": "n"})
    assert store.get(key).value == b'"v"'  # type: ignore[union-attr]
    run = Store.new_run_id()
    with store.open_trace(run) as fh:
        fh.write(b'{"event":"run_start"}\n')
    store.write_manifest(run, {"run_id": run, "status": "done", "nodes": {}})
    assert store.list_runs() == [run]
    assert store.read_trace() == [{"event": "run_start"}]
    assert store.read_manifest()["status"] == "done"
    assert store.verify() == {}


# ----------------------------------------------------------------------------- gc
def _manifest(store: Store, run: str, keys: dict[str, str], status: str = "done") -> None:
    nodes = {n: {"status": "done", "key": k, "depends_on": []} for n, k in keys.items()}
    store.write_manifest(
        run,
        {"run_id": run, "status": status, "started": time.time(), "pid": 0, "nodes": nodes},
    )


def test_gc_keeps_what_kept_runs_reference(tmp_path: Path) -> None:
    store = Store(
        tmp_path / "s", pack_max=0
    )  # objects as files (tests/store/test_packs.py: packed)
    keys = {n: f"{i:02x}" + "6" * 62 for i, n in enumerate("abcd")}
    for k in keys.values():
        store.put(k, b"x" * 100, {})
    old = time.time() - 7200
    for _, path in store.iter_objects():
        os.utime(path, (old, old))
    _manifest(store, "20260101-000000.000001-aaaaaa", {"a": keys["a"], "b": keys["b"]})
    _manifest(store, "20260101-000000.000002-bbbbbb", {"b": keys["b"], "c": keys["c"]})
    sizes = {k: os.path.getsize(store.object_path(k)) for k in keys.values()}
    first_run_bytes = sum(
        p.stat().st_size for p in (tmp_path / "s/runs/20260101-000000.000001-aaaaaa").iterdir()
    )

    result = store.gc(keep_runs=1)

    assert result.runs_removed == 1
    assert result.objects_removed == 2  # a (only the dropped run needed it) and d (nobody)
    assert result.bytes_freed == sizes[keys["a"]] + sizes[keys["d"]] + first_run_bytes
    assert sorted(k for k, _ in store.iter_objects()) == sorted([keys["b"], keys["c"]])
    assert store.list_runs() == ["20260101-000000.000002-bbbbbb"]
    assert store.gc(keep_runs=1).objects_removed == 0


def test_gc_spares_live_runs_and_what_killed_runs_finished(tmp_path: Path) -> None:
    store = Store(
        tmp_path / "s", pack_max=0
    )  # objects as files (tests/store/test_packs.py: packed)
    old = time.time() - 7200
    live_key, killed_key, junk_key = "aa" + "7" * 62, "bb" + "7" * 62, "cc" + "7" * 62
    for k in (live_key, killed_key, junk_key):
        store.put(k, b"1", {})
        os.utime(store.object_path(k), (old, old))
    me = Store.host()
    live = "20260101-000000.000001-aaaaaa"
    store.write_manifest(
        live,
        {"run_id": live, "status": "running", "started": old - 10, "pid": os.getpid(), "host": me},
    )
    killed = "20260101-000000.000002-bbbbbb"
    store.write_manifest(
        killed,
        {"run_id": killed, "status": "running", "started": old - 5, "pid": 2**22 + 7, "host": me},
    )
    with store.open_trace(killed) as fh:
        fh.write(orjson.dumps({"event": "node_complete", "node": "n", "key": killed_key}) + b"\n")
        fh.write(b'{"event": "node_start", "no')  # cut short by the kill
    trace_time = old + 30  # the killed run stopped writing long ago
    os.utime(store.trace_path(killed), (trace_time, trace_time))
    os.utime(store.manifest_path(killed), (trace_time, trace_time))
    _manifest(store, "20260101-000000.000003-cccccc", {})

    result = store.gc(keep_runs=10)
    # The live run protects everything written since it started.
    assert result.objects_removed == 0

    store.fs.rmdir(store.run_dir(live))  # it finished elsewhere; now only the killed run
    result = store.gc(keep_runs=10)
    assert result.objects_removed == 0  # within the killed run's window (start..last write)
    before = old - 100  # before the killed run started
    for k in (live_key, junk_key, killed_key):
        os.utime(store.object_path(k), (before, before))
    result = store.gc(keep_runs=10)
    # Its trace names what it finished (the torn last line is ignored): that stays.
    assert sorted(k for k, _ in store.iter_objects()) == [killed_key]
    assert result.objects_removed == 2


def test_gc_keeps_runs_whose_batches_were_never_collected(tmp_path: Path) -> None:
    """A killed batch run's records are what its rerun re-attaches to: gc keeps them until a
    run collects the results (or the API's 29 days of keeping them are over)."""
    store = Store(tmp_path / "s")
    runs = [f"20260101-000000.00000{i}-aaaaaa" for i in range(4)]
    states = {runs[0]: "submitted", runs[1]: "collected", runs[2]: "old"}
    for run in runs:
        _manifest(store, run, {}, status="interrupted")
    for run, state in states.items():
        created = time.time() - (30 * 86400 if state == "old" else 60)
        record = {"batch_id": f"msgbatch_{state}", "state": state, "created": created}
        store.fs.write_atomic(store.fs.join(store.batches_dir(run), "b.json"), orjson.dumps(record))
    assert store.open_batches(runs[0]) == ["msgbatch_submitted"]
    assert store.open_batches(runs[1]) == store.open_batches(runs[2]) == []
    # `dagagents gc` says why it kept an old run.
    from typer.testing import CliRunner

    from dagagents.cli import app
    from dagagents.cli.commands import store as _store_commands  # noqa: F401 - registers `gc`

    said = CliRunner().invoke(app, ["gc", "--store", str(tmp_path / "s"), "--keep-runs", "1"])
    assert said.exit_code == 0, said.output
    assert "removed 0 object(s) and 2 run(s)" in said.output
    assert "kept 1 older run(s) whose Message Batches were never collected" in said.output
    assert store.list_runs() == [runs[0], runs[3]]


def test_gc_never_drops_a_live_run(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    live = "20260101-000000.000001-aaaaaa"
    store.write_manifest(
        live,
        {
            "run_id": live,
            "status": "running",
            "started": 0.0,
            "pid": os.getpid(),
            "host": Store.host(),
        },
    )
    _manifest(store, "20260101-000000.000002-bbbbbb", {})
    result = store.gc(keep_runs=0)
    assert store.list_runs() == [live]
    assert result.runs_removed == 1


def test_gc_removes_stale_temp_files_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    d = tmp_path / "s/objects/ab"
    d.mkdir(parents=True)
    stale, fresh = d / f"{TMP_PREFIX}1-aaaa", d / f"{TMP_PREFIX}2-bbbb"
    stale.write_bytes(b"x" * 10)
    fresh.write_bytes(b"y" * 10)
    old = time.time() - 7200
    os.utime(stale, (old, old))
    result = store.gc(keep_runs=1)
    assert not stale.exists() and fresh.exists()
    assert result.bytes_freed == 10


def test_gc_rejects_negative_keep(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="keep-runs"):
        Store(tmp_path / "s").gc(keep_runs=-1)


# ----------------------------------------------------------------------------- codec
def test_pydantic_models_round_trip_to_their_type() -> None:
    report = Report(title="t", findings=[Finding(claim="c", confidence=0.5)])
    back = codec.decode(codec.encode(report))
    assert type(back) is Report and back == report
    items = codec.decode(codec.encode([report, {"k": Finding(claim="d", confidence=1)}]))
    assert type(items[0]) is Report and type(items[1]["k"]) is Finding


def test_local_model_classes_need_the_hint() -> None:
    class Local(BaseModel):
        x: int

    data = codec.encode(Local(x=1))
    with pytest.raises(codec.UnknownModel, match="Local"):
        codec.decode(data)
    assert codec.decode(data, Local) == Local(x=1)


def test_encoding_is_exact_and_deterministic() -> None:
    # Equal outputs encode equally (early cutoff); key order is part of the output (issue 12
    # item 1: a resumed run must hand downstream nodes the dict a fresh run did).
    assert codec.encode({"b": 1, "a": [1, 2]}) == codec.encode({"b": 1, "a": [1, 2]})
    assert codec.encode({"b": 1, "a": [1, 2]}) != codec.encode({"a": [1, 2], "b": 1})


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (object(), "type object,"),
        ({1, 2}, "type set,"),
        ({"a": [object()]}, "type dict containing a object"),
        (b"raw", "type bytes,"),
    ],
)
def test_unserialisable_outputs_name_the_type(value: object, words: str) -> None:
    with pytest.raises(codec.NotSerialisable, match=words):
        codec.encode(value)


def test_reading_commands_do_not_create_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "typo", create=False)
    assert not (tmp_path / "typo").exists()
