"""Local-filesystem storage: mmap reads, write-temp + fsync + rename, flock-guarded commits.

Paths inside the store are walked from the root one directory at a time without following a
link (``O_NOFOLLOW``, ``dir_fd``), and only regular files are opened: a symlinked folder or
segment, a FIFO or a device inside a store is reported as damage, never followed or read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
import re
import stat
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Iterator

from atlas._pools import io_pool
from atlas.errors import (
    ConflictError,
    CorruptionError,
    ReadOnlyError,
    StaleHandleError,
)
from atlas.storage._base import TEMP_SUFFIX, Storage
from atlas.storage._keys import (
    MAX_COMPONENT_BYTES,
    MAX_KEY_BYTES,
    check_key,
    check_prefix,
    key_problem,
)

LOCK_NAME = ".atlas.lock"
PUBLISH_THREADS = 16  # concurrent fsyncs when a flush publishes many segments
MAP_CHECK_SECONDS = 1.0  # how often a handle looks for mapped files that were deleted
SMALL_FILE_BYTES = 64 << 10  # files up to this size are read into memory instead of mapped

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# a file name of these letters (not starting with a dot) is a valid key component
_ORDINARY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")
_UNSTATED = os.stat_result((stat.S_IFREG, 0, 0, 0, 0, 0, 0, 0, 0, 0))  # a file, size 0, time 0
# O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused right after, by fstat)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def _read_whole(fd: int, size: int, path: str) -> bytes:
    """The ``size`` bytes of an open file; CorruptionError when it holds fewer (it shrank)."""
    data = os.pread(fd, size, 0)
    while len(data) < size:
        more = os.pread(fd, size - len(data), len(data))
        if not more:
            raise CorruptionError(f"{path}: file ends after {len(data)} of its {size} bytes")
        data += more
    return data


def _fsync_path(path: str) -> None:
    """fsync a file or a directory by path."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lost(path: str, err: OSError) -> OSError:
    """A fresh error for a spill file whose fsync failed (raised again by every publish)."""
    return OSError(err.errno, f"{err.strerror}: fsync of the pending file {path} failed; its "
                   "data may not be on disk: this handle's unflushed writes cannot be committed "
                   "(open the store again and write them again)")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISREG, "regular file"), (stat.S_ISLNK, "symbolic link"),
                       (stat.S_ISDIR, "directory"),
                       (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def _not_regular(path: str, mode: int) -> CorruptionError:
    if stat.S_ISLNK(mode):
        return CorruptionError(f"{path}: is a symbolic link; atlas never follows links inside a "
                               "store (replace it by the file itself)")
    return CorruptionError(f"{path}: is a {_kind(mode)}, not a regular file")


def _name_in_full(err: OSError, root: str, parts: list[str]) -> None:
    """An error of a call relative to a folder's descriptor names the file as the call did
    (``[Errno 13] Permission denied: 'segments'``): name it by its whole path instead."""
    for attr in ("filename", "filename2"):
        name = getattr(err, attr)
        if isinstance(name, str) and name in parts:
            setattr(err, attr, os.path.join(root, *parts[: parts.index(name) + 1]))


@contextlib.contextmanager
def read_only_as_error(where: str) -> Iterator[None]:
    """A write refused by a read-only file system (EROFS) as :class:`ReadOnlyError`."""
    try:
        yield
    except OSError as err:
        if err.errno != errno.EROFS:
            raise
        raise ReadOnlyError(f"store at {where} is on a read-only file system "
                            f"({err.strerror}); open it with read_only=True") from err


_held_locks = threading.local()  # per thread: {store root: how many times it holds its lock}


@contextlib.contextmanager
def directory_lock(root: str) -> Iterator[None]:
    """Hold the exclusive ``flock`` of a store directory's lock file, which serialises commits
    (and orphan sweeps) of every handle on this machine, whichever backend opened the store.
    A thread may take it again while it holds it (a rebase attempt holds it around the commit,
    which takes it too); a second ``flock`` of the file would wait for the first forever."""
    held = getattr(_held_locks, "roots", None)
    if held is None:
        held = _held_locks.roots = {}
    root = os.path.abspath(root)
    if held.get(root):
        held[root] += 1
        try:
            yield
        finally:
            held[root] -= 1
        return
    path = os.path.join(root, LOCK_NAME)
    with read_only_as_error(root):
        os.makedirs(root, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_CLOEXEC, 0o666)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise _not_regular(path, stat.S_IFLNK) from None
            raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held[root] = 1
        try:
            yield
        finally:
            del held[root]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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
        # key -> (mapping, (st_dev, st_ino) of the file mapped)
        self._maps: dict[str, tuple[mmap.mmap | bytes, tuple[int, int]]] = {}
        self._maps_lock = threading.Lock()
        self._maps_checked = time.monotonic()
        self._spills: dict[str, int] = {}  # spill path -> pid of the process that created it
        # spill path -> (pid, its early fsync in flight) (see sync_early), and the spill
        # files an fsync failed for (see _fsync_spill)
        self._early_syncs: dict[str, tuple[int, Future]] = {}
        self._failed_syncs: dict[str, OSError] = {}

    @property
    def location(self) -> str:
        return self.root

    def describe(self) -> tuple:
        return ("local", self.root, self.read_only)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *check_key(key).split("/"))

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(f"store at {self.root} is read-only")

    # -- walking the tree without following links -----------------------------------------------

    @contextlib.contextmanager
    def _parent(self, key: str, create: bool = False) -> Iterator[tuple[int, str]]:
        """(descriptor of the directory holding ``key``, file name), reached from the root one
        component at a time without following a link (``create``: making missing folders)."""
        parts = check_key(key).split("/")
        if create:
            os.makedirs(self.root, exist_ok=True)  # the root is the caller's: links allowed
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for depth, part in enumerate(parts[:-1]):
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o777, dir_fd=fd)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as err:
                    if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    path = os.path.join(self.root, *parts[: depth + 1])
                    mode = os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode
                    raise _not_regular(path, mode) if stat.S_ISLNK(mode) else CorruptionError(
                        f"{path}: is a {_kind(mode)} where a folder belongs") from None
                os.close(fd)
                fd = child
            yield fd, parts[-1]
        except OSError as err:
            _name_in_full(err, self.root, parts)
            raise
        finally:
            os.close(fd)

    def _open_file(self, key: str) -> int:
        """A read descriptor of the regular file at ``key``; CorruptionError for anything else
        (a link, a FIFO, a device, a folder), FileNotFoundError when there is nothing."""
        with self._parent(key) as (dir_fd, name):
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
            if not stat.S_ISREG(mode):
                raise _not_regular(self._path(key), mode)
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
            except OSError as err:  # replaced meanwhile
                if err.errno not in (errno.ELOOP, errno.ENXIO):
                    raise
                mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
                raise _not_regular(self._path(key), mode) from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise _not_regular(self._path(key), mode)
        return fd

    def _walk(self, prefix: str, sizes: bool = True
              ) -> tuple[list[tuple[str, int, float]], list[tuple[str, str]]]:
        """(regular files as (key, size, mtime), everything else as (key, what it is)) under
        ``prefix``, descending only into real folders. ``sizes`` False: size and mtime 0, and
        no stat of a file whose type the directory tells."""
        files: list[tuple[str, int, float]] = []
        odd: list[tuple[str, str]] = []

        def scan(fd: int, rel: str) -> None:
            with os.scandir(fd) as it:
                entries = list(it)
            ascii_rel = rel.isascii()  # then a key's length in characters is its byte length
            for entry in entries:
                key = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    if sizes or not entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                    else:
                        st = _UNSTATED
                except FileNotFoundError:
                    continue
                # names of the usual letters pass the grammar at once (every listing checks
                # every name; a directory of version records holds thousands)
                if not (ascii_rel and _ORDINARY.fullmatch(entry.name)
                        and len(key) <= MAX_KEY_BYTES) and key_problem(key) is not None:
                    odd.append((key, "file whose name is outside the key grammar"))
                elif stat.S_ISDIR(st.st_mode):
                    try:
                        sub = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                    except (FileNotFoundError, NotADirectoryError):
                        continue
                    try:
                        scan(sub, key)
                    finally:
                        os.close(sub)
                elif stat.S_ISREG(st.st_mode):
                    files.append((key, st.st_size, st.st_mtime))
                else:
                    odd.append((key, _kind(st.st_mode)))

        try:
            if not prefix:
                fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            else:
                with self._parent(prefix) as (dir_fd, name):
                    try:
                        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                    except OSError as err:
                        if err.errno != errno.ELOOP:
                            raise
                        raise _not_regular(self._path(prefix), stat.S_IFLNK) from None
        except (FileNotFoundError, NotADirectoryError):
            return files, odd
        try:
            scan(fd, prefix)
        finally:
            os.close(fd)
        return sorted(files), sorted(odd)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        fd = self._open_file(key)
        with open(fd, "rb", closefd=True) as f:
            return f.read()

    def _mapping(self, key: str, expected_size: int | None):
        if time.monotonic() - self._maps_checked > MAP_CHECK_SECONDS:
            self._drop_deleted_maps()
        found = self._maps.get(key)
        if found is not None:
            return found[0]
        with self._maps_lock:
            found = self._maps.get(key)
            if found is not None:
                return found[0]
            path = self._path(key)
            try:
                fd = self._open_file(key)
            except FileNotFoundError as err:
                if expected_size is None:
                    raise
                raise StaleHandleError(
                    f"{path}: file is gone. If another handle compacted the store since "
                    "this one opened it, the file was deleted after its grace period: reopen the "
                    "store (Atlas.open) to read the current commit; otherwise the store lost it "
                    "(verify() reports it)") from err
            try:
                st = os.fstat(fd)
                if expected_size is not None and st.st_size != expected_size:
                    raise CorruptionError(f"{path}: file is {st.st_size} bytes, the manifest "
                                          f"records {expected_size}")
                # a small file (a flush's part or segment) is read whole: cheaper than setting
                # up a mapping; an empty file cannot be mapped, and has no chunks anyway
                mapping = _read_whole(fd, st.st_size, path) if st.st_size <= SMALL_FILE_BYTES \
                    else mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            finally:
                os.close(fd)
            self._maps[key] = (mapping, (st.st_dev, st.st_ino))
            return mapping

    def _drop_deleted_maps(self) -> None:
        """Forget mappings of files deleted (or replaced) since they were mapped, so that a
        long-lived handle does not keep their disk space allocated; a later read of such a key
        finds the file gone (StaleHandleError)."""
        self._maps_checked = time.monotonic()
        for key, (_mapping, identity) in list(self._maps.items()):
            try:
                st = os.stat(self._path(key), follow_symlinks=False)
                gone = (st.st_dev, st.st_ino) != identity
            except OSError:
                gone = True
            if gone:
                self._maps.pop(key, None)  # unmapped once no view of it is left

    def get_range(self, key: str, offset: int, length: int, expected_size: int | None = None):
        mapping = self._mapping(key, expected_size)
        return memoryview(mapping)[offset : offset + length]

    def list(self, prefix: str = "") -> list[tuple[str, int, float]]:
        """Regular files only: links and special files are never listed (nor followed), so
        nothing acts on them; :meth:`layout_problems` reports them."""
        return self._walk(check_prefix(prefix))[0]

    def keys(self, prefix: str = "") -> list[str]:
        return [key for key, _size, _mtime in self._walk(check_prefix(prefix), sizes=False)[0]]

    def layout_problems(self) -> list[str]:
        return [f"{os.path.join(self.root, key)}: is a {what}; a store holds only regular files "
                "and folders (atlas never follows links)" for key, what in self._walk("")[1]]

    # -- writes ---------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self._check_writable()
        with read_only_as_error(self.root), self._parent(key, create=True) as (dir_fd, name):
            # <name>.<32 hex>.tmp, the name cut short where the whole would pass 255 bytes
            base = name.encode("utf-8")[: MAX_COMPONENT_BYTES - 38].decode("utf-8", "ignore")
            tmp = f"{base}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
            fd = os.open(tmp, _CREATE_FLAGS | os.O_EXCL, 0o666, dir_fd=dir_fd)
            try:
                with open(fd, "wb", closefd=False) as f:
                    f.write(data)
                os.fsync(fd)
            finally:
                os.close(fd)
            # by path (the folders were just walked without links): tests hook os.replace(src, dst)
            path = self._path(key)
            os.replace(os.path.join(os.path.dirname(path), tmp), path)
            os.fsync(dir_fd)

    def delete(self, key: str) -> None:
        """Remove the directory entry itself: a link is removed, never what it points to."""
        self._check_writable()
        self._maps.pop(key, None)
        with contextlib.suppress(FileNotFoundError), read_only_as_error(self.root), \
                self._parent(key) as (dir_fd, name):
            os.unlink(name, dir_fd=dir_fd)

    def spill_path(self, key: str) -> str:
        # written in place: the file is invisible to readers until a manifest references it.
        # Created here, through real folders only, so the writer never creates through a link.
        self._check_writable()
        with read_only_as_error(self.root), self._parent(key, create=True) as (dir_fd, name):
            fd = os.open(name, _CREATE_FLAGS | os.O_NONBLOCK, 0o666, dir_fd=dir_fd)
        try:
            mode = os.fstat(fd).st_mode
        finally:
            os.close(fd)
        path = self._path(key)
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        self._spills[path] = os.getpid()
        return path

    def discard(self, key: str, path: str) -> None:
        # only the process that created a spill file removes it: a forked child exiting must
        # not take a pending segment away from its parent
        if self._spills.get(path, os.getpid()) != os.getpid():
            return
        self._spills.pop(path, None)
        self._early_syncs.pop(path, None)
        self._failed_syncs.pop(path, None)
        super().discard(key, path)

    def release_spill(self, key: str, path: str) -> None:
        self._spills.pop(path, None)
        self._early_syncs.pop(path, None)

    def publish(self, key: str, path: str) -> None:
        check_key(key)
        with read_only_as_error(self.root):
            self._fsync_spill(path)
            for directory in _containing_dirs([path], self.root):
                _fsync_path(directory)

    def sync_early(self, paths) -> None:
        """fsync the spill files on the I/O pool while the flush builds its catalog part: the
        disk writes most of the data meanwhile, and publish's own fsync finds little left.
        Best effort: a file that cannot be opened now is simply fsynced by publish. A file whose
        earlier sync has finished is synced again (it may have grown since)."""
        for path in paths:
            early = self._early_syncs.get(path)
            if early is not None and not early[1].done() or path in self._failed_syncs:
                continue
            try:
                future = io_pool().submit(self._fsync_early, path)
            except RuntimeError:  # no thread to run it (shutting down, or none can start)
                continue
            self._early_syncs[path] = (os.getpid(), future)

    def _fsync_early(self, path: str) -> None:
        """The pool's part of :meth:`sync_early`. The descriptor is its own: one opened before
        the submit was closed twice when the pool queued the job and then failed to start a
        thread for it (the second close could hit another file's reused descriptor)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # publish fsyncs it
        self._fsync_fd(path, fd)

    def _fsync_fd(self, path: str, fd: int) -> None:
        """fsync a spill file's descriptor; a failure sticks to the path (see _fsync_spill)."""
        try:
            os.fsync(fd)
        except OSError as err:
            self._failed_syncs.setdefault(path, err)
            raise _lost(path, err) from None
        finally:
            os.close(fd)

    def _fsync_spill(self, path: str) -> None:
        """fsync a spill file before it is committed. Once an fsync of it has failed, every
        publish of it fails: after an EIO the kernel may have dropped the pages that failed,
        and a later fsync can report success without them. Only fsync's own errors stick (a
        file that cannot be opened, out of descriptors say, raises that error this time)."""
        early = self._early_syncs.pop(path, None)
        if early is not None and early[0] == os.getpid():  # a forked child has no such thread
            try:
                early[1].result()
            except OSError:
                pass  # recorded in _failed_syncs
        failed = self._failed_syncs.get(path)
        if failed is not None:
            raise _lost(path, failed)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._fsync_fd(path, fd)

    def publish_many(self, items, done=None) -> None:
        """fsync every file, then every directory once, from a thread pool: a flush of a wide
        dataset publishes hundreds of small segments and the fsyncs overlap well."""
        if len(items) < 2:
            return super().publish_many(items, done)
        from concurrent.futures import ThreadPoolExecutor

        for key, _ in items:
            check_key(key)
        paths = [path for _, path in items]
        dirs = _containing_dirs(paths, self.root)
        with read_only_as_error(self.root), \
                ThreadPoolExecutor(min(PUBLISH_THREADS, len(paths))) as pool:
            list(pool.map(self._fsync_spill, paths))
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
        """Delete ``key`` unless a writer holds its shared lock (a pending segment). Anything
        but a regular file is left alone (``layout_problems`` reports it)."""
        self._check_writable()
        try:
            fd = self._open_file(key)
        except (FileNotFoundError, CorruptionError):
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self._maps.pop(key, None)
            with read_only_as_error(self.root), self._parent(key) as (dir_fd, name):
                # still the file locked above (not one a writer created at that name since)
                if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino != \
                        os.fstat(fd).st_ino:
                    return False
                os.unlink(name, dir_fd=dir_fd)
            return True
        finally:
            os.close(fd)

    def close(self) -> None:
        self._maps.clear()
