"""Object-store storage through obstore: S3, GCS, Azure, HTTP (read-only), local files, memory.

The layout is the same as on a local disk. Segments are written to a local spill file and
uploaded whole when finished (multipart above ``part_size``); the manifest is replaced by one
conditional PUT (``mode="create"`` for a new store, else the e-tag/version the writer read), so a
lost update surfaces as :class:`atlas.ConflictError` and nothing is silently overwritten.
Reads never list: one GET for the manifest, one ranged GET per segment footer, then the byte
ranges of each segment in one concurrent ``get_ranges`` call.

obstore runs every request on one I/O runtime per process whose threads do not survive
``fork()``: a forked child's first request would wait forever. A handle used in another process
than the one that made it reopens its store there (no connection is shared with the parent),
and a process forked from one that had made requests sends its requests to a helper process
started afresh (:class:`_Helper`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import itertools
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import unquote, urlsplit

from atlas.errors import ConflictError, CorruptionError, ReadOnlyError, StaleHandleError
from atlas.storage._base import Storage
from atlas.storage._keys import check_key, check_prefix
from atlas.format.keys import CLAIM_KEY
from atlas.storage._local import directory_lock  # the same lock file: both exclude each other

CLAIM_SECONDS = 5.0  # a claim lapses this long after it was taken (its writer may have died)
CLAIM_POLL_SECONDS = 0.02  # how often a waiting writer reads the claim again (each read is a GET)

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


def _lapsed(claim: tuple, watched: dict[str, float]) -> bool:
    """Whether a claim (owner, until, token) has lapsed: past its time, or watched unchanged for
    as long as a claim holds (its writer's clock may run far ahead of this one's)."""
    first_seen = watched.setdefault(json.dumps(claim[2], sort_keys=True), time.monotonic())
    return claim[1] <= time.time() or time.monotonic() - first_seen > CLAIM_SECONDS


def _update_mode(token: dict) -> dict:
    mode = {k: v for k, v in token.items() if v is not None}
    if not mode:
        raise ConflictError("the manifest this handle read carries neither an e-tag nor a "
                            "version, so it cannot be replaced conditionally")
    return mode


# -- requests ------------------------------------------------------------------------------------
# Each takes the obstore store first and returns plain data (or obstore's zero-copy Bytes), so
# that the helper process of a forked child can run it and send the result back.


def _op_get(store, key: str, byte_range: tuple[int, int] | None = None):
    import obstore

    if byte_range is None:
        result = obstore.get(store, key)
    else:
        result = obstore.get(store, key, options={"range": byte_range})
    return result.bytes(), dict(result.meta)


def _op_get_ranges(store, key: str, starts: list, lengths: list, coalesce: int) -> list:
    import obstore

    return obstore.get_ranges(store, key, starts=starts, lengths=lengths, coalesce=coalesce)


def _op_head(store, key: str) -> dict:
    import obstore

    return dict(obstore.head(store, key))


def _op_list(store, prefix: str | None) -> list[tuple[str, int, float]]:
    import obstore

    return [(meta["path"], int(meta["size"]), meta["last_modified"].timestamp())
            for batch in obstore.list(store, prefix=prefix) for meta in batch]


def _op_put(store, key: str, data, **kwargs) -> dict:
    import obstore

    return dict(obstore.put(store, key, data, **kwargs))


def _op_delete(store, key: str) -> None:
    import obstore

    obstore.delete(store, key)


_OPS = {"get": _op_get, "get_ranges": _op_get_ranges, "head": _op_head, "list": _op_list,
        "put": _op_put, "delete": _op_delete}

# the process whose obstore runtime atlas started; a process forked from it inherits a runtime
# without threads
_runtime_pid: int | None = None


def _pickled(store) -> bytes:
    try:
        return pickle.dumps(store)
    except Exception as err:
        raise OSError(
            f"a {type(store).__name__} used in process {os.getpid()}, forked from the one that "
            f"opened it, cannot be reopened here: it does not pickle ({_first_line(err)}). "
            "Start worker processes with the 'spawn' or 'forkserver' method") from err


def _fresh(store):
    """A new store object of the same configuration: no connection shared with the parent."""
    if type(store).__name__ == "MemoryStore":
        return store  # cannot be pickled; the child has its own copy of the memory
    return pickle.loads(_pickled(store))


# the S3 settings obstore reads from the environment when a store is not given them
_S3_ENVIRONMENT = {
    "endpoint": ("AWS_ENDPOINT", "AWS_ENDPOINT_URL"),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "access_key_id": ("AWS_ACCESS_KEY_ID",),
    "secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
    "virtual_hosted_style_request": ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST",),
}


class _Helper:
    """A fresh interpreter that runs the obstore requests of a forked child (one per child
    process, for all its stores); it ends when the child closes the pipe, i.e. when it exits."""

    _instance: "_Helper | None" = None

    @classmethod
    def get(cls) -> "_Helper":
        helper = cls._instance
        if helper is None or helper.pid != os.getpid():
            helper = cls._instance = cls()
        return helper

    def __init__(self) -> None:
        import atlas

        self.pid = os.getpid()
        self._lock = threading.Lock()
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(atlas.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH"))
                                            if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from atlas.storage._obstore import _serve; _serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)

    def call(self, store_blob: bytes, op: str, args: tuple, kwargs: dict):
        with self._lock:
            try:
                pickle.dump((store_blob, op, args, kwargs), self._proc.stdin, protocol=5)
                self._proc.stdin.flush()
                ok, value = pickle.load(self._proc.stdout)
            except (EOFError, OSError, pickle.UnpicklingError) as err:
                raise OSError(f"the object-store helper process of forked process "
                              f"{os.getpid()} ended ({err!r})") from err
        if ok:
            return value
        raise value


def _serve() -> None:
    """The helper's loop: run each request and reply (True, result) or (False, exception)."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the replies
    requests = sys.stdin.buffer
    stores: dict[bytes, Any] = {}
    while True:
        try:
            store_blob, op, args, kwargs = pickle.load(requests)
        except EOFError:
            return
        try:
            store = stores.get(store_blob)
            if store is None:
                store = stores[store_blob] = pickle.loads(store_blob)
            result = _OPS[op](store, *args, **kwargs)
            if op == "get":
                result = (bytes(result[0]), result[1])
            elif op == "get_ranges":
                result = [bytes(b) for b in result]
            reply = (True, result)
        except BaseException as err:  # noqa: BLE001 - sent back and raised in the child
            reply = (False, err)
        try:
            data = pickle.dumps(reply, protocol=5)
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            data = pickle.dumps((False, OSError(f"{type(reply[1]).__name__}: {reply[1]}")))
        replies.write(data)
        replies.flush()


