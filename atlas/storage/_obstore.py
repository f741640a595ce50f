"""Object-store storage through obstore: S3, GCS, Azure, HTTP (read-only), local files, memory.

The layout is the same as on a local disk. Segments are written to a local spill file and
uploaded whole when finished (multipart above ``part_size``); the manifest is replaced by one
conditional PUT (``mode="create"`` for a new store, else the e-tag/version the writer read), so a
lost update surfaces as :class:`atlas.ConflictError` and nothing is silently overwritten.
Reads never list: one GET for the manifest, one ranged GET per segment footer, then the byte
ranges of each segment in one concurrent ``get_ranges`` call.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from atlas.errors import ConflictError, CorruptionError, ReadOnlyError
from atlas.storage._base import Storage
from atlas.storage._local import directory_lock  # the same lock file: both exclude each other

# Options of this adapter (the rest of a URL's options go to ``obstore.store.from_url``).
DEFAULTS: dict[str, Any] = {
    "part_size": 8 << 20,  # multipart part size for segment uploads (S3 needs >= 5 MiB)
    "max_concurrency": 8,  # parts in flight per upload
    "coalesce": 1 << 20,  # obstore merges ranges closer than this into one request
    "spill_dir": None,  # where pending segments are written; None: the system temp directory
}


# Stores that cannot be pickled (MemoryStore) reopen by reference, in this process only.
_registry: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_numbers = itertools.count()
_registry_lock = threading.Lock()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _is_panic(err: BaseException) -> bool:
    # pyo3 turns a Rust panic into PanicException, a BaseException subclass
    return type(err).__name__ == "PanicException"


def _token(meta_or_result: dict) -> dict:
    """The version token of an object: what a conditional PUT must match."""
    return {"e_tag": meta_or_result.get("e_tag"), "version": meta_or_result.get("version")}


def _update_mode(token: dict) -> dict:
    mode = {k: v for k, v in token.items() if v is not None}
    if not mode:
        raise ConflictError("the manifest this handle read carries neither an e-tag nor a "
                            "version, so it cannot be replaced conditionally")
    return mode


class _Ref:
    """A store that cannot be pickled, named by process id and number."""

    def __init__(self, pid: int, number: int, kind: str):
        self.pid, self.number, self.kind = pid, number, kind

    def resolve(self):
        store = _registry.get(self.number) if self.pid == os.getpid() else None
        if store is None:
            raise ValueError(
                f"an atlas store on a {self.kind} lives in the process that created it "
                f"(pid {self.pid}); it cannot be reopened in pid {os.getpid()}. "
                "Use an S3/GCS/Azure/local store to share a store between processes")
        return store

    def __reduce__(self):
        return (_Ref, (self.pid, self.number, self.kind))


class ObjectStorage(Storage):
    """An obstore store (or a prefix of one) holding an atlas store."""

    def __init__(self, store: Any, read_only: bool = False, *, url: str | None = None,
                 **options: Any):
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} for an obstore store "
                            f"{type(store).__name__}; accepted: {sorted(DEFAULTS)}")
        self.store = store
        self.kind = type(store).__name__
        # HTTP has no conditional writes; an HTTP store is always read-only
        self.read_only = bool(read_only) or self.kind == "HTTPStore"
        self.options = {**DEFAULTS, **options}
        self._url = url
        self._ref: _Ref | None = None  # this store's registry entry, once described
        self._lock_root = self._local_root() if self.kind == "LocalStore" else None

    # -- construction and description ----------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, read_only: bool = False, **options: Any) -> "ObjectStorage":
        """Open ``s3://``, ``gs://``, ``az://``, ``http(s)://``, ``file://`` or ``memory://``
        URLs; options not of this adapter (region, endpoint, credentials, client_options, ...)
        go to ``obstore.store.from_url``."""
        from obstore.store import from_url

        ours = {k: options.pop(k) for k in list(options) if k in DEFAULTS}
        try:
            store = from_url(url, **options)
        except Exception as err:
            raise ValueError(f"cannot open object store {url!r} with options "
                             f"{sorted(options)}: {_first_line(err)}") from err
        return cls(store, read_only=read_only, url=url, **ours)

    @classmethod
    def from_description(cls, description: tuple) -> "ObjectStorage":
        _kind, store, read_only, options, url = description
        ref = store if isinstance(store, _Ref) else None
        if ref is not None:
            store = ref.resolve()
        storage = cls(store, read_only=read_only, url=url, **options)
        storage._ref = ref
        return storage

    def describe(self) -> tuple:
        store = self.store
        if self.kind == "MemoryStore":
            if self._ref is None:
                with _registry_lock:
                    number = next(_numbers)
                    _registry[number] = store
                self._ref = _Ref(os.getpid(), number, self.kind)
            store = self._ref
        return ("object", store, self.read_only, dict(self.options), self._url)

    @property
    def location(self) -> str:
        if self._url is not None:
            return self._url
        store = self.store
        prefix = str(getattr(store, "prefix", None) or "").strip("/")
        if self.kind == "S3Store":
            return f"s3://{store.config.get('bucket', '?')}/{prefix}".rstrip("/")
        if self.kind == "GCSStore":
            return f"gs://{store.config.get('bucket', '?')}/{prefix}".rstrip("/")
        if self.kind == "AzureStore":
            return f"az://{store.config.get('container_name', '?')}/{prefix}".rstrip("/")
        if self.kind == "HTTPStore":
            return store.url
        if self.kind == "LocalStore":
            return f"file:///{prefix}"
        return f"memory://{id(store):x}"

    def __repr__(self) -> str:
        return f"ObjectStorage({self.location!r}, read_only={self.read_only})"

    def _local_root(self) -> str:
        prefix = self.store.prefix
        if prefix is None:
            raise ValueError("a LocalStore without a prefix directory cannot hold an atlas store")
        return os.fspath(prefix)

    # -- errors --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translated(self, key: str, action: str) -> Iterator[None]:
        """obstore errors as builtin/atlas errors naming the object."""
        from obstore.exceptions import (
            BaseError,
            NotFoundError,
            PermissionDeniedError,
            UnauthenticatedError,
        )

        where = f"{self.location}/{key}"
        try:
            yield
        except (FileNotFoundError, NotFoundError) as err:
            raise FileNotFoundError(f"{where}: no such object ({action})") from err
        except (PermissionDeniedError, UnauthenticatedError, PermissionError) as err:
            raise PermissionError(f"{where}: {action} refused: {_first_line(err)}") from err
        except NotImplementedError as err:
            raise NotImplementedError(f"{where}: {self.kind} cannot {action}: "
                                      f"{_first_line(err)}") from err
        except (BaseError, OSError, RuntimeError, ValueError) as err:
            raise OSError(f"{where}: {action} failed: {_first_line(err)}") from err

    def _check_writable(self) -> None:
        if self.read_only:
            why = "HTTP stores are read-only" if self.kind == "HTTPStore" else "opened read-only"
            raise ReadOnlyError(f"store at {self.location} is read-only ({why})")

    # -- reads ---------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        import obstore

        with self._translated(key, "GET"):
            return bytes(obstore.get(self.store, key).bytes())

    def _size_problem(self, key: str, expected_size: int | None) -> CorruptionError | None:
        """After a failed ranged read: a truncated or replaced object is corruption."""
        if expected_size is None:
            return None
        import obstore

        try:
            size = obstore.head(self.store, key)["size"]
        except Exception:
            return None
        if size == expected_size:
            return None
        return CorruptionError(f"{self.location}/{key}: object is {size} bytes, the manifest "
                               f"records {expected_size}")

    @contextlib.contextmanager
    def _ranged(self, key: str, action: str, expected_size: int | None) -> Iterator[None]:
        """:meth:`_translated` for ranged reads: a failure on an object whose size is not the
        one the manifest records is corruption, and so is obstore panicking on a short
        coalesced response (it slices past the end of an object shorter than asked for)."""
        try:
            with self._translated(key, action):
                yield
        except FileNotFoundError:
            raise
        except OSError as err:
            problem = self._size_problem(key, expected_size)
            if problem is not None:
                raise problem from err
            raise
        except BaseException as err:
            if not _is_panic(err):
                raise
            raise self._size_problem(key, expected_size) or CorruptionError(
                f"{self.location}/{key}: object is shorter than the byte ranges requested"
            ) from err

    def get_range(self, key: str, offset: int, length: int, expected_size: int | None = None):
        import obstore

        if length <= 0:
            return memoryview(b"")
        with self._ranged(key, f"GET bytes {offset}-{offset + length - 1}", expected_size):
            result = obstore.get(self.store, key, options={"range": (offset, offset + length)})
            data = result.bytes()
            size = result.meta["size"]
        if expected_size is not None and size != expected_size:
            raise CorruptionError(f"{self.location}/{key}: object is {size} bytes, the "
                                  f"manifest records {expected_size}")
        return memoryview(data)

    def get_ranges(self, key: str, offsets: Sequence[int], lengths: Sequence[int],
                   expected_size: int | None = None) -> list:
        """All ranges of one object in one call; obstore fetches them concurrently."""
        import obstore

        offsets, lengths = [int(o) for o in offsets], [int(n) for n in lengths]
        if not offsets:
            return []
        with self._ranged(key, f"GET {len(offsets)} byte ranges", expected_size):
            blobs = obstore.get_ranges(self.store, key, starts=offsets, lengths=lengths,
                                       coalesce=int(self.options["coalesce"]))
        views = [memoryview(b) for b in blobs]
        for view, offset, length in zip(views, offsets, lengths):
            if len(view) != length:
                raise self._size_problem(key, expected_size) or CorruptionError(
                    f"{self.location}/{key}: {len(view)} bytes at offset {offset}, "
                    f"expected {length}")
        return views

    def list(self, prefix: str = "") -> list[tuple[str, int, float]]:
        import obstore

        out = []
        with self._translated(prefix or "", "LIST"):
            for batch in obstore.list(self.store, prefix=prefix or None):
                for meta in batch:
                    out.append((meta["path"], int(meta["size"]),
                                meta["last_modified"].timestamp()))
        return sorted(out)

    # -- writes --------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        import obstore

        self._check_writable()
        with self._translated(key, "PUT"):
            obstore.put(self.store, key, data)

    def delete(self, key: str) -> None:
        import obstore

        self._check_writable()
        try:
            with self._translated(key, "DELETE"):
                obstore.delete(self.store, key)
        except FileNotFoundError:
            pass

    def spill_path(self, key: str) -> str:
        self._check_writable()
        fd, path = tempfile.mkstemp(prefix="atlas-spill-", suffix=".seg",
                                    dir=self.options["spill_dir"])
        os.close(fd)
        return path

    def publish(self, key: str, path: str) -> None:
        """Upload a finished spill file; obstore switches to multipart above ``part_size``."""
        import obstore

        self._check_writable()
        with self._translated(key, "upload"):
            obstore.put(self.store, key, Path(path), chunk_size=int(self.options["part_size"]),
                        max_concurrency=int(self.options["max_concurrency"]))

    def publish_many(self, items: Sequence[tuple[str, str]],
                     done: Callable[[str], None] | None = None) -> None:
        """Upload several spill files at once (a flush has one per array name written): one
        round trip instead of one per file. Every upload is tried; the first error is raised
        after the others finished, and ``done`` reports each that succeeded."""
        items = list(items)
        if len(items) < 2:
            for key, path in items:
                self.publish(key, path)
                if done is not None:
                    done(key)
            return
        self._check_writable()
        from concurrent.futures import ThreadPoolExecutor

        errors: list[BaseException] = []
        with ThreadPoolExecutor(min(8, len(items))) as pool:
            futures = [(key, pool.submit(self.publish, key, path)) for key, path in items]
            for key, future in futures:
                try:
                    future.result()
                except BaseException as err:  # noqa: BLE001 - re-raised below
                    errors.append(err)
                    continue
                if done is not None:
                    done(key)
        if errors:
            raise errors[0]

    def release_spill(self, key: str, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)

    # -- the manifest --------------------------------------------------------------------------

    def read_manifest(self, key: str):
        import obstore

        try:
            with self._translated(key, "GET"):
                result = obstore.get(self.store, key)
                data = bytes(result.bytes())
        except FileNotFoundError:
            return None
        return data, _token(result.meta)

    def commit(self, key: str, data: bytes, expected):
        self._check_writable()
        if self._lock_root is not None:
            return self._commit_locked(key, data, expected)
        return self._commit_conditional(key, data, expected)

    def _commit_conditional(self, key: str, data: bytes, expected):
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        mode = "create" if expected is None else _update_mode(expected)
        try:
            with self._translated(key, "conditional PUT"):
                try:
                    result = obstore.put(self.store, key, data, mode=mode)
                except (AlreadyExistsError, PreconditionError, FileExistsError) as err:
                    lost = err
                else:
                    lost = None
        except FileNotFoundError as err:
            lost = err  # the manifest this writer read is gone
        if lost is None:
            return _token(result)
        # An earlier attempt of this very commit may have landed although its response was
        # lost (a timeout, a retried request): the same bytes mean nothing was overwritten.
        current = self.read_manifest(key)
        if current is not None and current[0] == bytes(data):
            return current[1]
        raise ConflictError(
            f"store at {self.location} was committed by another writer since this handle read "
            "it; nothing was overwritten. Reopen the store and redo the changes") from lost

    @contextlib.contextmanager
    def commit_lock(self) -> Iterator[None]:
        """On a LocalStore: the directory's lock file (shared with LocalStorage). Object stores
        have no lock; their commits are conditional instead."""
        if self._lock_root is None:
            yield
            return
        self._check_writable()
        with directory_lock(self._lock_root):
            yield

    def _commit_locked(self, key: str, data: bytes, expected):
        """LocalStore cannot PUT conditionally on an e-tag: compare and replace under the
        directory's lock file instead (obstore writes to a temp file and renames)."""
        import obstore

        with self.commit_lock():
            try:
                with self._translated(key, "HEAD"):
                    current = _token(obstore.head(self.store, key))
            except FileNotFoundError:
                current = None
            if (current is None) != (expected is None) or (
                    current is not None and current["e_tag"] != expected["e_tag"]):
                found = self.read_manifest(key)
                if found is not None and found[0] == bytes(data):
                    return found[1]  # an earlier attempt of this very commit landed
                raise ConflictError(
                    f"store at {self.location} was committed by another writer since this "
                    "handle read it; nothing was overwritten. Reopen the store and redo the "
                    "changes")
            with self._translated(key, "PUT"):
                result = obstore.put(self.store, key, data)
        return _token(result)
