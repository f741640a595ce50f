"""Local-filesystem storage: mmap reads, write-temp + fsync + rename, flock-guarded commits."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import threading
import uuid
from typing import Iterator

from atlas.errors import ConflictError, CorruptionError, ReadOnlyError
from atlas.storage._base import TEMP_SUFFIX, Storage

LOCK_NAME = ".atlas.lock"
PUBLISH_THREADS = 16  # concurrent fsyncs when a flush publishes many segments


def _fsync_path(path: str) -> None:
    """fsync a file or a directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@contextlib.contextmanager
def directory_lock(root: str) -> Iterator[None]:
    """Hold the exclusive ``flock`` of a store directory's lock file, which serialises commits
    (and orphan sweeps) of every handle on this machine, whichever backend opened the store."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, LOCK_NAME), "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _containing_dirs(paths, root: str) -> list[str]:
    """Every directory between the files and the store root: a new ``segments/<array>``
    directory is only durable once its parent is fsynced too (the root is fsynced by the
    manifest commit that follows)."""
    dirs = set()
    for path in paths:
        directory = os.path.dirname(path)
        while len(directory) > len(root) and directory not in dirs:
            dirs.add(directory)
            directory = os.path.dirname(directory)
    return sorted(dirs)


class LocalStorage(Storage):
    """A directory on the local filesystem."""

    locks_spills = True

    def __init__(self, root: str | os.PathLike, read_only: bool = False):
        self.root = os.path.abspath(os.fspath(root))
        self.read_only = read_only
        self._maps: dict[str, mmap.mmap | bytes] = {}
        self._maps_lock = threading.Lock()

    @property
    def location(self) -> str:
        return self.root

    def describe(self) -> tuple:
        return ("local", self.root, self.read_only)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(f"store at {self.root} is read-only")

    def get(self, key: str) -> bytes:
        with open(self._path(key), "rb") as f:
            return f.read()

    def _mapping(self, key: str, expected_size: int | None):
        mapping = self._maps.get(key)
        if mapping is not None:
            return mapping
        with self._maps_lock:
            mapping = self._maps.get(key)
            if mapping is not None:
                return mapping
            path = self._path(key)
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if expected_size is not None and size != expected_size:
                    raise CorruptionError(
                        f"{path}: file is {size} bytes, the manifest records {expected_size}"
                    )
                # an empty file cannot be mapped; it has no chunks anyway
                mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            self._maps[key] = mapping
            return mapping

    def get_range(self, key: str, offset: int, length: int, expected_size: int | None = None):
        mapping = self._mapping(key, expected_size)
        return memoryview(mapping)[offset : offset + length]

    def put(self, key: str, data: bytes) -> None:
        self._check_writable()
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_path(os.path.dirname(path))

    def delete(self, key: str) -> None:
        self._check_writable()
        self._maps.pop(key, None)
        try:
            os.remove(self._path(key))
        except FileNotFoundError:
            pass

    def list(self, prefix: str = "") -> list[tuple[str, int, float]]:
        out = []
        base = self._path(prefix) if prefix else self.root
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                key = os.path.relpath(full, self.root).replace(os.sep, "/")
                out.append((key, st.st_size, st.st_mtime))
        return sorted(out)

    def spill_path(self, key: str) -> str:
        # written in place: the file is invisible to readers until a manifest references it
        self._check_writable()
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def publish(self, key: str, path: str) -> None:
        _fsync_path(path)
        for directory in _containing_dirs([path], self.root):
            _fsync_path(directory)

    def publish_many(self, items, done=None) -> None:
        """fsync every file, then every directory once, from a thread pool: a flush of a wide
        dataset publishes hundreds of small segments and the fsyncs overlap well."""
        if len(items) < 2:
            return super().publish_many(items, done)
        from concurrent.futures import ThreadPoolExecutor

        paths = [path for _, path in items]
        dirs = _containing_dirs(paths, self.root)
        with ThreadPoolExecutor(min(PUBLISH_THREADS, len(paths))) as pool:
            list(pool.map(_fsync_path, paths))
            list(pool.map(_fsync_path, dirs))
        if done is not None:
            for key, _ in items:
                done(key)

    def read_manifest(self, key: str):
        try:
            data = self.get(key)
        except (FileNotFoundError, NotADirectoryError):  # no store here (a file is not one)
            return None
        return data, _digest(data)

    @contextlib.contextmanager
    def commit_lock(self) -> Iterator[None]:
        self._check_writable()
        with directory_lock(self.root):
            yield

    def commit(self, key: str, data: bytes, expected):
        token = _digest(data)
        with self.commit_lock():
            current = self.read_manifest(key)
            current_token = current[1] if current else None
            # equal to what we write: an earlier attempt of this very commit landed before it
            # raised (e.g. the directory fsync failed after the rename), so retrying succeeds
            if current_token != expected and current_token != token:
                raise ConflictError(
                    f"store at {self.root} was committed by another writer since this handle "
                    "read it; reopen the store and redo the changes"
                )
            self.put(key, data)
        return token

    def remove_unused(self, key: str) -> bool:
        """Delete ``key`` unless a writer holds its shared lock (a pending segment)."""
        self._check_writable()
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self._maps.pop(key, None)
            os.remove(path)
            return True
        finally:
            os.close(fd)

    def close(self) -> None:
        self._maps.clear()