# Spill files (local copies of pending segments) -> pid of the process that made them. Removing
# one is always safe (the uploaded object is what counts), so each process removes what is left
# of its own when it exits, whichever way Python sees: a dropped handle's finalizer, atexit, and
# multiprocessing's own exit (fork and forkserver children end with os._exit, no atexit).
_spills: dict[str, int] = {}
_spills_pid: int | None = None  # the process that registered the exit hooks


def _track_spill(path: str) -> None:
    global _spills_pid
    pid = os.getpid()
    if _spills_pid != pid:
        import atexit
        from multiprocessing import util

        atexit.register(_remove_own_spills)
        util.Finalize(None, _remove_own_spills, exitpriority=0)
        _spills_pid = pid
    _spills[path] = pid


def _forget_spill(path: str) -> bool:
    """Forget a spill file; False when another process (a forking parent) made it."""
    if _spills.get(path, os.getpid()) != os.getpid():
        return False
    _spills.pop(path, None)
    return True


def _remove_own_spills() -> None:
    for path, pid in list(_spills.items()):
        if pid == os.getpid() and _forget_spill(path):
            with contextlib.suppress(OSError):
                os.remove(path)


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


def _check_url(url: str) -> None:
    """ValueError for a store URL whose path obstore would quietly rewrite: it drops a query
    string and a fragment, and resolves ``.`` and ``..`` segments, so such a URL would open
    another prefix than the one written; URL parsing drops tabs and line breaks."""
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError(f"store URL {url!r} holds a control character (a tab or line break?); "
                         "expected scheme://bucket/path of printable characters")
    parts = urlsplit(url)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"store URL {url!r} has a query string or fragment; expected "
                         "scheme://bucket/path with neither")
    segments = [unquote(segment) for segment in parts.path.split("/")]
    if any(segment in (".", "..") for segment in segments):
        raise ValueError(f"store URL {url!r} has a '.' or '..' path segment; expected a plain "
                         "path (scheme://bucket/a/b)")


