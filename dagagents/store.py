"""Content-addressed checkpoint store: `objects/ab/cdef...` plus `runs/<id>/` manifests.

An object is written to a temp file in its final directory, then renamed, so a crash never
leaves a partial object under a real name. Every object carries a checksum of its body, verified
on each read: a corrupt or truncated file is reported and recomputed, never trusted. Two runs
may share a store: identical work maps to the same key and is stored once.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from dagagents.errors import StoreError

MAGIC = b"dagagents-object 1"
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class StoredOutput:
    """A verified object: the encoded output, its digest and what it cost to produce."""

    value: bytes
    digest: str
    meta: dict[str, Any]


class CorruptObject(Exception):
    """An object's checksum does not match its body (truncated or edited on disk)."""


def pack(value: bytes, meta: dict[str, Any]) -> tuple[bytes, str]:
    """Object file bytes and the output digest (sha256 of the encoded value alone)."""
    meta_line = orjson.dumps(meta, option=orjson.OPT_SORT_KEYS) + b"\n"
    value_digest = hashlib.sha256(value).hexdigest()
    check = hashlib.sha256(meta_line + value).hexdigest()
    header = b"%s %s %s\n" % (MAGIC, check.encode(), value_digest.encode())
    return header + meta_line + value, value_digest


def unpack(data: bytes) -> StoredOutput:
    """Parse and verify an object file; raise CorruptObject on any mismatch."""
    try:
        header, rest = data.split(b"\n", 1)
        magic_a, magic_b, check, value_digest = header.split(b" ")
        meta_line, value = rest.split(b"\n", 1)
    except ValueError:
        raise CorruptObject("malformed header") from None
    if magic_a + b" " + magic_b != MAGIC:
        raise CorruptObject("not a dagagents object")
    if hashlib.sha256(meta_line + b"\n" + value).hexdigest().encode() != check:
        raise CorruptObject("checksum mismatch (truncated or modified)")
    return StoredOutput(value=value, digest=value_digest.decode(), meta=orjson.loads(meta_line))


