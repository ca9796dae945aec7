"""Packs: small objects of a local store appended to one file per writing process.

Each test checks a guarantee an object file gave and a packed object must keep: atomic (a torn
record is never read), verified (a damaged record reads as corrupt), one object per key for
every reader (several processes, duplicates, tombstones), and gc."""

from __future__ import annotations

import contextlib
import gc as pygc
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stored import damage, packed, stored_size

from dagagents import Graph
from dagagents.store import CorruptObject, Store
from dagagents.store.packs import PACK_MAX, PACKS_DIR

KEYS = [f"{i:02x}" + "5" * 62 for i in range(6)]


def _in_child(store: Path, code: str) -> str:
    """Run `code` (with `st` = the store) in a fresh process: another writer or reader."""
    script = f"from dagagents.store import Store\nst = Store({str(store)!r})\n{code}"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _packs(store: Path) -> list[Path]:
    return sorted(p for p in (store / PACKS_DIR).iterdir() if not p.name.startswith("."))


def _fresh(path: Path) -> Store:
    """A Store whose process has not read the packs yet (the registry keeps one per process
    while some Store uses it)."""
    pygc.collect()
    return Store(path)


def test_small_objects_are_packed_big_ones_keep_a_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    for k in KEYS[:3]:
        store.put(k, b'"small"', {"node": "n"})
    big = KEYS[3]
    store.put(big, b'"' + b"x" * PACK_MAX + b'"', {})
    assert [packed(store, k) for k in KEYS[:4]] == [True, True, True, False]
    assert Path(store.object_path(big)).is_file()
    assert not any(Path(store.object_path(k)).exists() for k in KEYS[:3])
    (pack,) = _packs(tmp_path / "s")  # one pack for every small object of this process
    assert pack.name.startswith(f"{os.getpid()}-")
    assert sorted(k for k, _ in store.iter_objects()) == sorted(KEYS[:4])
    assert store.get(KEYS[1]).value == b'"small"'  # type: ignore[union-attr]
    assert store.verify() == {}
    # Another process reads them all, from the pack and from the file.
    out = _in_child(
        tmp_path / "s",
        f"print(sorted(k for k, _ in st.iter_objects()) == {sorted(KEYS[:4])!r}, st.get({KEYS[2]!r}).value)",
    )
    assert out.split() == ["True", """b'"small"'"""]


def test_a_torn_last_record_is_never_read(tmp_path: Path) -> None:
    """A writer killed mid-append leaves part of a record at its pack's end: ignored, and
    every record before it reads."""
    path = tmp_path / "s"
    _in_child(
        path,
        f"for k in {KEYS[:3]!r}: st.put(k, b'[1]' if k != {KEYS[2]!r} else b'[2]' * 100, {{}})",
    )
    (pack,) = _packs(path)
    data = pack.read_bytes()
    pack.write_bytes(data[: len(data) - 50])  # the last record cut short
    store = _fresh(path)
    assert sorted(k for k, _ in store.iter_objects()) == sorted(KEYS[:2])
    assert store.get(KEYS[2]) is None
    assert store.verify() == {}
    assert store.get(KEYS[0]).value == b"[1]"  # type: ignore[union-attr]