# the least each size option takes (S3 refuses multipart parts under 5 MiB but the last)
_LEAST = {"part_size": 5 << 20, "max_concurrency": 1, "coalesce": 0}


def _check_options(options: dict[str, Any]) -> None:
    """The adapter's own options, checked when the store is opened (a bad one failed deep
    inside a later flush or read, naming nothing)."""
    for name, least in _LEAST.items():
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not least <= value < 2**40):
            raise ValueError(f"store option {name} must be an int >= {least} (bytes or a "
                             f"count), got {value!r}")
    spill = options.get("spill_dir")
    if spill is not None and not isinstance(spill, (str, os.PathLike)):
        raise TypeError(f"store option spill_dir must be a folder path, got "
                        f"{type(spill).__name__} {spill!r}")


class ObjectStorage(Storage):
    """An obstore store (or a prefix of one) holding an atlas store."""

    remote = True

    def __init__(self, store: Any, read_only: bool = False, *, url: str | None = None,
                 **options: Any):
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} for an obstore store "
                            f"{type(store).__name__}; accepted: {sorted(DEFAULTS)}")
        _check_options(options)
        self.store = store
        self.kind = type(store).__name__
        # HTTP has no conditional writes; an HTTP store is always read-only
        self.read_only = bool(read_only) or self.kind == "HTTPStore"
        self.options = {**DEFAULTS, **options}
        self._url = url
        self._ref: _Ref | None = None  # this store's registry entry, once described
        self._lock_root = self._local_root() if self.kind == "LocalStore" else None
        self._claimant = uuid.uuid4().hex  # who this handle is in a claim (commit_turn)
        self._last_commit = -math.inf  # monotonic time of its last commit
        self._pid = os.getpid()  # the process self.store was made for
        self._blob: bytes | None = None  # the pickled store, for the helper of a forked child

    # -- construction and description ----------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, read_only: bool = False, **options: Any) -> "ObjectStorage":
        """Open ``s3://``, ``gs://``, ``az://``, ``http(s)://``, ``file://`` or ``memory://``
        URLs; options not of this adapter (region, endpoint, credentials, client_options, ...)
        go to ``obstore.store.from_url``."""
        from obstore.store import from_url

        _check_url(url)
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
        return self._url if self._url is not None else self._store_location()

    def _store_location(self) -> str:
        """The store's location from the store object itself: one text for every URL that
        names it (a trailing slash, s3a://)."""
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

    def _call(self, op: str, *args: Any, **kwargs: Any):
        """Run one obstore request (``_OPS[op]``) in a way that works in this process."""
        global _runtime_pid
        pid = os.getpid()
        if pid != self._pid:  # a handle forked or passed to another process: reopen here
            self.store, self._pid = _fresh(self.store), pid
        if _runtime_pid not in (None, pid) and self.kind != "MemoryStore":
            # this process was forked from one whose obstore runtime was running: its
            # requests would never complete here
            if self._blob is None:
                self._blob = _pickled(self.store)
            return _Helper.get().call(self._blob, op, args, kwargs)
        if _runtime_pid is None:
            _runtime_pid = pid
        return _OPS[op](self.store, *args, **kwargs)

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
            if "NoSuchBucket" in str(err):  # the object's whole bucket is missing
                bucket = self.store.config.get("bucket", "?") if self.kind == "S3Store" else "?"
                raise FileNotFoundError(f"{where}: bucket {bucket!r} does not exist "
                                        f"({action})") from err
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
        check_key(key)
        with self._translated(key, "GET"):
            return bytes(self._call("get", key)[0])

    def _size_problem(self, key: str, expected_size: int | None) -> CorruptionError | None:
        """After a failed ranged read: a truncated or replaced object is corruption."""
        if expected_size is None:
            return None
        try:
            size = self._call("head", key)["size"]
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
        except FileNotFoundError as err:
            if expected_size is None:
                raise
            raise StaleHandleError(
                f"{self.location}/{key}: object is gone. If another handle compacted the "
                "store since this one opened it, the object was deleted after its grace period: "
                "reopen the store (Atlas.open) to read the current commit; otherwise the store "
                "lost it (verify() reports it)") from err
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
        check_key(key)
        if length <= 0:
            return memoryview(b"")
        with self._ranged(key, f"GET bytes {offset}-{offset + length - 1}", expected_size):
            data, meta = self._call("get", key, (offset, offset + length))
            size = meta["size"]
        if expected_size is not None and size != expected_size:
            raise CorruptionError(f"{self.location}/{key}: object is {size} bytes, the "
                                  f"manifest records {expected_size}")
        return memoryview(data)

    def get_ranges(self, key: str, offsets: Sequence[int], lengths: Sequence[int],
                   expected_size: int | None = None) -> list:
        """All ranges of one object in one call; obstore fetches them concurrently."""
        check_key(key)
        offsets, lengths = [int(o) for o in offsets], [int(n) for n in lengths]
        if not offsets:
            return []
        with self._ranged(key, f"GET {len(offsets)} byte ranges", expected_size):
            blobs = self._call("get_ranges", key, offsets, lengths,
                               int(self.options["coalesce"]))
        views = [memoryview(b) for b in blobs]
        for view, offset, length in zip(views, offsets, lengths):
            if len(view) != length:
                raise self._size_problem(key, expected_size) or CorruptionError(
                    f"{self.location}/{key}: {len(view)} bytes at offset {offset}, "
                    f"expected {length}")
        return views

    def list(self, prefix: str = "") -> list[tuple[str, int, float]]:
        check_prefix(prefix)
        if self.kind == "HTTPStore":  # obstore would try WebDAV, which few servers answer
            raise NotImplementedError(
                f"{self.location}: a store read over plain HTTP cannot list its files, which "
                "history(), tags(), usage(), verify() and opening an earlier version by number "
                "or time need; over HTTP, read the latest version or a tagged one, or open the "
                "store by its object-store URL (s3://, gs://, az://)")
        with self._translated(prefix or "", "LIST"):
            return sorted(self._call("list", prefix or None))

    # -- writes --------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        self._check_writable()
        with self._translated(key, "PUT"):
            self._call("put", key, bytes(data))

    def delete(self, key: str) -> None:
        check_key(key)
        self._check_writable()
        try:
            with self._translated(key, "DELETE"):
                self._call("delete", key)
        except FileNotFoundError:
            pass

    def spill_path(self, key: str) -> str:
        check_key(key)
        self._check_writable()
        fd, path = tempfile.mkstemp(prefix=self._spill_prefix(), suffix=".seg",
                                    dir=self.options["spill_dir"])
        os.close(fd)
        _track_spill(path)
        return path

    def publish(self, key: str, path: str) -> None:
        """Upload a finished spill file; obstore switches to multipart above ``part_size``."""
        check_key(key)
        self._check_writable()
        with self._translated(key, "upload"):
            self._call("put", key, Path(path), chunk_size=int(self.options["part_size"]),
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
        self.discard(key, path)

    def discard(self, key: str, path: str) -> None:
        # only the process that created a spill file removes it: a forked child exiting must
        # not take a pending segment away from its parent
        if _forget_spill(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    # -- leftovers of crashed writers -----------------------------------------------------------

    def _spill_prefix(self) -> str:
        """Spill files carry a digest of the store's location, so that a sweep of this store
        finds its own crashed writers' files (under whichever URL they opened it) and no
        other store's."""
        tag = hashlib.blake2b(self._store_location().encode("utf-8"), digest_size=6).hexdigest()
        return f"atlas-spill-{tag}-"

    def _stale_spills(self) -> list[tuple[str, float]]:
        """(path, mtime) of this store's spill files that no live writer holds (a writer keeps a
        shared lock on its spill file until it is committed or discarded)."""
        pattern = os.path.join(self.options["spill_dir"] or tempfile.gettempdir(),
                               glob.escape(self._spill_prefix()) + "*.seg")
        found = []
        for path in glob.glob(pattern):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                found.append((path, os.fstat(fd).st_mtime))
            except OSError:
                pass  # a live writer's
            finally:
                os.close(fd)
        return found

    def _s3_client(self):
        """A boto3 client for what obstore cannot do (list and abort multipart uploads), or
        None: not an S3 store, or boto3 not installed."""
        if self.kind != "S3Store":
            return None
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            return None
        config = {k.lower().removeprefix("aws_"): v for k, v in self.store.config.items()}
        # what the store was not given it takes from the environment, as obstore does (else
        # the listing would go to AWS itself, not to the endpoint the store talks to)
        for key, names in _S3_ENVIRONMENT.items():
            found = next((os.environ[n] for n in names if os.environ.get(n)), None)
            if config.get(key) is None and found is not None:
                config[key] = found
        # obstore's default is path-style requests
        virtual = str(config.get("virtual_hosted_style_request", "false")).lower() == "true"
        return boto3.client(
            "s3", endpoint_url=config.get("endpoint"), region_name=config.get("region"),
            aws_access_key_id=config.get("access_key_id"),
            aws_secret_access_key=config.get("secret_access_key"),
            aws_session_token=config.get("session_token") or config.get("token"),
            config=Config(s3={"addressing_style": "virtual" if virtual else "path"}))

    def _bucket_prefix(self) -> tuple[str, str]:
        prefix = str(getattr(self.store, "prefix", None) or "").strip("/")
        return self.store.config.get("bucket"), f"{prefix}/" if prefix else ""

    def _uploads(self) -> list[tuple[str, str, float]]:
        """(key, upload id, initiated) of the incomplete multipart uploads of segments and
        catalog parts (format version 2 uploads both through spill files)."""
        client = self._s3_client()
        if client is None:
            return []
        bucket, prefix = self._bucket_prefix()
        found = []
        try:
            for folder in ("segments/", "catalog/"):
                for page in client.get_paginator("list_multipart_uploads").paginate(
                        Bucket=bucket, Prefix=f"{prefix}{folder}"):
                    for upload in page.get("Uploads", []):
                        found.append((upload["Key"][len(prefix):], upload["UploadId"],
                                      upload["Initiated"].timestamp()))
        except Exception as err:  # noqa: BLE001 - a sweep must not fail a verify or compact
            warnings.warn(f"{self.location}: cannot list incomplete multipart uploads "
                          f"({_first_line(err)})", RuntimeWarning, stacklevel=3)
            return []
        return found

    def leftovers(self) -> list[tuple[str, float]]:
        now = time.time()
        found = [(f"{self.location}/{key}: incomplete multipart upload {upload_id}",
                  now - initiated) for key, upload_id, initiated in self._uploads()]
        found += [(f"{path}: spill file of a writer that did not finish", now - mtime)
                  for path, mtime in self._stale_spills()]
        return found

    def remove_leftovers(self, grace: float) -> list[str]:
        now = time.time()
        removed = []
        if not self.read_only:
            client = None
            for key, upload_id, initiated in self._uploads():
                if now - initiated < grace:
                    continue  # a live writer's upload, perhaps
                client = client or self._s3_client()
                bucket, prefix = self._bucket_prefix()
                try:
                    client.abort_multipart_upload(Bucket=bucket, Key=prefix + key,
                                                  UploadId=upload_id)
                except Exception:  # noqa: BLE001 - left for the next sweep
                    continue
                removed.append(f"{self.location}/{key}: incomplete multipart upload {upload_id}")
        for path, mtime in self._stale_spills():
            if now - mtime >= grace:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                    removed.append(path)
        return removed

    # -- the manifest --------------------------------------------------------------------------

    def read_manifest(self, key: str):
        check_key(key)
        try:
            with self._translated(key, "GET"):
                data, meta = self._call("get", key)
        except FileNotFoundError:
            return None
        return bytes(data), _token(meta)

    def commit(self, key: str, data: bytes, expected):
        check_key(key)
        self._check_writable()
        if self._lock_root is not None:
            return self._commit_locked(key, data, expected)
        self._wait_out_claim()
        token = self._commit_conditional(key, data, expected)
        self._last_commit = time.monotonic()
        return token

    def _commit_conditional(self, key: str, data: bytes, expected):
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        mode = "create" if expected is None else _update_mode(expected)
        try:
            with self._translated(key, "conditional PUT"):
                try:
                    result = self._call("put", key, bytes(data), mode=mode)
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

    # -- the turn of a writer that lost a race (see Storage.commit_turn) -----------------------
    #
    # Object stores have no lock: a writer that lost a race takes its turn by creating the
    # object CLAIM_KEY (a conditional create) naming itself and when the claim lapses, and
    # deletes it after its next try. A writer that has committed within CLAIM_SECONDS reads the
    # claim before each commit and waits while another's holds; one that commits seldom races
    # as before (it cannot starve anyone). A claim whose writer died lapses. Nothing rests on
    # the claim but fairness: every commit stays a conditional PUT.

    def commit_turn(self) -> contextlib.AbstractContextManager:
        if self._lock_root is not None:
            return self.commit_lock()
        return self._claimed()

    @contextlib.contextmanager
    def _claimed(self) -> Iterator[None]:
        self._check_writable()
        self._take_claim()
        try:
            yield
        finally:
            self._drop_claim()

    def _take_claim(self) -> None:
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        mode: Any = "create"
        watched: dict[str, float] = {}
        while True:
            body = json.dumps({"owner": self._claimant,
                               "until": time.time() + CLAIM_SECONDS}).encode()
            with self._translated(CLAIM_KEY, "conditional PUT"):
                try:
                    self._call("put", CLAIM_KEY, body, mode=mode)
                    return
                except (AlreadyExistsError, PreconditionError, FileExistsError,
                        FileNotFoundError):
                    pass
            held = self._claim()
            if held is None:
                mode = "create"  # released meanwhile
            elif _lapsed(held, watched):
                mode = _update_mode(held[2])  # replace that very claim
            else:
                mode = "create"
                time.sleep(CLAIM_POLL_SECONDS)

    def _drop_claim(self) -> None:
        held = self._claim()
        if held is not None and held[0] == self._claimant:
            with contextlib.suppress(FileNotFoundError):
                with self._translated(CLAIM_KEY, "DELETE"):
                    self._call("delete", CLAIM_KEY)

    def _claim(self) -> tuple[str | None, float, dict] | None:
        """(owner, time it lapses, version token) of the claim, or None when there is none; a
        claim that does not decode has lapsed."""
        try:
            with self._translated(CLAIM_KEY, "GET"):
                data, meta = self._call("get", CLAIM_KEY)
        except FileNotFoundError:
            return None
        try:
            doc = json.loads(bytes(data))
            owner, until = str(doc["owner"]), float(doc["until"])
        except (ValueError, TypeError, KeyError):
            return None, 0.0, _token(meta)
        return owner, until if math.isfinite(until) else 0.0, _token(meta)

    def _wait_out_claim(self) -> None:
        """Before a commit of a writer that commits often: wait while another holds the turn."""
        if time.monotonic() - self._last_commit > CLAIM_SECONDS:
            return
        watched: dict[str, float] = {}
        while True:
            held = self._claim()
            if held is None or held[0] == self._claimant or _lapsed(held, watched):
                return
            time.sleep(CLAIM_POLL_SECONDS)

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
        with self.commit_lock():
            try:
                with self._translated(key, "HEAD"):
                    current = _token(self._call("head", key))
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
                result = self._call("put", key, bytes(data))
        return _token(result)
