"""Content-addressed checkpoint store: objects (packed or `objects/ab/cdef...`) plus
`runs/<id>/` manifests.

On a local disk an object up to `PACK_MAX` (64 KiB) is appended to this process's own pack,
`packs/<pid>-<token>-<n>.pack` (one `write` per object; see `packs.py`): creating a file per
object was nearly the whole cost of a checkpoint. A bigger object, and every object of a remote
(fsspec) store, is written to a temp file in its final directory, then renamed, so a crash never
leaves a partial object under a real name; a packed record is read only once it is whole. Every
object carries a checksum of its key and body, verified on each read: a corrupt or truncated
object, one copied onto another key, or a directory where the file should be is reported and
recomputed, never trusted. Readers see one object per key, in a file or in any process's pack.
Two runs may share a store: identical work maps to the same key and is stored once, and a node
one live process is computing is leased (`objects/ab/.lease-cdef...`) so another process waits
for it instead of paying for it again.

Objects of format 2 (before the checksum bound the key, and written by a codec that sorted
dict keys) read as absent: they are recomputed once, never served.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import math
import os
import secrets
import shutil
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from dagagents.errors import StoreError, StoreUnwritable
from dagagents.store.packs import PACK_MAX, PACKS_DIR, Packs, alive, packs_for

MAGIC = b"dagagents-object 3"
OLD_MAGICS = (b"dagagents-object 2",)
TMP_PREFIX = ".tmp-"
LEASE_PREFIX = ".lease-"


class StoreWarning(UserWarning):
    """Something in the store was damaged and skipped; the message names the file."""


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """Report a damaged file once per process, however many commands or runs read it."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    warnings.warn(message, StoreWarning, stacklevel=3)


@dataclass
class Lease:
    """The right to compute one key, held by this process until released. `heartbeat` keeps
    it alive past its ttl; a holder killed without releasing stops blocking others."""

    store: Store
    key: str
    path: str  # "" when the store cannot hold leases
    token: str

    def heartbeat(self) -> None:
        if self.path:
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Remove the lease file if it is still ours (an expired one may have been taken)."""
        if not self.path:
            return
        with contextlib.suppress(OSError, orjson.JSONDecodeError, AttributeError):
            if orjson.loads(Path(self.path).read_bytes()).get("token") == self.token:
                os.remove(self.path)


@dataclass(frozen=True)
class StoredOutput:
    """A verified object: the encoded output, its digest and what it cost to produce."""

    value: bytes
    digest: str
    meta: dict[str, Any]


class CorruptObject(Exception):
    """An object's checksum does not match its key and body (truncated, edited, or another
    object copied onto its path)."""


class OldObject(CorruptObject):
    """An object in an older format: `Store.get` reads it as absent, so it is recomputed
    and overwritten, never served (and never reported as damage)."""


def _check(key: str, value_digest: bytes, meta_line: bytes, value: bytes) -> bytes:
    return (
        hashlib.sha256(key.encode() + b"\n" + value_digest + meta_line + value).hexdigest().encode()
    )


def pack(key: str, value: bytes, meta: dict[str, Any]) -> tuple[bytes, str]:
    """Object file bytes for `key` and the output digest (sha256 of the encoded value alone).

    Layout: `MAGIC check digest\n meta-json\n value`; `check` covers the key, the digest, the
    meta line and the value, so any flipped or missing byte after the magic is detected, and
    so is a whole object moved onto a key that is not its own."""
    meta_line = orjson.dumps(meta, option=orjson.OPT_SORT_KEYS) + b"\n"
    value_digest = hashlib.sha256(value).hexdigest().encode()
    check = _check(key, value_digest, meta_line, value)
    header = MAGIC + b" " + check + b" " + value_digest + b"\n"
    return header + meta_line + value, value_digest.decode()


def unpack(data: bytes, key: str) -> StoredOutput:
    """Parse and verify the object file of `key`; raise CorruptObject on any mismatch and
    OldObject for an intact-looking object of an older format."""
    try:
        header, rest = data.split(b"\n", 1)
        magic_a, magic_b, check, value_digest = header.split(b" ")
        meta_line, value = rest.split(b"\n", 1)
    except ValueError:
        raise CorruptObject("malformed header") from None
    magic = magic_a + b" " + magic_b
    if magic != MAGIC:
        if magic in OLD_MAGICS:
            raise OldObject(f"object format {magic.decode()!r} is no longer read")
        raise CorruptObject("not a dagagents object")
    if _check(key, value_digest, meta_line + b"\n", value) != check:
        raise CorruptObject("checksum mismatch (truncated, modified, or not this key's object)")
    try:
        meta = orjson.loads(meta_line)
    except orjson.JSONDecodeError:  # only reachable if sha256 collides; never trust it
        raise CorruptObject("unreadable metadata") from None
    return StoredOutput(value=value, digest=value_digest.decode(), meta=meta)


_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
# The Message Batches API keeps a batch's results downloadable for 29 days: a run's record of a
# batch nobody collected is worth keeping that long (a rerun re-attaches instead of paying).
BATCH_RESULTS_KEPT_S = 29 * 86400.0
LEASE_TTL = 30.0  # seconds a lease lives without a heartbeat (holders beat every TTL/4)


def unwritable_reason(exc: OSError) -> str | None:
    """'full' or 'read-only' when a write failed because of the store's disk, else None."""
    if exc.errno in _FULL:
        return "full"
    if exc.errno in _READ_ONLY:
        return "read-only"
    return None


