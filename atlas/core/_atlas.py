"""``Atlas``: one store handle — the catalog, pending writes, flush, bulk reads.

Compaction, the automatic merge of small files and verification live in
``atlas.core._maintain``; the read path in ``atlas.core._read``; the catalog in
``atlas.core._catalog``.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from concurrent.futures import wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from atlas import codecs
from atlas.core import _fork, _maintain, _query, _rebase, _stats, _versions
from atlas.core._batches import batches
from atlas.core._catalog import Catalog
from atlas.core._dataset import DatasetView
from atlas.core._index import (
    ChunkIndex,
    IndexCache,
    SegmentSource,
    merge_indexes,
    slot_problem,
)
from atlas.core._pending import PendingWrites
from atlas.core._read import BlockCache, ReadPlan, _distinct, execute, plan_read, read_chunk
from atlas.core._validate import as_index_tuple, check_name, check_window
from atlas.core._write import resize_chunks, write_window
from atlas.errors import (
    AlreadyExistsError,
    ArrayNotFoundError,
    ConflictError,
    CorruptionError,
    DatasetNotFoundError,
    FormatError,
    ReadOnlyError,
    StaleHandleError,
    StoreNotFoundError,
    UnflushedChangesError,
)
from atlas.format import root as root_format
from atlas.format.keys import ROOT_KEY
from atlas.format.root import DEFAULT_BLOCK_SIZE, FileRef, Root
from atlas.format.schema import Schema
from atlas.format.tables import Table
from atlas.storage import Storage, from_description, open_storage

VerifyReport = _maintain.VerifyReport
# what a flush keeps in memory of what it wrote (bigger is read again from the files if needed)
CACHED_INDEX_ROWS = 1 << 17
CACHED_TABLE_ROWS = 1 << 17
# a fresh handle parses an array's index on a worker while it reads the catalog when the
# index is big (its segments hold this many bytes) or the storage is remote: for small local
# indexes both steps are Python work that the thread switches only slow down
PREFETCH_INDEX_BYTES = 1 << 26
COMPACT_ATTEMPTS = 5  # a compaction whose files others replaced meanwhile starts over


class Atlas:
    """A store of many datasets. Changes stay in memory until :meth:`flush`."""

    def __init__(self, storage: Storage, root: Root | None, token: Any,
                 legacy: Any = None):
        self._storage = storage
        self._root_state = root
        self._token = token
        self._legacy = legacy  # a format-version-1 store opened for reading (atlas.format.legacy)
        self._files = IndexCache(storage)
        self._blocks = BlockCache()
        self._catalog_state: Catalog | None = None
        self._pending_state: PendingWrites | None = None
        self._inflight: _Inflight | None = None
        self._pinned: Any = None  # the version asked for, on a handle of an earlier version
        self._expected_commit: str | None = None  # the commit id _pinned must have
        self._fork: Any = None  # the Fork this handle is a writer of (it hands back changes)
        self._merged = _fork.Merged()  # forked writers' change sets, committed by flush
        self._expiry_checked = 0.0  # when a flush last looked for versions to expire
        # held by chunk writes, stacked writes and flushes, and by the reads ``batches`` makes
        # ahead on its thread: those never see pending state half changed (other reads do not
        # take it: lazy reads on many threads stay parallel). A lock from the first batches()
        # with read-ahead on; until then None (a per-dataset ingest writes often)
        self._writing: Any = None
        # the oldest commit this handle forked at: its expiries keep every version since,
        # which merging those forks' change sets reads
        self._fork_floor: int | None = None

    def _reading_ahead(self) -> Any:
        """The lock a read-ahead thread and this handle's writes take (see ``_writing``)."""
        if self._writing is None:
            self._writing = threading.RLock()
        return self._writing

    def _held(self) -> Any:
        """``_writing`` to hold, or nothing before any read-ahead."""
        return self._writing or contextlib.nullcontext()

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, location: Any, codec: str = "zstd", *, level: int | None = None,
               block_size: int = DEFAULT_BLOCK_SIZE, shuffle: bool = True,
               **store_options: Any) -> "Atlas":
        """Create a new, empty store (a missing directory is created). ``block_size``: the
        decoded size of the blocks small chunks are packed into. ``shuffle``: regroup the bytes
        of values wider than one byte by significance before compressing them (smaller, and
        faster to decode, for most numeric data); no effect with ``codec="none"``. ``level``:
        the codec's compression level (zstd's, default 1; lz4 and none have none: 0)."""
        codecs.check_codec(codec)
        level = codecs.DEFAULT_LEVELS[codec] if level is None else codecs.check_level(codec,
                                                                                      level)
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or not (
                1 << 12) <= block_size <= (1 << 30):
            raise ValueError(f"block_size must be an int from 4096 to 2**30 bytes, "
                             f"got {block_size!r}")
        storage = open_storage(location, **store_options)
        if storage.read_only:
            raise ReadOnlyError(f"cannot create a store at {storage.location}: it is read-only")
        if storage.read_manifest(ROOT_KEY) is not None:
            raise AlreadyExistsError(f"a store already exists at {storage.location}")
        root = Root(generation=0, codec=codec,
                    level=level,
                    block_size=block_size, shuffle=shuffle and codec != "none",
                    message="create")
        root.created = root.time
        try:
            token = _versions.commit_root(storage, root, None)
        except ConflictError:  # another create landed between the check and the commit
            raise AlreadyExistsError(f"a store already exists at {storage.location}") from None
        return cls(storage, root, token)

    @classmethod
    def open(cls, location: Any, *, read_only: bool = False, version: Any = None,
             **store_options: Any) -> "Atlas":
        """Open an existing store; raises StoreNotFoundError when there is none.

        ``version``: open that earlier version, read-only: a generation (int), a tag (str) or
        a time (datetime: the newest version committed at or before it). An expired one
        raises VersionExpiredError."""
        storage = open_storage(location, read_only=read_only or version is not None,
                               **store_options)
        # for an earlier version, the newest root's head says enough (its file lists no)
        try:
            root, token, legacy = load_root(storage, head=version is not None)
        except (CorruptionError, FormatError) as err:
            # a damaged root: the versions whose records read stay readable
            newest = _versions.newest_intact_record(storage)
            if version is None or newest is None:
                raise type(err)(f"{err}{_versions.damaged_root_hint(newest)}") from err
            root, token, legacy = newest, None, None
        if version is None:
            return cls(storage, root, token, legacy)
        if legacy is not None:
            raise FormatError(f"store at {storage.location} is in format version 1, which keeps "
                              f"no versions; convert it with `atlas upgrade {storage.location}`")
        handle = cls(storage, _versions.resolve(storage, root, version), None)
        handle._pinned = version
        return handle

    @classmethod
    def _reopen(cls, description: tuple, version: Any = None) -> "Atlas":
        # unpickling: the root is read on first use, in the process that uses the handle
        handle = cls(from_description(description), None, None)
        handle._pinned = version
        return handle

    def _commit_mark(self) -> tuple[int, str]:
        """(generation, commit id) of this handle's commit: what a lazy graph built on it
        reads wherever it runs (the id tells a store made again at the same path apart)."""
        root = self._root
        return root.generation, root.commit

    def _lazy_mark(self, datasets: list[str], array: str) -> tuple[int, str] | None:
        """:meth:`_commit_mark` for a lazy read of ``array`` of ``datasets`` (what it reads in
        other processes), or None when this handle holds changes to it not flushed yet: no
        commit holds what such a read shows, so it reads in this process only (sent to a dask
        worker, it read the commit before them: ``add_xr_dataset`` of a lazy view of unflushed
        writes, computed on a cluster, stored the old values)."""
        if self._has_changes() and self._catalog.changed_since_commit(
                array, lambda: self._dids(datasets)):
            return None
        return self._commit_mark()

    def _sent_mark(self, mark: tuple[int, str] | None, array: str) -> tuple[int, str]:
        """``mark`` (of :meth:`_lazy_mark`) of a lazy read being pickled, or
        UnflushedChangesError."""
        if mark is None:
            raise UnflushedChangesError(
                f"a lazy read of {array!r} of {self.location} made from changes of its handle "
                "not flushed then reads them in that process only (another process, a dask "
                "or DataLoader worker, reads the store as committed): read it in this process, "
                "or flush() and make it again")
        return mark

    def _at_commit(self, commit: tuple[int, str]) -> "Atlas":
        """This store at ``commit`` (:meth:`_commit_mark`) exactly, read-only: what every task
        of a lazy graph built at that commit reads, in whichever process it runs. Nothing is
        read until it is used (it is made while a task is unpickled): then
        VersionExpiredError once that commit has expired, StaleHandleError when the store
        at that location is another one now."""
        generation, commit_id = commit
        handle = Atlas._reopen(self._storage.describe(), generation)
        handle._expected_commit = commit_id
        return handle

    def __reduce__(self):
        if self._fork is not None:
            # reopened elsewhere it would be a plain handle: its work lost, and a flush there
            # would commit past the merge step
            raise TypeError("a forked writer does not pickle: it stays in the process that "
                            "made it; return writer.changes() (a picklable change set) to the "
                            "process that forked the store, which merges and flushes them")
        if self._pinned is None:
            return (Atlas._reopen, (self._storage.describe(),))
        # the exact commit, even if the version was asked for by tag or time (a handle that
        # has not read its root yet was reopened at a generation: no read to pickle it)
        generation = self._pinned if self._root_state is None else self._root_state.generation
        return (Atlas._reopen, (self._storage.describe(), generation))

    @property
    def _root(self) -> Root:
        if self._root_state is None:
            self._root_state, self._token, self._legacy = load_root(self._storage)
            if self._pinned is not None:
                self._token = None
                if self._legacy is None:
                    self._root_state = _versions.resolve(self._storage, self._root_state,
                                                         self._pinned)
                    expected = self._expected_commit
                    if expected is not None and self._root_state.commit != expected:
                        self._root_state = None
                        raise StaleHandleError(
                            f"store at {self._storage.location} is another store now: its "
                            f"version {self._pinned} is not the commit this lazy array was "
                            "made at (the store was deleted and made again at its path)")
                elif self._pinned != self._root_state.generation:  # (reopened by a task)
                    raise FormatError(f"store at {self._storage.location} is in format "
                                      "version 1, which keeps no versions: its commit "
                                      f"{self._pinned} is gone; convert it with `atlas "
                                      f"upgrade {self._storage.location}`")
        return self._root_state

    @functools.cached_property
    def _catalog(self) -> Catalog:
        # cached in the instance after the first use: the hot path reads it on every call
        root = self._root
        if self._legacy is not None:
            self._catalog_state = self._legacy.catalog(self._files)
        else:
            self._catalog_state = Catalog(self._storage, root, self._files)
        return self._catalog_state

    @property
    def _pending(self) -> PendingWrites:
        if self._pending_state is None:
            root = self._root
            handle = weakref.ref(self)  # not self: the finalizer below must not keep it alive
            self._pending_state = PendingWrites(self._storage, root.codec, root.level,
                                                root.block_size,
                                                lambda sid: handle()._catalog.schema(sid),
                                                root.generation + 1, shuffle=root.shuffle)
            # a handle dropped without flushing removes its spill files
            weakref.finalize(self, self._pending_state.abandon)
        return self._pending_state

    def __repr__(self) -> str:
        return f"<atlas.Atlas {self._storage.location}>"

    @property
    def location(self) -> str:
        return self._storage.location

    @property
    def codec(self) -> str:
        return self._root.codec

    @property
    def level(self) -> int:
        """The compression level new blocks are written with."""
        return self._root.level

    @property
    def shuffle(self) -> bool:
        """Whether new blocks of values wider than a byte are shuffled before compressing."""
        return self._root.shuffle

    @property
    def version(self) -> int:
        """The version (generation) this handle is at."""
        return self._root.generation

    @property
    def generation(self) -> int:
        """The number of the last commit this handle made or read."""
        return self._root.generation

    @property
    def format_version(self) -> int:
        return 1 if self._legacy is not None else self._root.format_version

    # -- datasets ------------------------------------------------------------------------------

    def create_dataset(self, name: str) -> DatasetView:
        check_name(name, "dataset")
        self._check_writable()
        name = str(name)  # a str subclass (np.str_) is kept as a plain str
        return DatasetView(self, name, self._catalog.create(name))

    def open_dataset(self, name: str) -> DatasetView:
        self._did(name)
        return DatasetView(self, name)

    def delete_dataset(self, name: str) -> None:
        self._check_writable()
        did = self._did(name)
        catalog = self._catalog
        pending = self._pending_state
        if pending is not None:
            # only arrays with unflushed chunks are looked at: finding a dataset's row in every
            # array table would load whole tables (0.8 s at a million datasets)
            rows = (catalog.array_row(a, did) for a in pending.dirty_arrays())
            pending.drop_slots({row[0] for row in rows if row is not None})
        catalog.delete(name, did)

    def list_datasets(self) -> list[str]:
        """Live datasets in creation order. Passing this list (unchanged) back to a bulk read
        means "every dataset" and costs nothing per name."""
        return self._catalog.names()

    def list_arrays(self) -> list[str]:
        """Sorted distinct array names over live datasets."""
        return self._catalog.array_names()

    def dataset_exists(self, name: str) -> bool:
        return isinstance(name, str) and self._catalog.did_of(name) is not None

    def __contains__(self, name: object) -> bool:
        return self.dataset_exists(name)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._catalog.count()

    def __iter__(self):
        """The dataset names, in creation order."""
        return iter(self.list_datasets())

    def __getitem__(self, name: str) -> DatasetView:
        """``store[name]`` is ``store.open_dataset(name)`` (KeyError when there is none)."""
        return self.open_dataset(name)

    def _repr_html_(self) -> str:
        from atlas.core._html import atlas_html

        return atlas_html(self)

    # -- durability ----------------------------------------------------------------------------

    def _has_changes(self) -> bool:
        return bool(self._pending_state) or bool(self._merged) or (
            self._catalog_state is not None and bool(self._catalog_state.pending_tables()))

    # -- forked writers ------------------------------------------------------------------------

    def fork(self) -> _fork.Fork:
        """A picklable description of this store at this handle's commit, for writers in other
        processes: in a task, ``w = fork.writer()``, write through ``w`` as through a store,
        ``return w.changes()``; then ``store.merge(change_sets)`` and ``store.flush()`` commit
        everything at once. Writers send no array data back, only catalog rows."""
        self._check_writable()
        root = self._root
        if self._fork_floor is None or root.generation < self._fork_floor:
            self._fork_floor = root.generation
        return _fork.Fork(self._storage.describe(), root)

    def changes(self) -> _fork.ChangeSet:
        """(On a forked writer) write this writer's segments to the store and return its
        change set for the client's :meth:`merge`; the writer starts afresh afterwards."""
        if self._fork is None:
            raise TypeError("changes() is for writers made by fork().writer(); a store handle "
                            "commits its changes with flush()")
        return _fork.changes(self)

    def merge(self, change_sets: Any) -> None:
        """Take forked writers' change sets (one or a list) into this handle's pending
        changes; the next :meth:`flush` commits them with everything else. ConflictError (and
        nothing merged) when they touch what another change set, this handle's pending changes
        or a commit since the fork touched."""
        self._check_writable()
        if isinstance(change_sets, _fork.ChangeSet):
            change_sets = [change_sets]
        _fork.merge_into(self, list(change_sets))

    def flush(self, message: str | None = None) -> None:
        """Persist every change since the last flush, atomically: all of it or none of it.
        ``message`` is recorded with the version (see :meth:`history`)."""
        with self._held():
            self._flush(message)

    def _flush(self, message: str | None) -> None:
        message = _versions.check_message(message)
        if self._fork is not None:
            raise TypeError("a forked writer does not commit: return writer.changes() to the "
                            "process that forked the store, which merges and flushes them")
        if self._inflight is not None:
            self._settle_inflight()
        if not self._has_changes():
            return
        self._check_writable()
        root = self._root
        catalog = self._catalog
        generation = root.generation + 1
        pending = self._pending
        pending.prepare(generation)
        self._storage.sync_early(pending.spill_paths())
        marks = {sid: len(t.log) for sid, t in catalog.pending_tables().items()}
        merged = self._merged
        if merged:
            _fork.check_own_changes(self, merged)
            _fork.check_files(self, merged)
        written: dict[tuple, Table | None] = {}
        new_root = root.successor(message=message, segments=dict(root.segments),
                                  **catalog.counters())
        changes = _versions.ChangeCounter(catalog)
        unpublished = _maintain.start_part(self._storage, new_root, self._pending_tables(
            pending, written, changes)) if marks or merged.tables else None
        if unpublished is not None:
            self._storage.sync_early([unpublished.path])
        new_root.changes = changes.counts()
        try:
            finished = pending.finish(generation)
        except BaseException:
            if unpublished is not None:
                unpublished.discard()
            raise
        part = unpublished.publish() if unpublished is not None else None
        segments = {name: list(refs) for name, refs in root.segments.items()}
        for seg in finished:
            ref = FileRef(seg.key, seg.size, _maintain.level_of(seg.size))
            if seg.index.rows <= CACHED_INDEX_ROWS:  # a big one is read again when needed
                self._files.add(ref, None, seg.index)
            segments.setdefault(seg.array, []).append(ref)
        for array, ref in merged.segments:
            segments.setdefault(array, []).append(ref)
        new_root.segments = segments
        if part is not None:
            new_root.parts = [*root.parts, part.ref]
            new_root.delta = part.ref.key
        merges = self._tiered_merge(new_root)
        # until it is known to have landed or not, the attempt is kept (its files locked): a
        # commit whose response was lost is recognised by its commit id when retried
        self._inflight = _Inflight(new_root, written, part, merges, marks)
        pending.in_doubt = True
        try:
            self._token = _versions.commit_root(self._storage, new_root, self._token)
        except ConflictError:  # another writer committed first: re-apply on top of it
            self._inflight = None
            pending.in_doubt = False
            self._rebase(root, new_root, part, finished, merges, marks)
            return
        self._inflight = None
        self._committed(new_root, written, part, merges, marks)

    def _rebase(self, base: Root, attempt: Root, part, finished, merges,
                marks: dict | None = None) -> None:
        """Commit the changes of ``attempt`` (made on ``base``) on top of the newest root, or
        raise ConflictError naming what both changed (:mod:`atlas.core._rebase`)."""
        storage = self._storage
        for w in merges.written:  # they merged files of ``base``: drop them
            w.release()
            storage.discard(w.ref.key, w.path)
        ours_tables = _rebase.part_tables(self, part.ref) if part is not None else {}
        ours = _rebase.summarize(ours_tables, base)
        ours_segments = [(seg.array, FileRef(seg.key, seg.size, _maintain.level_of(seg.size)))
                         for seg in finished] + self._merged.segments
        rewritten = None
        merges = _maintain.Merges()
        seen = _rebase.Seen()
        try:
            for tries in range(1, _rebase.MAX_ATTEMPTS + 1):
                # no other writer commits while an attempt holds the turn, so it lands: racing
                # instead, a rebase lost every race to a writer that flushes without pause
                # (one such writer starved another for seconds)
                with storage.commit_turn():
                    latest, token, legacy = load_root(storage)
                    if legacy is not None:
                        raise FormatError(f"store at {self.location} was turned back into format "
                                          "version 1 under this handle")
                    problem = _rebase.conflict(
                        ours, _rebase.their_changes(self, base, latest, seen),
                        self._name_in_base, self._dataset_of_slot)
                    committed = {ref.key for _a, ref in ours_segments} & latest.keys()
                    if problem is None and committed:  # a change set another handle merged
                        problem = (f"both committed the segment {min(committed)} (one change "
                                   "set merged by two handles)")
                    if problem is not None:
                        raise ConflictError(
                            f"store at {self.location} was committed by another writer since this "
                            f"handle read it, and the two conflict: {problem}; nothing was "
                            "committed: reopen the store and redo the changes")
                    shift = _rebase.shifts(base, latest)
                    new_root = latest.successor(
                        message=attempt.message, changes=attempt.changes,
                        segments={a: list(refs) for a, refs in latest.segments.items()},
                        **{f"next_{c}": getattr(latest, f"next_{c}")
                           + getattr(attempt, f"next_{c}") - getattr(base, f"next_{c}")
                           for c in _rebase.COUNTERS})
                    for array, ref in ours_segments:
                        new_root.segments.setdefault(array, []).append(
                            _rebase.remapped_ref(ref, base, shift))
                    if part is not None:
                        tables = _rebase.renumbered(ours_tables, base, shift)
                        if rewritten is not None:
                            rewritten.release()
                            storage.discard(rewritten.ref.key, rewritten.path)
                            rewritten = None
                        if tables is not ours_tables:
                            rewritten = _maintain.write_part(storage, new_root, tables.items())
                        delta = (rewritten or part).ref
                        new_root.parts = [*latest.parts, delta]
                        new_root.delta = delta.key
                    # this handle's segments were cached with the slots it numbered; the merge
                    # must read them as this attempt shifts them. Expiry waits (tiered_merge)
                    self._files.forget([ref.key for _a, ref in ours_segments])
                    merges = self._tiered_merge(new_root, expire=False)
                    try:
                        token = _versions.commit_root(storage, new_root, token)
                        lost = False
                    except ConflictError:
                        merges.discard(storage)
                        merges = _maintain.Merges()
                        lost = True
                    except BaseException:
                        # it may have landed (a lost response): its files stay until the next
                        # flush finds out (_settle_inflight)
                        self._inflight = _Inflight(new_root, {}, part, merges, marks or {},
                                                   (rewritten, ours_segments))
                        self._pending.in_doubt = True
                        rewritten, merges = None, _maintain.Merges()
                        raise
                if not lost:
                    break
                _rebase.backoff(tries)
            else:
                raise ConflictError(f"store at {self.location}: {_rebase.MAX_ATTEMPTS} other "
                                    "commits won the race to commit in a row; nothing was "
                                    "committed: flush again later")
        except BaseException:
            merges.discard(storage)
            if rewritten is not None:
                rewritten.release()
                storage.discard(rewritten.ref.key, rewritten.path)
            raise
        self._rebased(new_root, token, part, rewritten, ours_segments, merges)

    def _tiered_merge(self, new_root: Root, expire: bool = True) -> "_maintain.Merges":
        """The size-tiered merge of a root about to be committed, by a flush or by each try of
        its rebase (writers that keep racing each other merge too)."""
        try:
            return _maintain.tiered_merge(self, new_root, expire)
        except StaleHandleError:
            # another handle replaced files of this root and deleted them at once (a compaction
            # with no grace): the commit conflicts, and the rebase's next try merges on the
            # root after it
            return _maintain.Merges()

    def _rebased(self, new_root: Root, token: Any, part, rewritten, ours_segments,
                 merges: "_maintain.Merges") -> None:
        """A rebase committed ``new_root``: the handle moves to it."""
        for written in (part, rewritten):
            if written is not None:
                written.release()
        merges.release()
        if rewritten is not None and part is not None:
            self._storage.discard(part.ref.key, part.path)  # the renumbered copy replaced it
        self._token = token
        self._root_state = new_root
        self._pending.committed(new_root.generation + 1)
        self._files.forget([ref.key for _a, ref in ours_segments])  # read again, remapped
        merges.committed(self)
        self._merged = _fork.Merged()
        self._reload_catalog(new_root)

    def _reload_catalog(self, root: Root) -> None:
        """Drop the in-memory catalog for the one of ``root`` (read lazily): after a rebase
        the ids this handle numbered have moved and other writers' changes are in."""
        old = self._catalog_state
        fresh = Catalog(self._storage, root, self._files)
        if old is not None:
            fresh.epoch = old.epoch + 1  # DatasetViews find their rows again
        self._catalog_state = fresh
        self.__dict__["_catalog"] = fresh

    def _forget_files(self, keys) -> None:
        """This handle deleted the files ``keys``: nothing read from them stays cached."""
        self._files.forget(keys)
        forget = getattr(self._catalog_state, "forget_files", None)  # not: a version 1 store
        if forget is not None:
            forget(keys)

    def _name_in_base(self, did: int) -> str:
        table = self._catalog.table(("datasets",)).committed()
        pos = int(np.searchsorted(table.key, did))
        found = pos < len(table) and table.key[pos] == did
        return str(table.columns["name"][pos]) if found else f"#{did}"

    def _dataset_of_slot(self, array: str, slot: int) -> int:
        table = self._catalog.table(("array", array)).committed()
        rows = np.flatnonzero(table.columns["slot"] == slot) if len(table) else []
        return int(table.key[rows[-1]]) if len(rows) else -1

    def _committed(self, root: Root, written: dict, part, merges, marks: dict) -> None:
        if part is not None:
            part.release()
        merges.release()
        self._root_state = root
        self._pending.committed(root.generation + 1)
        merges.committed(self)
        if self._merged:  # rows of other writers came in: read the catalog again
            self._merged = _fork.Merged()
            self._reload_catalog(root)
        else:
            self._catalog.committed(root, written, marks)

    def _settle_inflight(self) -> None:
        """A flush raised while committing: find out whether its root landed."""
        inflight = self._inflight
        found = self._storage.read_manifest(ROOT_KEY)  # if this fails, the next retry asks again
        self._inflight = None
        latest = None
        if found is not None:
            try:
                latest = root_format.decode(found[0], f"{self.location}/{ROOT_KEY}")
            except (FormatError, CorruptionError):
                latest = None
        if latest is not None and self._landed(inflight, latest):
            # the token of our root; when others committed on top, the old one, so that the
            # next commit finds theirs and rebases on it
            token = found[1] if latest.commit == inflight.root.commit else self._token
            if inflight.rebase is not None:
                self._settle_rebase(inflight, token)
                return
            self._token = token
            self._committed(inflight.root, inflight.written, inflight.part, inflight.merges,
                            inflight.marks)
            self._restate_written()
            return
        inflight.discard(self._storage)  # its files are orphans; this flush writes anew
        self._pending.in_doubt = False
        _versions.forget_record(self._storage, inflight.root)

    def _landed(self, inflight: "_Inflight", latest: Root) -> bool:
        """Whether the attempt ``inflight`` landed: its root is ``latest``, or ``latest``
        (others committed on top since) lists a file only the attempt wrote."""
        attempt = inflight.root
        if latest.commit == attempt.commit:
            return True
        if latest.generation <= attempt.generation:
            return False
        own = {w.ref.key for w in inflight.merges.written}
        own.update(seg.key for seg in self._pending.finished)
        if attempt.delta is not None:
            own.add(attempt.delta)
        return bool(own & latest.keys())

    def _settle_rebase(self, inflight: "_Inflight", token: Any) -> None:
        """A rebase whose commit raised had landed: move to it. Changes made since were
        numbered for the root before it and cannot follow: they are dropped, loudly."""
        catalog = self._catalog
        later = bool(self._pending.written_slots()) or any(
            len(t.log) > inflight.marks.get(sid, 0)
            for sid, t in catalog.pending_tables().items())
        rewritten, ours_segments = inflight.rebase
        self._rebased(inflight.root, token, inflight.part, rewritten, ours_segments,
                      inflight.merges)
        if later:
            self._pending.abandon()
            raise ConflictError(
                f"store at {self.location}: the flush that raised had committed after all, "
                "re-applied on top of another writer's commit, which renumbered this handle's "
                "new datasets; the changes made after it were dropped: redo them")

    def _restate_written(self) -> None:
        """Arrays written since the attempt whose catalog rows went with it (a write logs a row
        only when its dataset has none pending): log them again, so that the next flush
        recomputes their statistics."""
        catalog = self._catalog
        for array, slots in self._pending.written_slots().items():
            table = catalog.table(("array", array)).view()
            for i in np.flatnonzero(np.isin(table.columns["slot"], list(slots)) & ~table.dead):
                catalog.stats_changed(array, int(table.key[i]), int(table.columns["slot"][i]),
                                      int(table.columns["schema"][i]))

    def close(self) -> None:
        """Alias for :meth:`flush` (the seed API's name for the durability boundary)."""
        self.flush()

    def __enter__(self) -> "Atlas":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # a block that raised keeps its writes pending: nothing half-done reaches disk
        if exc_type is None:
            self.close()

    def _pending_tables(self, pending: PendingWrites, written: dict,
                        changes: _versions.ChangeCounter):
        """The catalog's pending rows as tables, with the statistics of written arrays, one at
        a time; each also goes into ``written``, or None there when it is too big to keep in
        memory after the commit (that table is read again from the parts when next used)."""
        catalog = self._catalog
        merged = self._merged
        own = catalog.pending_tables()
        for section_id in [*own, *(sid for sid in merged.tables if sid not in own)]:
            if section_id not in own:  # only merged change sets have rows here
                delta = merged.section(section_id, None)
                changes.add(section_id, delta)
                written[section_id] = delta if len(delta) <= CACHED_TABLE_ROWS else None
                yield section_id, delta
                continue
            table = own[section_id]
            delta = table.log.table(copy=False)
            if section_id == ("datasets",):
                delta.name_hashes = catalog.created_hashes(delta)
                delta.name_bytes = catalog.created_name_bytes(delta)
            if section_id[0] == "array":
                live = ~delta.dead
                array = section_id[1]
                stats = _stats.compute(
                    delta.columns["slot"][live], delta.columns["schema"][live],
                    catalog.schemas(),
                    lambda slots, a=array: pending.first_chunk_partials(a, slots),
                    lambda a=array: pending.index(a),
                    lambda a=array: self._committed_index(a),
                    pending.string_partial(array),
                    lambda slot, chunk, extent, a=array: self._current_chunk(
                        a, self._schema_of_slot(a, slot), slot, chunk, extent))
                every = bool(live.all())
                for name, column in stats.items():
                    if every:  # the usual flush: no tombstone among the rows
                        delta.columns[name] = column
                    else:
                        delta.columns[name] = delta.columns[name].copy()
                        delta.columns[name][live] = column
                pending.forget_index(array)  # one array's index at a time in memory
            if section_id in merged.tables:
                delta = merged.section(section_id, delta)
            changes.add(section_id, delta)
            written[section_id] = delta if len(delta) <= CACHED_TABLE_ROWS else None
            yield section_id, delta

    def _schema_of_slot(self, array: str, slot: int) -> Schema:
        table = self._catalog.table(("array", array)).view()
        pos = np.flatnonzero(table.columns["slot"] == slot)
        return self._catalog.schema(int(table.columns["schema"][pos[-1]]))

    # -- compaction and verification -----------------------------------------------------------

    def compact(self, grace: float | None = None) -> None:
        """Merge every array name's segments into one and the catalog into one part, dropping
        deleted data, and commit.

        Pending changes are flushed first. The replaced files stay for the versions that read
        them; the compaction then expires what the store's retention policy no longer keeps
        (``grace``: keep only versions younger than this many seconds, plus tagged ones and
        the latest; ``grace=0`` frees the replaced files at once). Unreferenced files left by
        crashed writers are removed once older than an hour (at once on a local store, where
        live writers lock theirs)."""
        if grace is not None:
            grace = _versions.check_age(grace, "grace")  # before anything is committed
        self.flush()
        self._check_writable()
        for tries in range(1, COMPACT_ATTEMPTS + 1):
            self._catch_up()  # others committed since this handle read the store: theirs too
            if _maintain.compact(self, grace, last_try=tries == COMPACT_ATTEMPTS):
                return
        raise ConflictError(f"store at {self.location}: other writers changed the files to "
                            f"compact {COMPACT_ATTEMPTS} times in a row; try again later")

    # -- versions ------------------------------------------------------------------------------

    def history(self) -> list[_versions.Version]:
        """Every retained version up to this handle's, newest first: generation, time, message,
        and the numbers of datasets added, changed and deleted."""
        self._check_versions()
        return _versions.history(self._storage, self._root)

    def tag(self, name: str, version: Any = None) -> int:
        """Tag a version (default: the latest committed) so that it is never expired; returns
        its generation. AlreadyExistsError if the tag exists (delete it to move it)."""
        self._check_versions()
        self._check_writable()
        latest = load_root(self._storage)[0]
        root = latest if version is None else _versions.resolve(self._storage, latest, version)
        _versions.add_tag(self._storage, name, root)
        return root.generation

    def tags(self) -> dict[str, int]:
        """{tag: generation}."""
        self._check_versions()
        return {name: g for name, (g, _c) in _versions.all_tags(self._storage).items()}

    def delete_tag(self, name: str) -> None:
        """Remove a tag (its version then expires like any other)."""
        self._check_versions()
        self._check_writable()
        _versions.remove_tag(self._storage, name)

    @property
    def retention(self) -> dict:
        """The store's policy: versions younger than ``older_than`` seconds, the last
        ``keep_last`` and tagged ones are kept (default: 7 days, 1)."""
        older_than, keep_last = self._root.retention
        return {"older_than": older_than, "keep_last": keep_last}

    def set_retention(self, older_than: Any = None, keep_last: Any = None) -> None:
        """Change the store's retention policy (a commit); None leaves that part as it is."""
        self.flush()
        self._check_writable()
        root = self._root
        policy = _versions.check_retention(
            root.retention[0] if older_than is None else older_than,
            root.retention[1] if keep_last is None else keep_last)
        self._commit_maintenance(
            lambda latest: latest.successor(message="set retention", retention=policy))

    def expire(self, older_than: Any = None, keep_last: Any = None) -> dict:
        """Remove the versions the policy does not keep (``older_than`` seconds or a
        timedelta, ``keep_last``: this call's policy instead of the store's; tagged versions
        and the latest always stay), then the files only they read. Returns what it removed."""
        self.flush()
        self._check_writable()
        return _versions.expire(self, older_than, keep_last)

    def _check_versions(self) -> None:
        if self._legacy is not None:
            raise FormatError(f"store at {self.location} is in format version 1, which keeps "
                              f"no versions; convert it with `atlas upgrade {self.location}`")

    def _commit_maintenance(self, make: Any) -> Root | None:
        """Commit a root that changes files or settings, not data (compact, expire, policy):
        ``make(root)`` builds it on top of ``root``; when another writer committed first it is
        called again with the newest root (None: it cannot be re-applied there)."""
        storage = self._storage
        root, token = self._root, self._token
        for tries in range(1, _rebase.MAX_ATTEMPTS + 1):
            with storage.commit_turn() if tries > 1 else contextlib.nullcontext():
                if tries > 1:  # under the lock (a local store's): this try lands
                    root, token, _legacy = load_root(storage)
                new_root = make(root)
                if new_root is None:
                    return None
                try:
                    token = _versions.commit_root(storage, new_root, token)
                    break
                except ConflictError:
                    pass
            _rebase.backoff(tries)
        else:
            raise ConflictError(f"store at {self.location}: {_rebase.MAX_ATTEMPTS} other commits "
                                "won the race in a row; nothing was committed: try again later")
        self._token = token
        if new_root.parent == self._root.commit:
            self._root_state = new_root
            if self._catalog_state is not None:
                self._catalog_state.root = new_root
        else:  # other writers' commits are in: read the catalog again
            self._root_state = new_root
            self._reload_catalog(new_root)
        if self._pending_state is not None:
            self._pending_state.next_generation = new_root.generation + 1
        return new_root

    def _catch_up(self) -> None:
        """Move a handle without pending changes to the newest commit."""
        root, token, legacy = load_root(self._storage)
        if legacy is None and root.commit != self._root.commit:
            self._root_state, self._token = root, token
            self._reload_catalog(root)
            if self._pending_state is not None:
                self._pending_state.next_generation = root.generation + 1

    def verify(self, repair: bool = False) -> VerifyReport:
        """Check the root, every catalog part and every segment and block against its checksum.

        Unreferenced files are listed as ``orphans`` (not problems); ``repair=True`` removes them.
        """
        return _maintain.verify(self, repair)

    @classmethod
    def verify_store(cls, location: Any, repair: bool = False, **store_options: Any
                     ) -> VerifyReport:
        """:meth:`verify` of the store at ``location`` without opening it first: a root that
        does not read is reported as a problem (naming the newest version that still reads)
        instead of raised."""
        storage = open_storage(location, read_only=not repair, **store_options)
        return _maintain.verify(cls(storage, None, None), repair)

    def usage(self) -> dict:
        """Files and bytes on disk: segments per array name, catalog parts, files kept for
        readers of older commits ("retired"), segments whose blocks live ones read in place
        ("linked"), the root; codec, level and generation. Segments that cannot be read are
        listed under ``problems`` rather than raised (``verify()`` checks everything)."""
        return _maintain.usage(self)

    # -- bulk reads and writes -----------------------------------------------------------------

    def read_array_across(self, array: str, dataset_names: Sequence[str],
                          start: Sequence[int] | None = None,
                          shape: Sequence[int] | None = None) -> list[np.ndarray | None]:
        """One array read from many datasets (each an ndarray, 0-D ones too); None where a
        dataset lacks the array.

        Datasets that share a schema are read together through the stacked path.
        """
        names = _name_list(dataset_names)
        dids = self._dids(names)
        slots, schema_ids, found = self._catalog.rows(array, dids)
        out: list[np.ndarray | None] = [None] * len(names)
        if not found.any():
            return out
        present = np.flatnonzero(found)
        for schema_id in dict.fromkeys(schema_ids[present].tolist()):
            pick = present[schema_ids[present] == schema_id]
            schema = self._catalog.schema(schema_id)
            where = f"{array!r} in dataset {names[int(pick[0])]!r}"
            start_t, window = self._window(schema, start, shape, where)
            block = np.empty((len(pick), *window), dtype=schema.dtype.numpy)
            self._read(array, slots[pick], schema_ids[pick], start_t, window, block)
            for j, p in enumerate(pick.tolist()):
                out[p] = block[j, ...]  # an ndarray also for 0-D arrays, as read_array gives
        return out

    def read_array_across_stacked(self, array: str, dataset_names: Sequence[str] | None = None,
                                  start: Sequence[int] | None = None,
                                  shape: Sequence[int] | None = None,
                                  out: np.ndarray | None = None) -> np.ndarray:
        """One array from many datasets as one (len(dataset_names), *window) array.

        ``dataset_names`` None (or the unchanged list ``list_datasets()`` returned) means every
        dataset. Names may repeat and come in any order. A dataset without the array raises
        KeyError; windows that differ in shape or dtype raise ValueError naming the first
        mismatch. ``start``: one start for every dataset, or one per dataset (an (N, ndim)
        array of ints, row i for ``dataset_names[i]``: a random crop of each sample) with
        ``shape`` the windows' common shape.
        """
        prefetch = self._prefetch_index(array)
        try:
            names, slots, schema_ids = self._stack_rows(array, dataset_names)
            if not len(slots):
                if dataset_names is None:
                    raise ArrayNotFoundError(f"{self.location} holds no datasets: no array "
                                             f"{array!r} to stack")
                raise ValueError("dataset_names is empty; nothing to stack")
            dtype, start_t, window, row_starts = self._stack_windows(array, names, schema_ids,
                                                                     start, shape)
        except BaseException:
            if prefetch is not None:  # not left running (holding the cache's lock) after this
                prefetch.cancel() or wait([prefetch])
            raise
        expected = (len(slots), *window)
        if out is None:
            out = np.empty(expected, dtype=dtype)
        else:
            if not isinstance(out, np.ndarray):
                raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
            if out.shape != expected or out.dtype != dtype or not out.flags.c_contiguous:
                order = "" if out.flags.c_contiguous else "non-C-contiguous "
                raise ValueError(f"out must be a C-contiguous {dtype} array of shape "
                                 f"{list(expected)}, got a {order}{out.dtype} array of shape "
                                 f"{list(out.shape)}")
            if not out.flags.writeable:
                raise ValueError("out must be a writeable array, got a read-only one")
        self._read(array, slots, schema_ids, start_t, window, out, row_starts)
        return out

    def read_plan(self, array: str, dataset_names: Sequence[str] | None = None,
                  start: Sequence[int] | None = None,
                  shape: Sequence[int] | None = None) -> ReadPlan:
        """How :meth:`read_array_across_stacked` would read: the blocks it fetches and decodes,
        where each chunk lands, what is filled (``plan.blocks()`` fetches the stored blocks,
        ``plan.execute(out)`` carries the read out)."""
        names, slots, schema_ids = self._stack_rows(array, dataset_names)
        dtype, start_t, window, row_starts = self._stack_windows(array, names, schema_ids,
                                                                 start, shape)
        return plan_read(self._indexes(array), slots, schema_ids, self._catalog.schemas(),
                         start_t, window, np.dtype(dtype).itemsize, row_starts)

    def write_array_across_stacked(self, array: str, names: Sequence[str], data: np.ndarray,
                                   dims: Sequence[str] | None = None,
                                   chunk_shape: Sequence[int] | None = None,
                                   fill_value: Any = None) -> None:
        """The inverse of the stacked read: row i of ``data`` becomes ``array`` of dataset
        ``names[i]``, which is created if absent, with the array defined (shape
        ``data.shape[1:]``) if absent; an existing definition must match. Everything is
        checked before anything changes; a write cut short after that (an I/O error, an
        interrupt) leaves what it did so far pending (see docs/durability.md)."""
        from atlas.core._stacked import write_stacked

        self._check_writable()
        with self._held():
            write_stacked(self, array, names, data, dims, chunk_shape, fill_value)

    # -- queries over the collection (atlas.core._query) ----------------------------------------

    def catalog(self, arrays: Sequence[str] | None = None,
                attributes: Sequence[str] | None = None, *,
                columns: Sequence[str] | None = None) -> Any:
        """A ``pandas.DataFrame`` of the collection: one row per dataset (index: its name, in
        creation order); a column per attribute key, and per array ``<array>.dtype``,
        ``.shape``, ``.nulls``, ``.valid``, ``.min``, ``.max``. ``arrays``/``attributes`` pick
        columns (default: all); or ``columns`` names exactly the columns wanted, in order
        (``["platform", "temp.max"]``; a name that is neither an attribute nor an array's
        statistic raises ``QueryError``). Only what is picked is read."""
        return _query.catalog(self, arrays, attributes, columns)

    def select(self, where: Any) -> list[str]:
        """Names of the datasets matching ``where``, in creation order: an expression over the
        catalog's columns (``"temp.max > 25 and platform == 'float12' and -10 < lat.min <
        10"``: comparisons, and/or/not, ``in [...]``, parentheses, `quoted names`), or a
        callable taking the catalog DataFrame and returning a boolean Series."""
        return _query.select(self, where)

    def array_stats(self, array: str) -> dict | None:
        """Statistics of ``array`` over every dataset that has it: ``datasets``, ``row_count``
        and ``null_count`` summed, ``min`` of the minima and ``max`` of the maxima (None where
        the datasets' values do not compare, as dates and numbers), the distinct ``dtypes``,
        ``shapes`` and ``chunk_shapes``, and ``unflushed`` (datasets whose statistics wait for
        a flush); None when no dataset has it."""
        return _query.array_stats(self, array)

    def array_stats_by_dataset(self, array: str) -> dict[str, dict | None]:
        """{dataset: its ``array_stats(array)``} of the datasets that have ``array``."""
        return _query.array_stats_by_dataset(self, array)

    def attributes_by_dataset(self, key: str) -> dict[str, Any]:
        """{dataset: its attribute ``key``} of the datasets that have it."""
        return _query.attributes_by_dataset(self, key)

    def merged_schema(self) -> dict:
        """The collection's arrays and attributes with their types widened over every dataset
        (numbers by numpy's promotion); what does not widen is listed under ``conflicts``."""
        return _query.merged_schema(self)

    def batches(self, array: str, dataset_names: Sequence[str] | None = None,
                batch_size: int = 64, shuffle: bool = True, seed: int | None = None,
                start: Sequence[int] | None = None, shape: Sequence[int] | None = None,
                drop_last: bool = False, prefetch: int = 1, where: Any = None):
        """Yield (names, array of shape (len(names), *window)) batches for training loops.

        ``dataset_names`` defaults to every dataset holding ``array``; with ``shuffle`` the
        order is a permutation drawn from ``seed``. ``prefetch`` batches are read ahead on a
        background thread while the caller works on the current one. A batch's array is reused
        for a later batch once nothing refers to it any more (not the array, nor a view or a
        ``torch.from_numpy`` tensor of it), so holding on to a batch keeps it intact.
        ``where``: only the datasets :meth:`select` picks (with ``dataset_names``: only those
        of them).
        """
        if where is not None:
            chosen = self.select(where)
            if dataset_names is not None:
                keep = set(chosen)
                chosen = [n for n in _name_list(dataset_names) if n in keep]
            dataset_names = chosen
        return batches(self, array, dataset_names, batch_size, shuffle, seed, start, shape,
                       drop_last, prefetch)

    def _stack_rows(self, array: str, dataset_names) -> tuple[Any, np.ndarray, np.ndarray]:
        """(names or None, slots, schema ids) of ``array`` in the named datasets (None or the
        ``list_datasets()`` list: every dataset); KeyError naming the first miss."""
        catalog = self._catalog
        if dataset_names is None or catalog.is_all(dataset_names):
            dids = catalog.live_dids()
            slots, schema_ids, found = catalog.rows(array, dids, everything=True)
            names = dataset_names
        else:
            names = _name_list(dataset_names)
            dids = self._dids(names)
            slots, schema_ids, found = catalog.rows(array, dids)
        if not found.all():
            missing = int(np.flatnonzero(~found)[0])
            name = (names if names is not None else catalog.names())[missing]
            raise ArrayNotFoundError(f"dataset {name!r} has no array {array!r}")
        return names, slots, schema_ids

    def _holding(self, array: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(names, slots, schema ids) of every live dataset that has ``array``."""
        catalog = self._catalog
        slots, schema_ids, found = catalog.rows(array, catalog.live_dids(), everything=True)
        names = catalog.names()
        if found.all():
            return list(names), slots, schema_ids
        keep = np.flatnonzero(found)
        return [names[i] for i in keep.tolist()], slots[keep], schema_ids[keep]

    def _dids(self, names: list[str]) -> np.ndarray:
        """Dataset ids of ``names`` (one dict lookup each); KeyError naming the first miss."""
        dids = self._catalog.dids()
        try:
            return np.array([dids[n] for n in names], np.int64)
        except (KeyError, TypeError):
            for name in names:
                if not isinstance(name, str) or name not in dids:
                    raise DatasetNotFoundError(f"no dataset {name!r} in {self.location}") \
                        from None
            raise

    def _stack_windows(self, array, names, schema_ids, start, shape):
        """(dtype, start, window, per-row starts or None) of a stacked read: one window for
        every row (:meth:`_common_window`), or one start per row (``start`` two-dimensional),
        each checked against its row's array."""
        try:
            rank = 0 if start is None else np.ndim(start)
        except ValueError:  # ragged nested sequences
            rank = -1
        if rank < 0 or rank > 2:
            raise TypeError(f"{array!r}: start must be a sequence of ints, or one such "
                            "sequence per dataset, all of one length")
        if rank < 2:
            return (*self._common_window(array, names, schema_ids, start, shape), None)
        if shape is None:
            raise TypeError(f"{array!r}: shape is required with one start per dataset")
        dtype, _origin, window = self._common_window(array, names, schema_ids, None, shape)
        starts = np.asarray(start)
        if starts.shape != (len(schema_ids), len(window)):
            raise ValueError(f"{array!r}: one start per dataset must have shape "
                             f"{[len(schema_ids), len(window)]} (datasets, dimensions), got "
                             f"{list(starts.shape)}")
        if starts.size and starts.dtype.kind not in "iu":
            raise TypeError(f"{array!r}: one start per dataset must be an array of ints, "
                            f"got one of {starts.dtype}")
        if starts.size and starts.dtype.kind == "u" and int(starts.max()) > 2**63 - 1:
            starts = np.minimum(starts, 2**63 - 1)  # out of any array: refused below
        starts = starts.astype(np.int64)
        for schema_id in _distinct(schema_ids):
            rows = np.flatnonzero(schema_ids == schema_id)
            shape = self._catalog.schema(schema_id).shape
            mine = starts[rows]
            bad = np.flatnonzero(((mine < 0) | (mine > np.subtract(shape, window))).any(axis=1))
            if len(bad):  # check_window says which axis and how
                row = int(rows[bad[0]])
                name = names[row] if names is not None else \
                    self._catalog.names_at(np.array([row]))[0]
                check_window(starts[row].tolist(), window, shape,
                             f"{array!r} in dataset {name!r} (row {row} of start)")
        return dtype, (0,) * len(window), window, starts

    def _common_window(self, array, names, schema_ids, start, shape):
        """Check every distinct schema admits one window of one dtype; return it. Dataset
        names are looked up only for an error (a read of every dataset passes no names)."""

        def name_at(position: int) -> str:
            if names is not None:
                return names[position]
            return self._catalog.names_at(np.array([position]))[0]

        first = None
        for schema_id in _distinct(schema_ids):  # first mismatch first in errors
            schema = self._catalog.schema(schema_id)
            position = int(np.argmax(schema_ids == schema_id))  # its first row
            where = _Lazy(lambda p=position: f"{array!r} in dataset {name_at(p)!r}")
            start_t, window = self._window(schema, start, shape, where)
            if first is None:
                first = (schema.dtype, start_t, window, position)
            elif schema.dtype != first[0] or window != first[2]:
                raise ValueError(
                    f"cannot stack {array!r}: dataset {name_at(position)!r} gives a "
                    f"{schema.dtype.name} window of shape {list(window)}, dataset "
                    f"{name_at(first[3])!r} gave a {first[0].name} window of shape "
                    f"{list(first[2])}")
        return first[0].numpy, first[1], first[2]

    # -- xarray (atlas.xarray holds the logic; imported on first use) ---------------------------

    def add_xr_dataset(self, ds: Any, name: str, chunks: Any = None,
                       append_dim: str | None = None) -> DatasetView:
        """Write an ``xarray.Dataset`` as the new dataset ``name`` (does not flush).
        ``append_dim``: when ``name`` exists, append ``ds`` to it along that dimension, as
        ``to_zarr(append_dim=...)`` does."""
        from atlas.xarray._ingest import add_xr_dataset

        return add_xr_dataset(self, ds, name, chunks, append_dim)

    def add_xarray_dataset(self, ds: Any, name: str, chunks: Any = None,
                           append_dim: str | None = None) -> DatasetView:
        """Alias of :meth:`add_xr_dataset`."""
        return self.add_xr_dataset(ds, name, chunks, append_dim)

    def to_xarray(self, name: str, **decode: Any) -> Any:
        """Dataset ``name`` as an ``xarray.Dataset`` (chunked variables lazy, dask-backed);
        ``decode_cf``, ``mask_and_scale``, ... and ``drop_variables`` as in xr.open_dataset."""
        from atlas.xarray._read import to_xarray

        return to_xarray(self, name, **decode)

    def open_as_xarray_dataset(self, name: str, **decode: Any) -> Any:
        """Alias of :meth:`to_xarray`."""
        return self.to_xarray(name, **decode)

    def to_xarray_many(self, names: Sequence[str], concat_dim: str = "dataset",
                       join: str = "exact") -> Any:
        """Many datasets stacked along a new dimension ``concat_dim``, lazily (dask);
        ``join="outer"`` aligns and pads datasets whose coordinates or sizes differ."""
        from atlas.xarray._many import to_xarray_many

        return to_xarray_many(self, names, concat_dim, join)

    def open_mfdataset(self, names: Sequence[Any], concat_dim: Any = None,
                       combine: str = "by_coords", **kwargs: Any) -> Any:
        """Datasets combined along real dimensions, lazily, as ``xr.open_mfdataset`` combines
        files (``combine="by_coords"`` or ``"nested"`` with ``concat_dim``)."""
        from atlas.xarray._combine import open_mfdataset

        return open_mfdataset(self, names, concat_dim, combine, **kwargs)

    def open_as_many_xarray_dataset(self, names: Sequence[str], concat_dim: str = "dataset",
                                    join: str = "exact") -> Any:
        """Alias of :meth:`to_xarray_many`."""
        return self.to_xarray_many(names, concat_dim, join)

    # -- what DatasetView and the bulk paths use -----------------------------------------------

    @property
    def _fast_writes(self) -> bool:
        """Whether writes may skip :meth:`_check_writable` (it would pass)."""
        return not self._storage.read_only and self._legacy is None

    def _check_writable(self, commits: bool = True) -> None:
        """ReadOnlyError on a read-only handle; FormatError for a commit to a version-1 store
        (``commits=False``: only files are removed, as an orphan sweep does)."""
        if self._pinned is not None:
            asked = "" if self._pinned == self._root.generation else f" ({self._pinned!r})"
            raise ReadOnlyError(f"store at {self.location} is open at version "
                                f"{self._root.generation}{asked}, which is read-only; open the "
                                "store without version= to write")
        if self._storage.read_only:
            raise ReadOnlyError(f"store at {self.location} is open read-only")
        if commits and self._legacy is not None:
            raise FormatError(f"store at {self.location} is in format version 1, which this "
                              "atlas reads but does not write; convert it with "
                              f"`atlas upgrade {self.location}`")

    def _did(self, name: str) -> int:
        did = self._catalog.did_of(name) if isinstance(name, str) else None
        if did is None:
            raise DatasetNotFoundError(f"no dataset {name!r} in {self.location}")
        return did

    def _committed_index(self, array: str) -> ChunkIndex:
        """The index of ``array``'s segments: the committed ones, and those a flush finished
        but has not committed yet (a failed flush, segments adopted from dask workers)."""
        if self._legacy is not None:
            return self._legacy.index(array, self._files)
        refs = self._root.segments.get(array, [])
        unsent = [] if self._pending_state is None else self._pending_state.unsent(array)
        if not unsent:
            index = self._files.merged(array, refs)
        else:
            # a flush that failed after finishing its segments keeps them, newer than the
            # root's: reads, read-modify-writes and the retry's statistics must see them
            index = merge_indexes([self._files.segment(r) for r in refs] +
                                  [i for i, _s in unsent],
                                  [SegmentSource(self._storage, r) for r in refs] +
                                  [s for _i, s in unsent])
        problem = slot_problem(index, self._catalog.next_slot)
        if problem:
            raise CorruptionError(f"{self.location}: array {array!r}: {problem}")
        return index

    def _prefetch_index(self, array: Any):
        """Start parsing what :meth:`_committed_index` returns on a worker thread, where it is
        the committed segments alone, big or remote (a fresh handle reads its catalog rows
        meanwhile); the future, or None."""
        if self._legacy is not None or self._pending_state is not None or \
                not isinstance(array, str):
            return None
        refs = self._root.segments.get(array, [])
        if not self._storage.remote and sum(r.size for r in refs) < PREFETCH_INDEX_BYTES:
            return None
        return self._files.prefetch_merged(array, refs)

    def _indexes(self, array: str) -> list[ChunkIndex]:
        """The chunk indexes of ``array``, newest first."""
        committed = self._committed_index(array)
        pending = None if self._pending_state is None else self._pending_state.index(array)
        return [committed] if pending is None else [pending, committed]

    def _read(self, array: str, slots: np.ndarray, schema_ids: np.ndarray, start, window,
              out: np.ndarray, row_starts: np.ndarray | None = None) -> None:
        """Fill ``out[i]`` with the window of (slots[i], schema_ids[i]) at ``start`` (or at
        ``row_starts[i]``) (the caller checked that every schema admits the window, in
        ``out``'s dtype)."""
        catalog = self._catalog
        schemas = catalog.schemas()
        plan = plan_read(self._indexes(array), slots, schema_ids, schemas, tuple(start),
                         tuple(window), out.dtype.itemsize, row_starts)
        execute(plan, out, self._blocks)
        if self._pending_state is not None:
            self._overlay_dirty(array, slots, schema_ids, start, window, out, row_starts)

    def _overlay_dirty(self, array, slots, schema_ids, start, window, out,
                       row_starts=None) -> None:
        """Partly written chunks not yet encoded are newer than anything indexed."""
        from atlas import kernels
        from atlas.core._read import chunk_plan

        dirty = self._pending_state.dirty_of(array)
        if not dirty:
            return
        rows_of = {}
        for i, slot in enumerate(slots.tolist()):
            rows_of.setdefault(slot, []).append(i)
        for (slot, chunk), held in dirty:
            for i in rows_of.get(slot, ()):
                at = tuple(start) if row_starts is None else tuple(row_starts[i].tolist())
                plan = chunk_plan(self._catalog.schema(int(schema_ids[i])), at, tuple(window))
                k = np.flatnonzero(plan.chunk_ids == chunk)
                if not len(k):
                    continue
                k = int(k[0])
                values = held.values if out.dtype == object else \
                    np.require(held.values, requirements="C").view(out.dtype)
                kernels.copy_window(values, plan.src_starts[k], out[i, ...],
                                    plan.dst_starts[k], plan.boxes[k])

    def _current_chunk(self, array: str, schema: Schema, slot: int, chunk: int,
                       extent: tuple[int, ...]):
        """(values, written) of a chunk as this handle sees it now, or None if never written."""
        if self._pending_state is not None:
            hit = self._pending_state.lookup(array, schema, slot, chunk, extent)
            if hit is not None:
                return hit
        return read_chunk([self._committed_index(array)], schema, slot, chunk, extent,
                          self._blocks)

    def _write(self, array: str, slot: int, schema_id: int, schema: Schema,
               start: tuple[int, ...], values: np.ndarray) -> None:
        args = (self._pending, lambda s, c, e: self._current_chunk(array, schema, s, c, e),
                array, slot, schema_id, schema, start, values, self._root.generation + 1)
        if self._writing is None:  # the hot path of a per-dataset ingest: nothing to hold
            write_window(*args)
            return
        with self._writing:
            write_window(*args)

    def _resize(self, array: str, slot: int, schema_id: int, old: Schema, new: Schema) -> None:
        """Move the stored chunks of ``slot`` onto the chunk grid of ``new`` (its new shape)."""
        generation = self._root.generation + 1
        pending = self._pending
        pending.settle(slot, generation)

        def stored() -> np.ndarray:
            return np.unique(np.concatenate([index.chunk[index.rows_of_slot(slot)]
                                             for index in self._indexes(array)]))

        resize_chunks(pending, lambda s, c, e: self._current_chunk(array, old, s, c, e), stored,
                      array, slot, schema_id, old, new, generation)

    @staticmethod
    def _window(schema: Schema, start, shape, where: str):
        start_t = (0,) * schema.ndim if start is None else \
            as_index_tuple(start, "start", schema.ndim, where)
        if shape is None:
            # a start past the end gives an empty window there, so the bounds check names it
            window = tuple(max(0, s - b) for s, b in zip(schema.shape, start_t))
        else:
            window = as_index_tuple(shape, "shape", schema.ndim, where)
        check_window(start_t, window, schema.shape, where)
        return start_t, window


class _Lazy:
    """Text made only when formatted: an error message's dataset name, looked up only when
    there is an error to report."""

    def __init__(self, make: Callable[[], str]):
        self._make = make

    def __format__(self, spec: str) -> str:
        return format(self._make(), spec)

    def __str__(self) -> str:
        return self._make()


@dataclass
class _Inflight:
    """A commit attempt that raised: what it would have committed, its files still locked."""

    root: Root
    written: dict
    part: Any
    merges: Any
    marks: dict
    rebase: Any = None  # a rebase's attempt: (its renumbered part or None, its segments)

    def discard(self, storage: Storage) -> None:
        rewritten = [self.rebase[0]] if self.rebase and self.rebase[0] is not None else []
        for w in ([self.part] if self.part is not None else []) + self.merges.written + \
                rewritten:
            w.release()


def _name_list(dataset_names: Sequence[str]) -> list[str]:
    if isinstance(dataset_names, str):
        raise TypeError("dataset_names must be a sequence of names, not a single str")
    return list(dataset_names)


def load_root(storage: Storage, head: bool = False) -> tuple[Root, Any, Any]:
    """(root, version token, legacy reader or None) of the store at ``storage``; ``head``:
    a version-2 root may come as its :class:`RootHead`."""
    found = storage.read_manifest(ROOT_KEY)
    if found is None:
        raise StoreNotFoundError(f"no atlas store at {storage.location} "
                                 f"(no {ROOT_KEY} found)")
    data, token = found
    where = f"{storage.location}/{ROOT_KEY}"
    if root_format.read_header(data, where) == 1:
        from atlas.format.legacy import LegacyStore

        legacy = LegacyStore.decode(storage, data, where)
        return legacy.root, token, legacy
    if head:
        return root_format.head(data, where), token, None
    return root_format.decode(data, where), token, None
