"""The storage interface: bytes by key. Nothing above this layer knows which backend it has."""

from __future__ import annotations

import abc
import contextlib
from typing import Any, Callable, Iterator, Sequence

# a backend writing a value through a temporary file names it <key>.<random>.tmp; a crash can
# leave one behind, which the orphan sweep (under the commit lock) removes
TEMP_SUFFIX = ".tmp"


class Storage(abc.ABC):
    """Keys are '/'-separated relative paths (the grammar of :func:`atlas.storage.check_key`,
    which every backend enforces). Values are immutable once written, except the
    manifest, which only ever changes through :meth:`commit`."""

    read_only: bool = False
    # True when remove_unused() can tell a live writer's unreferenced file from a leftover
    locks_spills: bool = False
    # True when a request waits on a round trip (an object store): readers then keep several
    # in flight; local files are read one after the other, which is faster than threads
    remote: bool = False

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Whole value; raises FileNotFoundError when the key does not exist."""

    @abc.abstractmethod
    def get_range(self, key: str, offset: int, length: int, expected_size: int | None = None):
        """A bytes-like slice of a value; ``expected_size`` lets a backend detect truncation."""

    def get_ranges(self, key: str, offsets: Sequence[int], lengths: Sequence[int],
                   expected_size: int | None = None) -> list:
        """Several slices of one value; backends override this to fetch them concurrently."""
        return [self.get_range(key, o, n, expected_size) for o, n in zip(offsets, lengths)]

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Write a value atomically: readers see the old value or the new one, never a part."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove a value; a missing key is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[tuple[str, int, float]]:
        """(key, size, modified time as a POSIX timestamp) of every value under ``prefix``."""

    def keys(self, prefix: str = "") -> list[str]:
        """The keys :meth:`list` gives, without their sizes and times (which a local store
        reads file by file)."""
        return [key for key, _size, _mtime in self.list(prefix)]

    @abc.abstractmethod
    def spill_path(self, key: str) -> str:
        """A local file path where a new immutable value for ``key`` may be written."""

    @abc.abstractmethod
    def publish(self, key: str, path: str) -> None:
        """Make the finished file at ``path`` (from :meth:`spill_path`) durable under ``key``."""

    def sync_early(self, paths: Sequence[str]) -> None:
        """Spill files at ``paths`` hold most of what they will: a backend may start making
        them durable now, in the background, so that :meth:`publish` waits less later."""

    def publish_many(self, items: Sequence[tuple[str, str]],
                     done: Callable[[str], None] | None = None) -> None:
        """:meth:`publish` each (key, path); ``done(key)`` once that one is durable. Backends
        may override it to publish concurrently (one flush publishes a file per array name)."""
        for key, path in items:
            self.publish(key, path)
            if done is not None:
                done(key)

    def release_spill(self, key: str, path: str) -> None:
        """The published value is committed; a backend that copied the spill file drops it."""

    def discard(self, key: str, path: str) -> None:
        """Drop a spill file that will never be committed."""
        import os

        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def remove_unused(self, key: str) -> bool:
        """Delete an unreferenced value unless a live writer still holds it; True if removed.

        Backends that cannot tell (``locks_spills`` False) delete it: callers keep an age
        threshold for those."""
        self.delete(key)
        return True

    def layout_problems(self) -> list[str]:
        """What in the store is not a plain value: links, special files (backends that can
        have them report them here; verify() lists them as problems)."""
        return []

    def leftovers(self) -> list[tuple[str, float]]:
        """(description, age in seconds) of what crashed writers of this store left outside
        its keys: incomplete multipart uploads, local spill files no live writer holds."""
        return []

    def remove_leftovers(self, grace: float) -> list[str]:
        """Abort or delete the :meth:`leftovers` older than ``grace`` seconds; their
        descriptions."""
        return []

    @contextlib.contextmanager
    def commit_lock(self) -> Iterator[None]:
        """Keep other handles from committing meanwhile, where the backend can (orphan sweeps
        judge files against the newest manifest under it)."""
        yield

    def commit_turn(self) -> contextlib.AbstractContextManager:
        """The turn of a writer that lost a race to commit and tries again: while it holds it,
        the other writers' commits wait, so that its next try lands. The commit lock where
        the backend has one; on object stores a claim the others respect (no correctness
        rests on it: every commit stays conditional)."""
        return self.commit_lock()

    @abc.abstractmethod
    def read_manifest(self, key: str) -> tuple[bytes, Any] | None:
        """(bytes, version token) of the manifest, or None when there is none."""

    @abc.abstractmethod
    def commit(self, key: str, data: bytes, expected: Any) -> Any:
        """Replace the manifest only if its version is still ``expected`` (None: must not exist).

        Returns the new version token; raises ConflictError when another writer got there first.
        """

    @abc.abstractmethod
    def describe(self) -> tuple:
        """A small picklable description from which :func:`atlas.storage.open_storage` reopens."""

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the store lives, for messages."""

    def close(self) -> None:
        """Release cached handles."""