_TMP_COUNTER = itertools.count()
_TMP_TOKEN = secrets.token_hex(4)  # per process: pids repeat across hosts sharing a store


def _tmp_name() -> str:
    """Unique among every writer: pid, a random per-process token, a counter."""
    return f"{TMP_PREFIX}{os.getpid()}-{_TMP_TOKEN}-{next(_TMP_COUNTER)}"


class _LocalFS:
    """Plain files, the fast default."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._made: set[str] = set()

    def join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def read(self, path: str) -> bytes | None:
        # Raw fd reads: half the cost of open().read() on small files, which a 10,000-node
        # resume does 10,000 times.
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError:  # not on Linux, where opening a directory succeeds
            raise CorruptObject("a directory, not an object file") from None
        try:
            parts = [os.read(fd, 65536)]
            while parts[-1]:
                parts.append(os.read(fd, 1 << 20))
        except IsADirectoryError:
            raise CorruptObject("a directory, not an object file") from None
        finally:
            os.close(fd)
        return parts[0] if len(parts) == 2 else b"".join(parts)

    def write_atomic(self, path: str, data: bytes) -> None:
        """Temp file in the target's directory, then rename: readers never see a partial file."""
        directory = os.path.dirname(path)
        tmp = os.path.join(directory, _tmp_name())
        if directory not in self._made:
            os.makedirs(directory, exist_ok=True)
            self._made.add(directory)
        try:
            try:
                _write_file(tmp, data)
            except FileNotFoundError:  # removed under us (gc, rm -rf): make it again
                os.makedirs(directory, exist_ok=True)
                _write_file(tmp, data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise

    def open_append(self, path: str) -> IO[bytes]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "ab")  # noqa: SIM115 - the caller closes it

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def size(self, path: str) -> int:
        try:
            return os.path.getsize(path)
        except FileNotFoundError:
            return 0

    def mtime(self, path: str) -> float:
        try:
            return os.path.getmtime(path)
        except FileNotFoundError:
            return 0.0

    def remove(self, path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            shutil.rmtree(path, ignore_errors=True)

    def du(self, path: str) -> int:
        total = 0
        for directory, _, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.path.getsize(os.path.join(directory, name))
        return total

    def rmdir(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)


_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)