class _LocalFS:
    """Plain files, the fast default."""

    def __init__(self, root: str) -> None:
        self.root = root

    def join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def read(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def write_atomic(self, path: str, data: bytes) -> None:
        directory = os.path.dirname(path)
        tmp = os.path.join(directory, f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
        try:
            fh = open(tmp, "wb")
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            fh = open(tmp, "wb")
        with fh:
            fh.write(data)
        os.replace(tmp, path)

    def append(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab") as fh:
            fh.write(data)

    def listdir(self, path: str) -> list[str]:
        try:
            return os.listdir(path)
        except FileNotFoundError:
            return []

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def mtime(self, path: str) -> float:
        return os.path.getmtime(path)

    def remove(self, path: str) -> None:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def rmdir(self, path: str) -> None:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


class _FsspecFS:
    """Any fsspec URL (memory://, s3://, gcs://, file://): shared stores for clusters."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.protocol = url.split("://", 1)[0]
        self._prefix = f"{self.protocol}://" if self.protocol not in ("file", "local") else ""
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

    def write_atomic(self, path: str, data: bytes) -> None:
        # Object stores write whole objects atomically; rename is a copy there.
        self.fs.pipe_file(path, data)

    def append(self, path: str, data: bytes) -> None:
        old = self.read(path) or b""
        self.fs.pipe_file(path, old + data)

    def listdir(self, path: str) -> list[str]:
        try:
            return [e.rstrip("/").rsplit("/", 1)[-1] for e in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    def size(self, path: str) -> int:
        return int(self.fs.size(path))

    def mtime(self, path: str) -> float:
        try:
            return float(self.fs.modified(path).timestamp())
        except Exception:
            return 0.0

    def remove(self, path: str) -> None:
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass

    def isdir(self, path: str) -> bool:
        return bool(self.fs.isdir(path))

    def rmdir(self, path: str) -> None:
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass


class Store:
    """A checkpoint store at a local directory (default `./.dagagents`) or an fsspec URL."""

    def __init__(self, location: str | os.PathLike[str] = ".dagagents") -> None:
        loc = os.fspath(location)
        self.url = loc
        self.fs: _LocalFS | _FsspecFS
        if "://" in loc and not loc.startswith("file://"):
            self.fs = _FsspecFS(loc)
        else:
            path = loc.removeprefix("file://")
            try:
                os.makedirs(os.path.join(path, "objects"), exist_ok=True)
                os.makedirs(os.path.join(path, "runs"), exist_ok=True)
            except OSError as exc:
                raise StoreError(f"store '{loc}' cannot be created: {exc.strerror}.") from None
            self.fs = _LocalFS(path)
            self.url = str(Path(path).resolve())

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, _LocalFS)

    # ------------------------------------------------------------------ objects
    def object_path(self, key: str) -> str:
        return self.fs.join("objects", key[:2], key[2:])

    def get(self, key: str) -> StoredOutput | None:
        """The verified object for `key`, None if absent. Raises CorruptObject if damaged."""
        data = self.fs.read(self.object_path(key))
        if data is None:
            return None
        return unpack(data)

    def put(self, key: str, value: bytes, meta: dict[str, Any]) -> str:
        """Store an encoded output atomically; return its digest."""
        data, value_digest = pack(value, meta)
        self.fs.write_atomic(self.object_path(key), data)
        return value_digest

    def discard(self, key: str) -> None:
        self.fs.remove(self.object_path(key))

    def iter_objects(self) -> list[tuple[str, str]]:
        """(key, path) of every stored object, temp files excluded."""
        out = []
        objects = self.fs.join("objects")
        for prefix in self.fs.listdir(objects):
            for rest in self.fs.listdir(self.fs.join("objects", prefix)):
                if not rest.startswith(TMP_PREFIX):
                    out.append((prefix + rest, self.fs.join("objects", prefix, rest)))
        return out

    # --------------------------------------------------------------------- runs
    @staticmethod
    def new_run_id() -> str:
        return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)

    def run_dir(self, run_id: str) -> str:
        return self.fs.join("runs", run_id)

    def manifest_path(self, run_id: str) -> str:
        return self.fs.join("runs", run_id, "manifest.json")

    def trace_path(self, run_id: str) -> str:
        return self.fs.join("runs", run_id, "trace.jsonl")

    def write_manifest(self, run_id: str, manifest: dict[str, Any]) -> None:
        data = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
        path = self.manifest_path(run_id)
        if isinstance(self.fs, _LocalFS):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        self.fs.write_atomic(path, data)

    def list_runs(self) -> list[str]:
        """Run ids, oldest first (ids start with a UTC timestamp)."""
        runs = self.fs.listdir(self.fs.join("runs"))
        return sorted(r for r in runs if not r.startswith("."))

    def resolve_run(self, run: str | None) -> str:
        runs = self.list_runs()
        if not runs:
            raise StoreError(f"store '{self.url}' has no runs yet.")
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
        run_id = self.resolve_run(run)
        data = self.fs.read(self.manifest_path(run_id))
        if data is None:
            raise StoreError(f"run '{run_id}' in '{self.url}' has no manifest.")
        return dict(orjson.loads(data))

    def read_trace(self, run: str | None = None) -> list[dict[str, Any]]:
        run_id = self.resolve_run(run)
        data = self.fs.read(self.trace_path(run_id)) or b""
        return [orjson.loads(line) for line in data.splitlines() if line.strip()]

    # ----------------------------------------------------------------------- gc
    def gc(self, keep_runs: int = 10, *, tmp_age: float = 3600.0) -> tuple[int, int, int]:
        """Delete runs beyond the newest `keep_runs`, then objects no kept run references,
        then stale temp files. Returns (objects removed, bytes freed, runs removed)."""
        runs = self.list_runs()
        drop = runs[: max(0, len(runs) - keep_runs)]
        for run_id in drop:
            self.fs.rmdir(self.run_dir(run_id))
        referenced: set[str] = set()
        # Objects written since a still-running run started may belong to it: keep them.
        protect_after = float("inf")
        for run_id in runs[len(drop) :]:
            data = self.fs.read(self.manifest_path(run_id))
            if data is None:
                continue
            manifest = orjson.loads(data)
            if manifest.get("status") == "running" and _alive(manifest.get("pid")):
                protect_after = min(protect_after, float(manifest.get("started", 0.0)) - 1.0)
            for node in manifest.get("nodes", {}).values():
                if node.get("key"):
                    referenced.add(node["key"])
        removed = freed = 0
        for key, path in self.iter_objects():
            if key not in referenced and self.fs.mtime(path) < protect_after:
                freed += self.fs.size(path)
                self.fs.remove(path)
                removed += 1
        now = time.time()
        objects = self.fs.join("objects")
        for prefix in self.fs.listdir(objects):
            for name in self.fs.listdir(self.fs.join("objects", prefix)):
                path = self.fs.join("objects", prefix, name)
                if name.startswith(TMP_PREFIX) and now - self.fs.mtime(path) > tmp_age:
                    freed += self.fs.size(path)
                    self.fs.remove(path)
        return removed, freed, len(drop)


def _alive(pid: Any) -> bool:
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
