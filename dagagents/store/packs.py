"""Packs: small objects appended to one file per writing process instead of a file each.

Creating a file is most of what a checkpoint costs on a local disk (70-900 us on a shared
ext4 disk, against ~3 us to append a few hundred bytes to an open file), so a local store
appends every object up to `PACK_MAX` bytes to this process's own pack, `packs/<pid>-<token>-
<n>.pack`, with one `write` per object. What each object keeps:

- The same bytes an object file holds (`store.pack`), so the same checksum binds key, digest,
  meta and value, verified on every read: a damaged record reads as corrupt.
- Atomic for readers: a record is `+key length time\\n` then the object; a reader takes a
  record only once all `length` bytes are there, so a record being written, or torn by a kill
  (always the pack's last: nobody appends to a dead process's pack), is never read.
- Crash safety as a file has it: the `write` has returned before `put` does, so a SIGKILL
  loses nothing the run counted as done (no fsync, as for object files: not power loss).
  While a run goes (`Store.appending`) the pack stays open between appends; otherwise each
  append opens and closes it, so no file of the store stays open outside a run.
- Only its writer appends to a pack (the pid and a per-process token name it), so records of
  two processes never interleave. Readers index every pack once (key -> pack, offset) and, on
  a miss, read only what packs gained since (the packs folder's mtime says when to list it).
- One object per key: the newest record a reader has seen wins; `discard` appends a
  tombstone naming the exact record it drops (`-key pack offset\\n`).
- gc rewrites a pack whose writer is gone without its unreferenced records (under a new name,
  then removes the old one); in a pack whose writer still lives it only appends tombstones.

A pack starts with `dagagents-pack 1 {"pid": ..., "host": ...}\\n`, the writer that appends to
it (a pack whose writer is gone on this host is complete and never grows again).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

PACK_MAGIC = b"dagagents-pack 1 "
PACK_MAX = 64 * 1024  # bigger objects keep a file of their own
PACKS_DIR = "packs"
_SUFFIX = ".pack"
_TOKEN = secrets.token_hex(4)
_COUNTER = itertools.count()
_LIST_MARGIN = 0.1  # s: a folder mtime this close to our last listing may hide a new pack
_HOST = socket.gethostname()
_CHUNK = 1 << 20  # bytes of a pack read at a time when indexing it
_HEAD_MAX = 256  # a record's header line is shorter; longer means damage


def alive(pid: object) -> bool:
    """Is a process with this pid running on this machine?"""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_pack_name() -> str:
    """Unique among every writer: pid, a random per-process token, a counter."""
    return f"{os.getpid()}-{_TOKEN}-{next(_COUNTER)}{_SUFFIX}"


def pack_header(pid: int, host: str) -> bytes:
    return PACK_MAGIC + orjson.dumps({"pid": pid, "host": host}) + b"\n"


@dataclass(slots=True)
class Loc:
    """Where one object is: its pack, the offset and length of its bytes, when written."""

    pack: str
    offset: int
    length: int
    time: float


@dataclass
class _Pack:
    name: str
    path: str
    scanned: int = 0  # bytes indexed so far (always a record boundary)
    header: bytes = b""
    pid: int | None = None
    host: str | None = None
    complete: bool = False  # its writer is gone: it never grows again
    damaged: bool = False  # a record header that does not parse: nothing after it is read
    records: int = 0  # object records indexed from it
    tombstones: list[tuple[str, str, int]] = field(default_factory=list)


class Packs:
    """This process's view of a local store's packs, and its own pack to append to.

    One per store directory per process (`packs_for`), shared by every `Store` on it, so a
    run's own writes are visible to every reader in the process at once."""

    def __init__(self, root: str, warn: Callable[[str], None]) -> None:
        self.dir = os.path.join(root, PACKS_DIR)
        self.prefix = self.dir + os.sep
        self.warn = warn
        self.lock = threading.RLock()
        # While a run holds the pack open (`hold`), its write fd stays open between appends
        # (an open and a close less per object); the box lets a finalizer close it.
        self.holders = 0
        self.held: list[int | None] = [None]
        weakref.finalize(self, _close_held, self.held)
        self._reset()

    def hold(self) -> None:
        """Keep the own pack open for appends until the matching `release`."""
        with self.lock:
            self.holders += 1

    def release(self) -> None:
        """Close the own pack's fd once nobody holds it: outside a run no file of the
        store stays open (its disk can be remounted or unmounted)."""
        with self.lock:
            self.holders = max(0, self.holders - 1)
            if not self.holders:
                self._let_go()

    def _let_go(self) -> None:
        fd, self.held[0] = self.held[0], None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _reset(self) -> None:
        self.index: dict[str, Loc] = {}
        self.dropped: set[tuple[str, int]] = set()
        self.packs: dict[str, _Pack] = {}
        self.loaded = False
        self.dir_mtime: int | None = None
        self.listed_at = 0.0
        self.own: _Pack | None = None
        self.own_pid = 0
        self.own_size = 0

    def after_fork(self) -> None:
        """A forked child starts afresh: its parent's lock and pack are not its own."""
        self.lock = threading.RLock()
        self.own = None
        self.holders = 0
        self._let_go()  # the child's copy of the parent's fd

    # ------------------------------------------------------------------ reading
    def get(self, key: str, fresh: bool = False) -> bytes | None:
        """The bytes of `key`'s packed record, None if no pack has it; `fresh`: index what
        the packs gained first (after a miss: other processes may have packed it since)."""
        with self.lock:
            if fresh or not self.loaded:
                self.refresh()
            loc = self.index.get(key)
            if loc is None:
                return None
            data = _pread(self.prefix + loc.pack, loc.length, loc.offset)
            if data is not None and len(data) == loc.length:
                return data
            return self.read(loc)  # its pack is gone: re-index and look again

    def find(self, key: str) -> Loc | None:
        with self.lock:
            if not self.loaded:
                self.refresh()
            return self.index.get(key)

    def read(self, loc: Loc) -> bytes | None:
        """The object's bytes; None if its pack is gone (gc rewrote it: re-index, retry).
        Files are opened per read, never held: a store's disk stays unmountable."""
        with self.lock:
            data = _pread(self.path(loc.pack), loc.length, loc.offset)
            if data is not None and len(data) == loc.length:
                return data
            key = next((k for k, v in self.index.items() if v is loc), None)
            self._reindex()
            self.refresh()
            found = self.index.get(key) if key else None
            if found is None:
                return None
            data = _pread(self.path(found.pack), found.length, found.offset)
            return data if data is not None and len(data) == found.length else None

    def refresh(self) -> None:
        """Index new packs and the new tails of packs whose writers may still append."""
        self.loaded = True
        try:
            st = os.stat(self.dir)
        except (FileNotFoundError, NotADirectoryError):
            return
        if st.st_mtime_ns != self.dir_mtime or self.listed_at - st.st_mtime < _LIST_MARGIN:
            self.listed_at = time.time()
            self.dir_mtime = st.st_mtime_ns
            try:
                listed = os.listdir(self.dir)
            except (FileNotFoundError, NotADirectoryError):  # removed, or a file squats there
                return
            names = {n for n in listed if n.endswith(_SUFFIX) and n[0] != "."}
            gone = [n for n in self.packs if n not in names]
            if gone:  # rewritten by gc: index everything again
                self._reindex()
                self.listed_at, self.dir_mtime = time.time(), st.st_mtime_ns
            for name in sorted(names - self.packs.keys()):
                self.packs[name] = _Pack(name, os.path.join(self.dir, name))
        own = self.own
        for pack in self.packs.values():
            if pack.complete or pack.damaged or (pack is own and pack.scanned == self.own_size):
                continue
            self._scan(pack)

    def _reindex(self) -> None:
        """Forget the index (keeping the own pack open): every pack is read again."""
        own, own_pid, own_size = self.own, self.own_pid, self.own_size
        self._reset()
        self.loaded = True
        if own is not None:
            self.own = _Pack(own.name, own.path, pid=own.pid, host=own.host)
            self.packs[own.name] = self.own
            self.own_pid, self.own_size = own_pid, own_size

    def _scan(self, pack: _Pack) -> None:
        """Index `pack` from where the last scan stopped to its last whole record, reading
        it in chunks (a pack of big records is never read whole into memory, and a body
        that runs past a chunk is skipped, not read)."""
        try:
            size = os.stat(pack.path).st_size
        except FileNotFoundError:
            return
        while pack.scanned < size and not pack.damaged:
            data = _pread(pack.path, min(_CHUNK, size - pack.scanned), pack.scanned)
            if not data:
                return
            at = self._scan_chunk(pack, data, size)
            if at == pack.scanned:
                return  # a record being written (or torn by a kill)
            pack.scanned = at
        if pack.scanned >= size:
            self._check_complete(pack)

    def _scan_chunk(self, pack: _Pack, data: bytes, size: int) -> int:
        """Index the records that start in `data` (read at `pack.scanned`, in a file of
        `size` bytes); the offset of the first record not indexed."""
        base, pos = pack.scanned, 0
        if base == 0:
            pos = self._header(pack, data)
            if pos <= 0:
                return 0
        index, dropped, name = self.index, self.dropped, pack.name
        end = len(data)
        while pos < end:
            nl = data.find(b"\n", pos, pos + _HEAD_MAX)
            if nl < 0:
                if end - pos >= _HEAD_MAX:
                    self._damaged(pack, base + pos)
                break  # the chunk ends inside this header: the next chunk starts here
            kind = data[pos : pos + 1]
            fields = data[pos + 1 : nl].split(b" ")
            try:
                if kind == b"+" and len(fields) == 3 and len(fields[0]) == 64:
                    length, when = int(fields[1]), float(fields[2])
                    if length < 0:
                        raise ValueError
                    offset = base + nl + 1
                    if offset + length > size:
                        break  # not all there yet (or torn)
                    pack.records += 1
                    if (name, offset) not in dropped:
                        index[fields[0].decode()] = Loc(name, offset, length, when)
                    pos = nl + 1 + length
                    continue
                if kind == b"-" and len(fields) == 3 and len(fields[0]) == 64:
                    key, where, at = fields[0].decode(), fields[1].decode(), int(fields[2])
                    self._drop(key, where, at)
                    pack.tombstones.append((key, where, at))
                    pos = nl + 1
                    continue
            except (ValueError, UnicodeDecodeError):
                pass
            self._damaged(pack, base + pos)
            break
        return base + pos

    def _header(self, pack: _Pack, data: bytes) -> int:
        """Read the pack's first line; where its records start (0: not written yet, -1:
        damaged)."""
        nl = data.find(b"\n")
        if nl < 0:
            return 0  # its writer is still writing the first line
        try:
            if not data.startswith(PACK_MAGIC):
                raise ValueError
            info = orjson.loads(data[len(PACK_MAGIC) : nl])
            pack.pid, pack.host = int(info["pid"]), str(info["host"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self._damaged(pack, 0)
            return -1
        pack.header = data[: nl + 1]
        return nl + 1

    def _check_complete(self, pack: _Pack) -> None:
        """A pack never grows again once its writer is gone; nor does one of this process
        that is not its current pack (one `Packs` per store per process appends)."""
        if pack is self.own or pack.host != _HOST:
            return
        if pack.pid == os.getpid() or not alive(pack.pid):
            pack.complete = True

    def _damaged(self, pack: _Pack, offset: int) -> None:
        pack.damaged = True
        self.warn(
            f"pack '{pack.path}' is damaged at byte {offset}; the objects after it are "
            "recomputed when needed."
        )

    def _drop(self, key: str, pack: str, offset: int) -> None:
        self.dropped.add((pack, offset))
        loc = self.index.get(key)
        if loc is not None and loc.pack == pack and loc.offset == offset:
            del self.index[key]

    # ------------------------------------------------------------------ writing
    def append(self, key: str, data: bytes) -> None:
        """Append one object to this process's pack; returns once the OS has it."""
        with self.lock:
            if not self.loaded:
                self.refresh()
            now = time.time()
            head = b"+%s %d %.3f\n" % (key.encode(), len(data), now)
            offset = self._write(head + data)
            self.own.records += 1  # type: ignore[union-attr]
            self.index[key] = Loc(self.own.name, offset + len(head), len(data), now)  # type: ignore[union-attr]

    def tombstone(self, key: str) -> None:
        """Drop `key`'s packed record for every reader (a damaged one: `Store.discard`)."""
        with self.lock:
            loc = self.index.pop(key, None)
            if loc is None:
                return
            self.dropped.add((loc.pack, loc.offset))
            self._write(b"-%s %s %d\n" % (key.encode(), loc.pack.encode(), loc.offset))

    def forget(self, key: str) -> None:
        """This process reads `key` from elsewhere now (a file written after its record)."""
        with self.lock:
            self.index.pop(key, None)

    def _write(self, record: bytes) -> int:
        """Append `record` whole to the own pack; its offset. On failure the pack is cut
        back to its last whole record and given up (the next append starts a new one)."""
        if self.own is None or self.own_pid != os.getpid():
            self._open_own()
        assert self.own is not None
        offset = self.own_size
        fd = self.held[0]
        if fd is None:
            try:
                fd = os.open(self.own.path, os.O_WRONLY | os.O_APPEND | _BINARY)
            except FileNotFoundError:  # removed under us (rm -rf): start another
                self._open_own()
                offset = self.own_size
                fd = os.open(self.own.path, os.O_WRONLY | os.O_APPEND | _BINARY)
        try:
            _write_all(fd, record)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, offset)
            if fd == self.held[0]:
                self._let_go()
            else:
                os.close(fd)
            self.own = None
            raise
        if self.holders:
            self.held[0] = fd
        elif fd != self.held[0]:
            os.close(fd)
        self.own_size = offset + len(record)
        if self.own.scanned == offset:
            self.own.scanned = self.own_size
        return offset

    def _open_own(self) -> None:
        self._let_go()
        name = new_pack_name()
        path = os.path.join(self.dir, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            os.makedirs(self.dir, exist_ok=True)
            fd = os.open(path, flags, 0o666)
        header = pack_header(os.getpid(), _HOST)
        try:
            _write_all(fd, header)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(path)
            raise
        finally:
            os.close(fd)
        pack = _Pack(name, path, scanned=len(header), header=header, pid=os.getpid(), host=_HOST)
        self.packs[name] = pack
        self.own, self.own_pid, self.own_size = pack, os.getpid(), len(header)

    # ----------------------------------------------------------------------- gc
    def records(self) -> list[tuple[str, Loc]]:
        """Every packed object this process can see now."""
        with self.lock:
            self.refresh()
            return list(self.index.items())

    def with_dead_records(self) -> list[str]:
        """Complete packs that hold records no reader sees (superseded, dropped) or
        tombstones of records whose pack is gone."""
        live: dict[str, int] = {}
        for loc in self.index.values():
            live[loc.pack] = live.get(loc.pack, 0) + 1
        return [
            name
            for name, p in self.packs.items()
            if p.complete
            and (
                p.records > live.get(name, 0)
                or any(where not in self.packs for _, where, _ in p.tombstones)
            )
        ]

    def complete(self, pack: str) -> bool:
        p = self.packs.get(pack)
        return p is not None and p.complete

    def path(self, pack: str) -> str:
        return self.prefix + pack

    def rewrite(self, name: str, keep: Callable[[str, bytes], bool]) -> int:
        """Rewrite the complete pack `name` with only the records `keep(key, object)`
        accepts that readers still see (and the tombstones that still drop something);
        bytes freed. The new pack takes a new name, then the old one is removed."""
        with self.lock:
            pack = self.packs[name]
            old_size = os.path.getsize(pack.path)
            out = [pack.header]
            for key, loc in list(self.index.items()):
                if loc.pack != name:
                    continue
                data = self.read(loc)
                if data is None or not keep(key, data):
                    continue
                out.append(b"+%s %d %.3f\n" % (key.encode(), len(data), loc.time) + data)
            for key, where, at in pack.tombstones:
                if where != name and where in self.packs:
                    out.append(b"-%s %s %d\n" % (key.encode(), where.encode(), at))
            if len(out) > 1:
                new_name = new_pack_name()
                tmp = os.path.join(self.dir, "." + new_name)
                body = b"".join(out)
                try:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, 0o666)
                    try:
                        _write_all(fd, body)
                    finally:
                        os.close(fd)
                    os.replace(tmp, os.path.join(self.dir, new_name))
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.remove(tmp)
                    raise
                freed = old_size - len(body)
            else:
                freed = old_size
            with contextlib.suppress(FileNotFoundError):
                os.remove(pack.path)
            return freed

    def reread(self) -> None:
        """Index every pack again (after gc rewrote some)."""
        with self.lock:
            self._reindex()
            self.refresh()


_BINARY = getattr(os, "O_BINARY", 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _seek_read(fd: int, length: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, length)


_pread_fd = getattr(os, "pread", _seek_read)  # Windows has no pread; the fd is ours alone


def _pread(path: str, length: int, offset: int) -> bytes | None:
    """`length` bytes of `path` from `offset` (fewer at its end); None if it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | _BINARY)
    except FileNotFoundError:
        return None
    try:
        parts = [_pread_fd(fd, length, offset)]
        got = len(parts[0])
        while got < length:  # a big tail (a first scan) may come in pieces
            more = _pread_fd(fd, length - got, offset + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 1 else b"".join(parts)


_REGISTRY: weakref.WeakValueDictionary[str, Packs] = weakref.WeakValueDictionary()
_REGISTRY_LOCK = threading.Lock()


def packs_for(root: str, warn: Callable[[str], None]) -> Packs:
    """The one `Packs` of this process for the store at `root` (while any Store uses it)."""
    real = os.path.realpath(root)
    with _REGISTRY_LOCK:
        packs = _REGISTRY.get(real)
        if packs is None:
            packs = Packs(real, warn)
            _REGISTRY[real] = packs
        return packs


def _close_held(held: list[int | None]) -> None:
    if held[0] is not None:
        with contextlib.suppress(OSError):
            os.close(held[0])
        held[0] = None


def _after_fork() -> None:
    for packs in list(_REGISTRY.values()):
        packs.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