def _write_file(path: str, data: bytes) -> None:
    fd = os.open(path, _WRITE_FLAGS, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class _FsspecFS:
    """Any fsspec URL (memory://, s3://, gcs://, file://): shared stores for clusters."""

    def __init__(self, url: str) -> None:
        import fsspec

        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:  # unknown protocol, missing extra (s3fs)
            raise StoreError(f"store '{url}' cannot be used: {exc}") from None
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except Exception as exc:  # unreachable bucket, bad credentials, ...
            raise StoreError(f"store '{url}' cannot be used: {exc}") from None

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def read(self, path: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise CorruptObject("a directory, not an object file") from None

    def write_atomic(self, path: str, data: bytes) -> None:
        # Object stores write whole objects atomically; rename is a copy there.
        self.fs.pipe_file(path, data)

    def open_append(self, path: str) -> IO[bytes]:
        # Object stores cannot append: the trace is uploaded whole when the run closes it.
        return self.fs.open(path, "wb")  # type: ignore[no-any-return]

    def listdir(self, path: str) -> list[str]:
        try:
            return [e.rstrip("/").rsplit("/", 1)[-1] for e in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    def size(self, path: str) -> int:
        try:
            return int(self.fs.size(path))
        except FileNotFoundError:
            return 0

    def mtime(self, path: str) -> float:
        try:
            return float(self.fs.modified(path).timestamp())
        except Exception:  # not every backend records it
            return 0.0

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def du(self, path: str) -> int:
        try:
            return int(self.fs.du(path))
        except FileNotFoundError:
            return 0

    def rmdir(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(path, recursive=True)


class GcResult(NamedTuple):
    """What `Store.gc` removed."""

    objects_removed: int
    bytes_freed: int
    runs_removed: int
    objects_kept: int
    # Runs past `keep_runs` kept because they hold batches whose results nobody collected.
    runs_spared: int = 0


class Store:
    """A checkpoint store at a local directory (default `./.dagagents`) or an fsspec URL."""

    def __init__(
        self,
        location: str | os.PathLike[str] = ".dagagents",
        *,
        create: bool = True,
        pack_max: int = PACK_MAX,
    ) -> None:
        """`create=False` (status, gc) refuses a local directory that does not exist yet
        rather than making an empty store where a typo pointed. On a local disk, objects up
        to `pack_max` bytes are appended to this process's pack (`packs.py`) rather than
        given a file each; `pack_max=0` gives every object its own file (packed objects
        already there are still read)."""
        loc = os.fspath(location)
        self.url = loc
        self.fs: _LocalFS | _FsspecFS
        self._packs: Packs | None = None
        self.pack_max = 0
        if "://" in loc and not loc.startswith("file://"):
            self.fs = _FsspecFS(loc)
        else:
            path = loc.removeprefix("file://")
            if not create and not os.path.isdir(path):
                raise StoreError(no_store_message(loc))
            if create:
                try:
                    os.makedirs(os.path.join(path, "objects"), exist_ok=True)
                    os.makedirs(os.path.join(path, "runs"), exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"store '{loc}' cannot be created: {exc.strerror}.") from None
            self.fs = _LocalFS(path)
            self.url = str(Path(path).resolve())
            self._packs = packs_for(path, warn_once)
            self.pack_max = pack_max
        self._sep = os.sep if isinstance(self.fs, _LocalFS) else "/"
        self._objects = self.fs.join("objects") + self._sep

    @classmethod
    def existing(cls, location: str | os.PathLike[str]) -> Store | None:
        """The store at `location` if one is there, else None: for read-only commands
        (render, estimate) that work without history and must not create a store."""
        loc = os.fspath(location)
        local = "://" not in loc or loc.startswith("file://")
        if local and not os.path.isdir(loc.removeprefix("file://")):
            return None
        return cls(loc, create=False)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, _LocalFS)

    @property
    def in_process_only(self) -> bool:
        """True for a store that lives in this process's memory (`memory://`): no other
        process (a Dask worker) can reach it."""
        if not isinstance(self.fs, _FsspecFS):
            return False
        protocol = self.fs.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        return "memory" in protocols or self.url.startswith("memory://")

    # ------------------------------------------------------------- scratch files
    # Files beside the objects that are not checkpoints (an executor's reachability probe).
    def path(self, *parts: str) -> str:
        """A path inside the store, in the store's own form."""
        return self.fs.join(*parts)

    def write_bytes(self, path: str, data: bytes) -> None:
        self.fs.write_atomic(path, data)

    def read_bytes(self, path: str) -> bytes | None:
        """The file's bytes, None if it does not exist."""
        return self.fs.read(path)

    def remove_path(self, path: str) -> None:
        self.fs.remove(path)

    # ------------------------------------------------------------------ objects
    def object_path(self, key: str) -> str:
        """`objects/ab/cdef...`: 256 fan-out directories keep each one small."""
        return f"{self._objects}{key[:2]}{self._sep}{key[2:]}"

    def get(self, key: str) -> StoredOutput | None:
        """The verified object for `key`, None if absent (or of an older format). Raises
        CorruptObject if damaged, not this key's object, or not a file."""
        data = self._read_object(key)
        if data is None:
            return None
        try:
            return unpack(data, key)
        except OldObject:
            return None

    def _read_object(self, key: str) -> bytes | None:
        """The stored bytes of `key`: its packed record (the newest this process has seen),
        else its own file, else a record another process packed since we last looked."""
        packs = self._packs
        if packs is not None:
            data = packs.get(key)
            if data is not None:
                return data
        data = self.fs.read(self.object_path(key))
        if data is None and packs is not None:
            return packs.get(key, fresh=True)
        return data

    def contains(self, key: str) -> bool:
        """Is anything stored under `key` (intact or not)?"""
        try:
            return self._read_object(key) is not None
        except CorruptObject:
            return True

    def put(self, key: str, value: bytes, meta: dict[str, Any]) -> str:
        """Store an encoded output atomically; return its digest. Small objects on a local
        disk go to this process's pack (one append), others to a file of their own."""
        data, value_digest = pack(key, value, meta)
        packs = self._packs
        with self._writing():
            if packs is not None and len(data) <= self.pack_max:
                packs.append(key, data)
            else:
                self.fs.write_atomic(self.object_path(key), data)
                if packs is not None:
                    packs.forget(key)
        return value_digest

    @contextlib.contextmanager
    def appending(self) -> Iterator[None]:
        """While a run writes: this process's pack stays open between appends (an open and
        a close less per checkpoint); afterwards no file of the store is held open."""
        packs = self._packs
        if packs is None:
            yield
            return
        packs.hold()
        try:
            yield
        finally:
            packs.release()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A full or read-only disk becomes StoreUnwritable (one sentence); other OSErrors
        stay what they are."""
        try:
            yield
        except OSError as exc:
            reason = unwritable_reason(exc)
            if reason is None:
                raise
            raise StoreUnwritable(self.url, reason) from None

    def discard(self, key: str) -> None:
        """Remove a damaged object (a directory squatting on its path too; a packed record
        gets a tombstone every reader honours). On a read-only store it stays; it is
        recomputed each time and never served."""
        try:
            self.fs.remove(self.object_path(key))
        except OSError as exc:
            if unwritable_reason(exc) is None:
                raise
        if self._packs is not None:
            try:  # a tombstone for other processes; this one forgets the record at once
                self._packs.tombstone(key)
            except OSError as exc:
                if unwritable_reason(exc) is None:
                    raise

    # ------------------------------------------------------------------- leases
    def lease_path(self, key: str) -> str:
        """`objects/ab/.lease-cdef...`, beside the object it promises."""
        return f"{self._objects}{key[:2]}{self._sep}{LEASE_PREFIX}{key[2:]}"

    def try_lease(self, key: str, ttl: float = LEASE_TTL) -> Lease | None:
        """Claim the right to compute `key`: a Lease, or None while another live process
        holds one. A holder that died (its pid is gone on this host) or stopped beating for
        `ttl` seconds no longer blocks. Stores other than local directories are not leased
        (every claim succeeds, as before leases existed)."""
        token = secrets.token_hex(8)
        if not isinstance(self.fs, _LocalFS):
            return Lease(self, key, "", token)
        path = self.lease_path(key)
        body = orjson.dumps({"pid": os.getpid(), "host": Store.host(), "token": token, "ttl": ttl})
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                if self._lease_alive(path):
                    return None
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)  # stale: its holder is gone
                continue
            except FileNotFoundError:
                try:
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                except OSError as exc:
                    if unwritable_reason(exc) is None:
                        raise
                    return Lease(self, key, "", token)  # nothing can be saved here anyway
                continue
            except OSError as exc:
                if unwritable_reason(exc) is None:
                    raise
                return Lease(self, key, "", token)  # cannot lease where nothing can be saved
            try:
                os.write(fd, body)
            finally:
                os.close(fd)
            return Lease(self, key, path, token)
        return None

    def _lease_alive(self, path: str) -> bool:
        try:
            info = orjson.loads(self.fs.read(path) or b"{}")
            age = time.time() - os.path.getmtime(path)
        except (orjson.JSONDecodeError, CorruptObject, FileNotFoundError):
            return False  # half-written or gone: a holder writes it at once after creating it
        if not isinstance(info, dict):
            return False
        ttl = info.get("ttl")
        if age > (ttl if isinstance(ttl, int | float) else LEASE_TTL):
            return False
        if info.get("host") == Store.host():
            return _alive(info.get("pid"))
        return True

    def leased(self, key: str) -> bool:
        """Is another live process computing `key` right now?"""
        if not isinstance(self.fs, _LocalFS):
            return False
        path = self.lease_path(key)
        return os.path.exists(path) and self._lease_alive(path)

    def _object_files(self) -> Iterator[tuple[str, str, str]]:
        """(shard, file name, path) of every file under objects/, temp files included."""
        for prefix in self.fs.listdir(self.fs.join("objects")):
            for name in self.fs.listdir(self.fs.join("objects", prefix)):
                yield prefix, name, self.fs.join("objects", prefix, name)

    def iter_objects(self) -> list[tuple[str, str]]:
        """(key, path of the file holding it) of every stored object, each key once
        whether it has a file of its own or a record in a pack (temp files excluded)."""
        found = {
            prefix + name: path
            for prefix, name, path in self._object_files()
            if not name.startswith(".")  # temp files and leases
        }
        if self._packs is not None:
            for key, loc in self._packs.records():
                found.setdefault(key, self._packs.path(loc.pack))
        return list(found.items())

    def verify(self) -> dict[str, str]:
        """Key -> problem for every object that fails its checksum (temp files excluded):
        what `get` would serve for it."""
        bad: dict[str, str] = {}
        for key, _ in self.iter_objects():
            try:
                unpack(self._read_object(key) or b"", key)
            except OldObject as exc:
                bad[key] = f"{exc} (recomputed when next needed)"
            except CorruptObject as exc:
                bad[key] = str(exc)
        return bad

    # --------------------------------------------------------------------- runs
    @staticmethod
    def host() -> str:
        """This machine's name, recorded in manifests to tell a live run from a killed one."""
        return socket.gethostname()

    @staticmethod
    def new_run_id() -> str:
        """UTC start time to the microsecond, then random: ids sort in start order."""
        now = time.time()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
        micros = int((now % 1) * 1_000_000)
        return f"{stamp}.{micros:06d}-{secrets.token_hex(3)}"

    def run_dir(self, run_id: str) -> str:
        return self.fs.join("runs", run_id)

    def manifest_path(self, run_id: str) -> str:
        return self.fs.join("runs", run_id, "manifest.json")

    def trace_path(self, run_id: str) -> str:
        return self.fs.join("runs", run_id, "trace.jsonl")

    def batches_dir(self, run_id: str) -> str:
        """Where a batch-mode run records its Message Batches (engine/batches.py)."""
        return self.fs.join("runs", run_id, "batches")

    def open_batches(self, run_id: str) -> list[str]:
        """Ids of the run's recorded Message Batches whose results no run has collected yet,
        within the days the API keeps results. A killed or interrupted batch run leaves them;
        its rerun re-attaches to them, so they must outlive `gc`."""
        folder = self.batches_dir(run_id)
        found = []
        oldest = time.time() - BATCH_RESULTS_KEPT_S
        for name in sorted(self.fs.listdir(folder)):
            if not name.endswith(".json"):
                continue
            try:
                record = orjson.loads(self.fs.read(self.fs.join(folder, name)) or b"null")
            except (orjson.JSONDecodeError, CorruptObject):
                continue
            if not isinstance(record, dict) or record.get("state") == "collected":
                continue
            created = record.get("created")
            if isinstance(created, int | float) and created < oldest:
                continue  # its results are gone from the API: nothing left to re-attach to
            found.append(str(record.get("batch_id") or name[: -len(".json")]))
        return found

    def open_trace(self, run_id: str) -> IO[bytes]:
        """A binary sink for the run's JSONL trace (local: appended as it goes)."""
        with self._writing():
            return self.fs.open_append(self.trace_path(run_id))

    def write_manifest(self, run_id: str, manifest: dict[str, Any]) -> None:
        """Compact JSON: every run's start parses recent manifests for durations, and
        indentation made a 100,000-node manifest ~40% larger to write and to read."""
        data = orjson.dumps(manifest)
        with self._writing():
            self.fs.write_atomic(self.manifest_path(run_id), data)

    def list_runs(self) -> list[str]:
        """Run ids, oldest first (ids start with a UTC timestamp)."""
        runs = self.fs.listdir(self.fs.join("runs"))
        return sorted(r for r in runs if not r.startswith("."))

    def resolve_run(self, run: str | None) -> str:
        runs = self.list_runs()
        if not runs:
            raise StoreError(no_runs_message(self.url))
        if run is None or run == "latest":
            return runs[-1]
        matches = [r for r in runs if r == run or r.startswith(run)]
        if len(matches) != 1:
            raise StoreError(
                f"store '{self.url}' has {'no' if not matches else 'several'} runs matching "
                f"'{run}'."
            )
        return matches[0]

    def read_manifest(self, run: str | None = None) -> dict[str, Any]:
        """The manifest of `run` (an id or prefix); the newest readable one for None or
        'latest', skipping damaged ones with a warning."""
        if run is None or run == "latest":
            for run_id in reversed(self.list_runs()):
                manifest = self._manifest_or_none(run_id)
                if manifest is not None:
                    return manifest
            raise StoreError(no_runs_message(self.url))
        run_id = self.resolve_run(run)
        path = self.manifest_path(run_id)
        try:
            data = self.fs.read(path)
        except CorruptObject:
            data = b"\0"
        if data is None:
            raise StoreError(f"run '{run_id}' in '{self.url}' has no manifest.")
        manifest, problem = _parse_manifest(data)
        if problem is not None or manifest is None:
            raise StoreError(f"manifest '{path}' is damaged ({problem}).")
        return manifest

    def read_trace(self, run: str | None = None) -> list[dict[str, Any]]:
        """The run's events; a line cut short by a kill is ignored."""
        run_id = self.resolve_run(run)
        data = self.fs.read(self.trace_path(run_id)) or b""
        events = []
        for line in data.splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                if line.strip():
                    events.append(orjson.loads(line))
        return events

    # ----------------------------------------------------------------------- gc
    def gc(self, keep_runs: int = 10, *, tmp_age: float = 3600.0) -> GcResult:
        """Delete runs beyond the newest `keep_runs`, then objects no kept run references,
        then stale temp files.

        Never touches a run that is still going (nor objects written since it started), nor
        a run holding Message Batches whose results nobody collected (a killed batch run's
        rerun re-attaches to them rather than pay again), and keeps what an unfinished
        (killed) kept run finished, so resuming it stays free."""
        if keep_runs < 0:
            raise StoreError(f"--keep-runs must be 0 or more (got {keep_runs}).")
        self._check_writable()
        gc_started = time.time()
        runs = self.list_runs()
        manifests = {run_id: self._manifest_or_none(run_id) for run_id in runs}
        live = {r for r, m in manifests.items() if m is not None and run_state(m) == "running"}
        # The newest `keep_runs` runs stay; a live run is never dropped, however old, nor
        # (past the newest) one whose batches still wait to be collected.
        droppable = [r for r in runs if r not in live]
        too_old = droppable[: max(0, len(runs) - keep_runs)]
        batching = {r for r in too_old if self.open_batches(r)}
        drop = set(too_old) - batching
        spared = len(batching)
        kept_order = [r for r in runs if r not in drop]
        freed = 0
        for run_id in sorted(drop):
            freed += self.fs.du(self.run_dir(run_id))
            self.fs.rmdir(self.run_dir(run_id))
        referenced: set[str] = set()
        # (from, to) mtime windows of objects some unfinished run may still need, or that
        # were written while gc itself runs.
        # (The kernel stamps files from a coarse clock: 0.1 s of slack, not more, or the
        # objects of a run that ended just before gc would be spared too.)
        windows: list[tuple[float, float]] = [(gc_started - 0.1, math.inf)]
        for run_id in kept_order:
            manifest = manifests[run_id]
            if manifest is None:  # just starting (or broken): spare the last hour's objects
                windows.append((gc_started - 3600.0, math.inf))
                continue
            referenced.update(manifest_keys(manifest))
            state = run_state(manifest)
            if state in ("running", "killed"):
                referenced.update(trace_keys(self.read_trace(run_id)))
                windows.append(
                    (float(manifest.get("started", 0.0)) - 1.0, self._last_activity(run_id, state))
                )
        removed: set[str] = set()
        kept: set[str] = set()
        for prefix, name, path in list(self._object_files()):
            if name.startswith("."):
                continue
            key = prefix + name
            if key in referenced or _in_windows(self.fs.mtime(path), windows):
                kept.add(key)
                continue
            freed += self.fs.size(path)
            self.fs.remove(path)
            removed.add(key)
        if self._packs is not None:
            with self._writing():
                freed += self._gc_packs(referenced, windows, kept, removed)
            # A rewrite cut short by a kill leaves a hidden temp file.
            for name in self.fs.listdir(self.fs.join(PACKS_DIR)):
                path = self.fs.join(PACKS_DIR, name)
                if name.startswith(".") and gc_started - self.fs.mtime(path) > tmp_age:
                    freed += self.fs.size(path)
                    self.fs.remove(path)
        for _, name, path in self._object_files():
            if name.startswith(TMP_PREFIX) and gc_started - self.fs.mtime(path) > tmp_age:
                freed += self.fs.size(path)
                self.fs.remove(path)
            elif name.startswith(LEASE_PREFIX) and not self._lease_alive(path):
                self.fs.remove(path)
        return GcResult(len(removed), freed, len(drop), len(kept), spared)

    def _gc_packs(
        self,
        referenced: set[str],
        windows: list[tuple[float, float]],
        kept: set[str],
        removed: set[str],
    ) -> int:
        """Bytes freed among packed objects (adding their keys to `kept` or `removed`). A
        pack whose writer is gone is rewritten without what nobody needs (nor damaged or
        superseded records); in a pack a live process may still append to, unneeded
        records get tombstones (their bytes go once that process is gone and gc runs
        again)."""
        packs = self._packs
        assert packs is not None
        unneeded: set[str] = set()
        rewrite: set[str] = set()
        for key, loc in list(packs.records()):
            if key in referenced or _in_windows(loc.time, windows):
                kept.add(key)
                continue
            removed.add(key)
            if packs.complete(loc.pack):
                unneeded.add(key)
                rewrite.add(loc.pack)
            else:
                packs.tombstone(key)
        # Complete packs holding records no reader sees (superseded, dropped) shrink too.
        rewrite.update(packs.with_dead_records())

        def keep(key: str, data: bytes) -> bool:
            if key in unneeded:
                return False
            try:
                unpack(data, key)
            except CorruptObject:
                return False
            return True

        freed = sum(packs.rewrite(name, keep) for name in sorted(rewrite))
        if rewrite:
            packs.reread()
        return freed

    def _check_writable(self) -> None:
        """Raise StoreUnwritable before gc removes anything from a store it cannot change
        (a read-only mount would otherwise fail halfway, or silently remove nothing)."""
        if not isinstance(self.fs, _LocalFS):
            return
        probe = self.fs.join("objects", _tmp_name())
        with self._writing(), contextlib.suppress(FileNotFoundError):  # no objects/: nothing to do
            _write_file(probe, b"")
            os.remove(probe)

    def _last_activity(self, run_id: str, state: str) -> float:
        """Until when an unfinished run may have written objects. A killed run wrote each
        object just before an event its trace flushes within a fraction of a second."""
        if state == "running":
            return math.inf
        trace = self.trace_path(run_id)
        last = self.fs.mtime(trace)
        if not last or not self.fs.size(trace):
            return math.inf  # no trace to go by (object stores upload it at the end)
        return max(last, self.fs.mtime(self.manifest_path(run_id))) + 5.0

    def recent_manifests(
        self, graph: str, *, lookback: int | None = None, finished: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Readable manifests of `graph`'s runs, newest first, among the last `lookback` runs
        of the store; `finished` leaves out runs still marked running."""
        runs = self.list_runs()
        for run_id in reversed(runs[-lookback:] if lookback else runs):
            manifest = self._manifest_or_none(run_id)
            if manifest is None or manifest.get("graph") != graph:
                continue
            if finished and manifest.get("status") == "running":
                continue
            yield manifest

    def _manifest_or_none(self, run_id: str) -> dict[str, Any] | None:
        """The run's manifest; None if it has none yet, or if it is damaged (then a warning
        naming the file, once)."""
        path = self.manifest_path(run_id)
        try:
            data = self.fs.read(path)
        except CorruptObject:  # a directory where the file should be
            data = b"\0"
        if data is None:
            return None
        manifest, problem = _parse_manifest(data)
        if problem is not None:
            warn_once(f"manifest '{path}' is damaged ({problem}); skipped.")
        return manifest


def _parse_manifest(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, None) if `data` is a usable manifest, else (None, the problem)."""
    try:
        manifest = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, "not JSON" if data != b"\0" else "not a file"
    problem = manifest_problem(manifest)
    return (None, problem) if problem is not None else (manifest, None)


def no_store_message(location: str) -> str:
    """The one wording for a store that is not there."""
    return f"no store at '{location}' (the directory does not exist)."


def no_runs_message(location: str) -> str:
    """The one wording for a store without runs."""
    return f"store '{location}' has no runs yet."


_NUMBER = (int, float)
_TOP_FIELDS: dict[str, tuple[type, ...]] = {
    "run_id": (str,),
    "graph": (str,),
    "status": (str,),
    "started": _NUMBER,
    "wall": _NUMBER,
    "concurrency": (int,),
    "pid": (int,),
    "host": (str,),
    "provider": (str,),
    "executor": (str,),
    "nodes": (dict,),
    "edges": (list,),
    "specs": (dict,),
}
_REQUIRED = ("run_id", "status")
_NODE_FIELDS: dict[str, tuple[type, ...]] = {
    "status": (str,),
    "kind": (str,),
    "agent": (str,),
    "model": (str,),
    "key": (str,),
    "digest": (str,),
    "start": _NUMBER,
    "end": _NUMBER,
    "duration": _NUMBER,
    "cost_usd": _NUMBER,
    "calls": (int,),
    "usage": (dict,),
    "error": (str,),
    "because": (str,),
    "simulated": (bool,),
    "depends_on": (list,),
    "compute_seconds": _NUMBER,
}


def _what(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _bad_type(value: Any, types: tuple[type, ...], *, optional: bool) -> bool:
    if value is None:
        return not optional
    if isinstance(value, bool) and bool not in types:
        return True  # true is no number here
    return not isinstance(value, types)


def manifest_problem(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest (the first problem), None if every field that
    commands read has the type they expect. Readers may then index it without checks."""
    if not isinstance(manifest, dict):
        return f"it holds a JSON {_what(manifest)}, not an object"
    for name in _REQUIRED:
        if not isinstance(manifest.get(name), str):
            return f"'{name}' is {'missing' if name not in manifest else _what(manifest[name])}"
    for name, types in _TOP_FIELDS.items():
        if name in manifest and _bad_type(manifest[name], types, optional=name == "wall"):
            return f"'{name}' is a {_what(manifest[name])}"
    for node, record in manifest.get("nodes", {}).items():
        problem = _node_record_problem(node, record)
        if problem is not None:
            return problem
    for edge in manifest.get("edges", []):
        if not (
            isinstance(edge, list) and len(edge) == 2 and all(isinstance(x, str) for x in edge)
        ):
            return f"'edges' holds {_what(edge)} {str(edge)[:40]!r}, not a pair of node names"
    for node, spec in manifest.get("specs", {}).items():
        if not isinstance(spec, dict):
            return f"'specs.{node}' is a {_what(spec)}, not an object"
    return None


def _node_record_problem(node: str, record: Any) -> str | None:
    """What is wrong with one node's record in a manifest, None if nothing."""
    if not isinstance(record, dict):
        return f"node '{node}' is a {_what(record)}, not an object"
    for name, types in _NODE_FIELDS.items():
        value = record.get(name)
        # An exact type match needs no closer look (unlike isinstance, it never takes a bool
        # for an int): a run's start checks every node of the manifest it reads.
        if value is None or type(value) in types:
            continue
        if _bad_type(value, types, optional=True):
            return f"'nodes.{node}.{name}' is a {_what(value)}"
    usage = record.get("usage") or {}
    for name, count in usage.items():
        if type(count) is not int and _bad_type(count, _NUMBER, optional=True):
            return f"'nodes.{node}.usage.{name}' is a {_what(count)}"
    if not all(isinstance(d, str) for d in record.get("depends_on") or ()):
        return f"'nodes.{node}.depends_on' holds a non-string"
    return None


def _in_windows(mtime: float, windows: list[tuple[float, float]]) -> bool:
    return any(start <= mtime <= end for start, end in windows)


def manifest_keys(manifest: dict[str, Any]) -> set[str]:
    """Keys of the outputs a run produced or reused."""
    return {
        node["key"]
        for node in manifest.get("nodes", {}).values()
        if node.get("key") and node.get("status") in ("done", "cached")
    }


def trace_keys(events: list[dict[str, Any]]) -> set[str]:
    """Keys a run finished or reused, from its trace (for runs killed before their manifest)."""
    return {
        e["key"]
        for e in events
        if e.get("event") in ("node_complete", "cache_hit") and e.get("key")
    }


def run_state(manifest: dict[str, Any]) -> str:
    """The manifest's status, except that a 'running' run whose process is gone is 'killed'."""
    status = str(manifest.get("status", "unknown"))
    if status != "running":
        return status
    host = manifest.get("host")
    if host is not None and host != socket.gethostname():
        # Another machine's run: trust it for a day, then assume it died.
        return "running" if time.time() - float(manifest.get("started", 0.0)) < 86400 else "killed"
    return "running" if _alive(manifest.get("pid")) else "killed"


_alive = alive