def test_a_pack_is_indexed_in_chunks_and_bodies_past_a_chunk_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Indexing never reads a pack whole: with 100-byte chunks, records much bigger and
    much smaller than a chunk all index, and a torn last one still does not."""
    path = tmp_path / "s"
    sizes = [1, 500, 2, 90, 3000, 4]
    _in_child(path, f"for k, n in zip({KEYS!r}, {sizes!r}): st.put(k, b'7' * n, {{}})")
    (pack,) = _packs(path)
    data = pack.read_bytes()
    pack.write_bytes(data[:-2])  # the last record torn
    monkeypatch.setattr("dagagents.store.packs._CHUNK", 100)
    store = _fresh(path)
    assert sorted(k for k, _ in store.iter_objects()) == sorted(KEYS[:5])
    assert [len(store.get(k).value) for k in KEYS[:5]] == sizes[:5]  # type: ignore[union-attr]
    assert store.verify() == {}


def test_a_damaged_record_is_corrupt_and_its_tombstone_holds_for_every_process(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    store = Store(path)
    for k in KEYS[:3]:
        store.put(k, b'"v"', {})
    damage(store, KEYS[1], "flip")
    with pytest.raises(CorruptObject, match="checksum"):
        store.get(KEYS[1])
    assert list(store.verify()) == [KEYS[1]]
    store.discard(KEYS[1])  # what a run does before recomputing it
    assert store.get(KEYS[1]) is None
    out = _in_child(
        path, f"print(st.get({KEYS[1]!r}), sorted(st.verify()), len(st.iter_objects()))"
    )
    assert out.split() == ["None", "[]", "2"]
    store.put(KEYS[1], b'"again"', {})
    out = _in_child(path, f"print(st.get({KEYS[1]!r}).value)")
    assert out.strip() == """b'"again"'"""


def test_a_damaged_record_header_stops_that_pack_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _in_child(path, f"for k in {KEYS[:3]!r}: st.put(k, b'1', {{}})")
    (pack,) = _packs(path)
    data = pack.read_bytes()
    at = data.index(b"+" + KEYS[1].encode())
    pack.write_bytes(data[:at] + b"?" + data[at + 1 :])
    with pytest.warns(UserWarning, match=r"pack '.*' is damaged at byte \d+"):
        store = _fresh(path)
        assert store.get(KEYS[0]) is not None
    assert store.get(KEYS[1]) is None and store.get(KEYS[2]) is None  # recomputed, not trusted


def test_a_reader_finds_what_another_process_packed_after_its_first_look(tmp_path: Path) -> None:
    path = tmp_path / "s"
    store = Store(path)
    store.put(KEYS[0], b"0", {})
    assert store.get(KEYS[1]) is None  # indexed: nothing there yet
    _in_child(path, f"st.put({KEYS[1]!r}, b'1', {{}})")
    assert store.get(KEYS[1]).value == b"1"  # type: ignore[union-attr]
    _in_child(path, f"st.put({KEYS[2]!r}, b'2', {{}})")  # a second child: a second pack
    assert store.get(KEYS[2]).value == b"2"  # type: ignore[union-attr]
    assert len(_packs(path)) == 3


def test_two_processes_appending_at_once_leave_every_object_whole(tmp_path: Path) -> None:
    """Each process appends to its own pack only: records never interleave, and keys both
    wrote are one object each for readers."""
    path = tmp_path / "s"
    script = (
        "import sys, hashlib\nfrom dagagents.store import Store\n"
        f"st = Store({str(path)!r})\nstart = int(sys.argv[1])\n"
        "for i in range(start, start + 300):\n"
        "    st.put(hashlib.sha256(b'%d' % i).hexdigest(), b'%d' % i * 50, {'i': i})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(start)], env=env) for start in (0, 150)
    ]
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    store = _fresh(path)
    assert len(_packs(path)) == 2
    assert len(store.iter_objects()) == 450
    assert store.verify() == {}
    got = store.get(hashlib.sha256(b"200").hexdigest())
    assert got is not None and got.value == b"200" * 50 and got.meta == {"i": 200}


def test_one_key_in_several_packs_and_a_file_is_one_object(tmp_path: Path) -> None:
    path = tmp_path / "s"
    store = Store(path)
    store.put(KEYS[0], b'"mine"', {})
    _in_child(path, f"st.put({KEYS[0]!r}, b'\"theirs\"', {{}})")
    Store(path, pack_max=0).put(KEYS[0], b'"file"', {})
    assert [k for k, _ in store.iter_objects()] == [KEYS[0]]
    assert store.verify() == {}
    # Each is a verified object of that key; a reader serves one of them, the same each time.
    served = store.get(KEYS[0]).value  # type: ignore[union-attr]
    assert served in (b'"mine"', b'"theirs"', b'"file"')
    assert store.get(KEYS[0]).value == served  # type: ignore[union-attr]


def test_an_old_store_of_object_files_reads_and_new_objects_are_packed(tmp_path: Path) -> None:
    g = Graph("two")

    @g.step
    def a() -> str:
        return "A"

    @g.step
    def b(a: str) -> str:
        return a + "B"

    path = tmp_path / "s"
    first = g.run(store=Store(path, pack_max=0))
    assert not (path / PACKS_DIR).exists()
    again = g.run(store=_fresh(path), rerun={"b"})
    assert again.status == {"a": "cached", "b": "done"}
    assert again.outputs["b"] == first.outputs["b"] == "AB"
    assert packed(Store(path), str(again.records["b"].key))


def _old_records(path: Path, keys: list[str], age: float) -> None:
    """`keys` packed by another process, now gone, `age` seconds ago."""
    _in_child(
        path,
        f"import time\nnow = time.time() - {age}\ntime.time = lambda: now\n"
        f"for k in {keys!r}: st.put(k, b'x' * 100, {{}})",
    )


def _manifest(store: Store, run: str, keys: list[str]) -> None:
    nodes = {k[:6]: {"status": "done", "key": k, "depends_on": []} for k in keys}
    store.write_manifest(
        run, {"run_id": run, "status": "done", "started": time.time(), "pid": 0, "nodes": nodes}
    )


def test_gc_rewrites_a_finished_writers_pack_without_what_nobody_needs(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _old_records(path, KEYS[:4], 7200)
    (old_pack,) = _packs(path)
    store = _fresh(path)
    _manifest(store, "20260101-000000.000001-aaaaaa", [KEYS[0], KEYS[1]])
    _manifest(store, "20260101-000000.000002-bbbbbb", [KEYS[1], KEYS[2]])
    sizes = {k: stored_size(store, k) for k in KEYS[:4]}
    first_run = store.run_dir("20260101-000000.000001-aaaaaa")
    run_bytes = sum(p.stat().st_size for p in Path(first_run).iterdir())

    result = store.gc(keep_runs=1)

    assert (result.objects_removed, result.objects_kept, result.runs_removed) == (2, 2, 1)
    assert result.bytes_freed == sizes[KEYS[0]] + sizes[KEYS[3]] + run_bytes
    (new_pack,) = _packs(path)
    assert new_pack != old_pack and not old_pack.exists()
    assert sorted(k for k, _ in store.iter_objects()) == sorted(KEYS[1:3])
    assert store.verify() == {}
    out = _in_child(
        path, f"print(sorted(k for k, _ in st.iter_objects()) == {sorted(KEYS[1:3])!r})"
    )
    assert out.strip() == "True"
    assert store.gc(keep_runs=1).objects_removed == 0


def test_gc_tombstones_records_of_a_live_writer_and_rewrites_once_it_is_gone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    store = Store(path)
    store.put(KEYS[0], b"1", {})
    _manifest(store, "20260101-000000.000001-aaaaaa", [KEYS[0]])
    script = (
        "import sys, time\nfrom dagagents.store import Store\n"
        f"st = Store({str(path)!r})\nnow = time.time() - 7200\ntime.time = lambda: now\n"
        f"st.put({KEYS[1]!r}, b'2' * 100, {{}})\nprint('ready', flush=True)\nsys.stdin.read()"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
        result = store.gc(keep_runs=1)  # the writer lives: its pack may still grow
        assert result.objects_removed == 1 and result.bytes_freed == 0
        assert store.get(KEYS[1]) is None
        out = _in_child(path, f"print(st.get({KEYS[1]!r}), len(st.iter_objects()))")
        assert out.split() == ["None", "1"]
    finally:
        writer.communicate(b"", timeout=30)
    result = _fresh(path).gc(keep_runs=1)  # gone now: its pack goes, tombstoned record and all
    assert result.objects_removed == 0 and result.bytes_freed > 100
    assert [k for k, _ in _fresh(path).iter_objects()] == [KEYS[0]]


def _open_in(directory: Path) -> list[str]:
    """Files under `directory` this process holds open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(directory)):
                found.append(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_run_holds_its_pack_open_and_nothing_stays_open_after(tmp_path: Path) -> None:
    path = tmp_path / "s"
    seen: list[list[str]] = []
    g = Graph("held")

    @g.step
    def first() -> int:
        return 1

    @g.step
    def second(first: int) -> int:
        seen.append(_open_in(path / PACKS_DIR))  # `first` is checkpointed by now
        return first + 1

    result = g.run(store=Store(path))
    assert result.status == {"first": "done", "second": "done"}
    assert [len(s) for s in seen] == [1]
    assert _open_in(path) == []
    Store(path).put(KEYS[0], b"1", {})  # outside a run: open, append, close
    assert _open_in(path) == []
