"""Where a stored object's bytes are (its own file or a record in a pack), and damaging them
as a disk fault or a stray edit would (checkpoint, gc and kill tests)."""

from __future__ import annotations

import os
from pathlib import Path

from dagagents.store import Store

DAMAGE = ("truncate", "flip", "empty", "garbage")


def _damaged(data: bytes, how: str) -> bytes:
    return {
        "truncate": data[: len(data) // 2],
        "flip": data[:-3] + bytes([data[-3] ^ 0x20]) + data[-2:],
        "empty": b"",
        "garbage": b"\x00" * len(data),
    }[how]


def packed(store: Store, key: str) -> bool:
    """Is `key` served from a pack (rather than a file of its own)?"""
    return store._packs is not None and store._packs.find(key) is not None


def stored_size(store: Store, key: str) -> int:
    """Bytes `key` takes in the store: its file, or its pack record (header line included)."""
    if not packed(store, key):
        return Path(store.object_path(key)).stat().st_size
    assert store._packs is not None
    loc = store._packs.find(key)
    assert loc is not None
    return len(b"+%s %d %.3f\n" % (key.encode(), loc.length, loc.time)) + loc.length


def damage(store: Store, key: str, how: str) -> None:
    """Damage the bytes `get(key)` reads. A packed record changed in length is written as a
    pack would hold it (its header giving the new length), under a new pack name, as gc
    rewrites packs, so every reader indexes it afresh."""
    if not packed(store, key):
        path = Path(store.object_path(key))
        path.write_bytes(_damaged(path.read_bytes(), how))
        return
    packs = store._packs
    assert packs is not None
    loc = packs.find(key)
    assert loc is not None
    pack = Path(packs.path(loc.pack))
    raw = pack.read_bytes()
    start = raw.rindex(b"+%s " % key.encode(), 0, loc.offset)
    obj = raw[loc.offset : loc.offset + loc.length]
    bad = _damaged(obj, how)
    if len(bad) == len(obj):
        with open(pack, "r+b") as fh:
            fh.seek(loc.offset)
            fh.write(bad)
        return
    head = b"+%s %d %.3f\n" % (key.encode(), len(bad), loc.time)
    new = pack.with_name(pack.stem + "-damaged.pack")
    new.write_bytes(raw[:start] + head + bad + raw[loc.offset + loc.length :])
    os.remove(pack)
