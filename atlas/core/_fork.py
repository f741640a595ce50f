"""Forked writers: work spread over processes or a cluster, committed once by the client.

``fork = store.fork()`` is a small picklable description of the store at its current commit.
A task calls ``w = fork.writer()`` (a handle on that commit), makes changes through the usual
API, and returns ``w.changes()``: its segments are written to the storage there and then (not
committed: orphans until a commit names them) and the change set carries only the catalog rows
and the segments' keys. The client calls ``store.merge(change_sets)`` and ``store.flush()``:
one atomic commit of everything, nothing visible before.

Every writer numbers its new datasets, slots and schemas from the fork's counters; a merge moves
each change set's new ids above the client's counters (its rows renumbered, its segments given a
slot remap, as a rebase does: :mod:`atlas.core._rebase`). Change sets that touch the same thing
(two writers creating one name, writing one array of one dataset, ...) conflict like flushes do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atlas.core import _rebase
from atlas.errors import ConflictError
from atlas.format.root import FileRef, Root
from atlas.format.tables import Table, merge

if TYPE_CHECKING:
    from atlas.core._atlas import Atlas


@dataclass
class ChangeSet:
    """What one forked writer changed: catalog rows (with their statistics) and the segments
    it wrote, numbered from ``base``'s counters up to ``used``. Small: no array data."""

    location: str
    base: Root
    used: dict[str, int]
    tables: dict[tuple, Table]
    segments: list[tuple[str, FileRef]]
    datasets: list[str] = field(default_factory=list)  # names it created, for messages

    def __repr__(self) -> str:
        return (f"<atlas.ChangeSet of {self.location} at version {self.base.generation}: "
                f"{len(self.datasets)} datasets created, {len(self.segments)} segments>")


@dataclass
class Fork:
    """A picklable description of a store at one commit, to make writers from in tasks."""

    description: tuple
    root: Root

    def writer(self) -> "Atlas":
        """A handle on the fork's commit that writes segments straight to the storage and
        hands its work back with ``changes()`` instead of committing."""
        from atlas.core._atlas import Atlas
        from atlas.storage import from_description

        handle = Atlas(from_description(self.description), self.root, None)
        handle._fork = self
        return handle

    def __repr__(self) -> str:
        return f"<atlas.Fork of {self.description[1]!r} at version {self.root.generation}>"


def changes(store: "Atlas") -> ChangeSet:
    """Write the pending segments of a forked writer and hand back its change set; the writer
    starts afresh (at the fork's commit) afterwards."""
    from atlas.core import _maintain, _versions

    root = store._root
    generation = root.generation + 1
    catalog = store._catalog
    pending = store._pending
    pending.prepare(generation)
    written: dict = {}
    tables = dict(store._pending_tables(pending, written, _versions.ChangeCounter(catalog)))
    finished = pending.finish(generation)  # written and published, not committed
    segments = [(seg.array, FileRef(seg.key, seg.size, _maintain.level_of(seg.size)))
                for seg in finished]
    created = tables.get(("datasets",))
    names = [] if created is None else [
        n for n, dead, did in zip(created.columns["name"].tolist(), created.dead.tolist(),
                                  created.key.tolist()) if not dead and did >= root.next_did]
    out = ChangeSet(location=store.location, base=root,
                    used={c: getattr(catalog, f"next_{c}") for c in _rebase.COUNTERS},
                    tables=tables, segments=segments, datasets=names)
    pending.committed(generation)  # its files are the client's to commit now
    store._reload_catalog(root)
    return out


@dataclass
class Merged:
    """Change sets a client merged and has not flushed yet, renumbered into its id space."""

    tables: dict[tuple, list[Table]] = field(default_factory=dict)
    segments: list[tuple[str, FileRef]] = field(default_factory=list)
    summary: _rebase.Summary = field(default_factory=_rebase.Summary)

    def __bool__(self) -> bool:
        return bool(self.segments) or bool(self.tables)

    def section(self, section_id: tuple, own: Table | None) -> Table:
        """The rows of one catalog table: the merged change sets', then the client's own."""
        found = [*self.tables.get(section_id, []), *([own] if own is not None else [])]
        return found[0] if len(found) == 1 else merge(found[0].kind, found)


def merge_into(store: "Atlas", change_sets: list[ChangeSet]) -> None:
    """Check ``change_sets`` against each other, against the client's pending changes and
    against what was committed since their fork, then hold them for the next flush."""
    catalog = store._catalog
    root = store._root
    merged = store._merged
    own = _rebase.summarize({sid: t.log.table() for sid, t in catalog.pending_tables().items()},
                            root)
    staged = []
    seen = _rebase.Summary()
    merged_files = {ref.key for _array, ref in merged.segments}
    committed = root.keys()
    for change in change_sets:
        if not isinstance(change, ChangeSet):
            raise TypeError(f"merge() takes the ChangeSets that forked writers' changes() "
                            f"return, got {type(change).__name__}")
        if change.location != store.location:
            raise ValueError(f"this change set was made on {change.location}, not on "
                             f"{store.location}")
        base = change.base
        if base.generation > root.generation:
            raise ValueError(f"this change set was made on version {base.generation}, newer "
                             f"than this handle's ({root.generation}): reopen the store")
        check_not_merged(store, change, committed, merged_files)
        merged_files.update(ref.key for _array, ref in change.segments)
        summary = _rebase.summarize(change.tables, base)
        if base.commit != root.commit:  # committed since the fork: must not overlap
            try:
                since = _rebase.their_changes(store, base, root)
            except ConflictError:
                raise ConflictError(
                    f"cannot merge a change set into {store.location}: versions committed "
                    f"since its fork (at version {base.generation}) have expired, so what they "
                    "changed cannot be checked against it; nothing was merged: run its writer "
                    "again from a new fork") from None
            _check(store, summary, since, "a commit made since the fork")
        for other, what in ((own, "this handle's pending changes"),
                            (merged.summary, "a change set merged before"),
                            (seen, "another change set of this merge")):
            _check(store, summary, other, what)
        for name in summary.created:
            if catalog.did_of(name) is not None:
                raise ConflictError(f"a change set creates dataset {name!r}, which exists in "
                                    f"{store.location} already")
        _fold(seen, summary)
        staged.append(change)
    for change in staged:  # all checked: now renumber and hold them
        base = change.base
        shift = {c: getattr(catalog, f"next_{c}") - getattr(base, f"next_{c}")
                 for c in _rebase.COUNTERS}
        for c in _rebase.COUNTERS:
            setattr(catalog, f"next_{c}", getattr(catalog, f"next_{c}") + change.used[c]
                    - getattr(base, f"next_{c}"))
        for sid, table in _rebase.renumbered(change.tables, base, shift).items():
            merged.tables.setdefault(sid, []).append(table)
            if sid == ("schemas",):
                catalog.hold_schemas(zip(table.key.tolist(), table.columns["json"]))
        merged.segments += [(array, _rebase.remapped_ref(ref, base, shift))
                            for array, ref in change.segments]
    _fold(merged.summary, seen)


def check_not_merged(store: "Atlas", change: ChangeSet, committed: set[str],
                     merged_files: set[str]) -> None:
    """ConflictError when ``change``'s segments are merged already (held for the next flush,
    or among the files the handle's root names, ``committed``): one change set merged twice
    would list its files twice."""
    for _array, ref in change.segments:
        if ref.key in merged_files or ref.key in committed:
            where = "committed" if ref.key in committed else "merged, not flushed yet"
            raise ConflictError(f"cannot merge a change set into {store.location}: it was "
                                f"merged before (its segment {ref.key} is {where}); nothing "
                                "was merged")


def _check(store: "Atlas", ours: _rebase.Summary, theirs: _rebase.Summary, what: str) -> None:
    problem = _rebase.conflict(ours, theirs, store._name_in_base, store._dataset_of_slot,
                               us="the change set", them=what)
    if problem is not None:
        raise ConflictError(f"cannot merge a change set into {store.location}: it conflicts "
                            f"with {what}: {problem}; nothing was merged")


def _fold(into: _rebase.Summary, other: _rebase.Summary) -> None:
    for name in ("created", "deleted", "arrays", "dropped_arrays", "attrs", "array_attrs"):
        getattr(into, name).update(getattr(other, name))


def check_own_changes(store: "Atlas", merged: Merged) -> None:
    """ConflictError when the handle's own pending changes (made before or after it merged
    change sets) touch what those change sets touch: a flush would keep one side silently
    (two datasets of one name, a lost write, statistics of the other write)."""
    own = _rebase.summarize({sid: t.log.table()
                             for sid, t in store._catalog.pending_tables().items()},
                            store._root)
    problem = _rebase.conflict(own, merged.summary, store._name_in_base,
                               store._dataset_of_slot, them="a change set it merged")
    if problem is not None:
        raise ConflictError(f"cannot flush {store.location}: this handle's own changes "
                            f"conflict with a change set it merged: {problem}; nothing was "
                            "committed: reopen the store and redo the changes")


def check_files(store: "Atlas", merged: Merged) -> None:
    """The merged change sets' segments still exist (an orphan sweep run between a writer's
    ``changes()`` and this flush could have removed them on a local store)."""
    from atlas.errors import StaleHandleError

    storage = store._storage
    for _array, ref in merged.segments:
        try:
            storage.get_range(ref.key, max(0, ref.size - 1), 1, ref.size)
        except FileNotFoundError:
            raise StaleHandleError(
                f"{storage.location}/{ref.key}: a merged change set's segment is gone (an "
                "orphan sweep ran before this flush?); nothing was committed: run the "
                "writers again") from None


# -- blocks of one pending array, written by dask workers -------------------------------------

@dataclass
class BlockTarget:
    """Where a dask worker writes blocks of one array the client has defined but not
    committed: the store, the array's slot and schema, the client's codec settings."""

    description: tuple
    codec: str
    level: int
    block_size: int
    shuffle: bool
    generation: int
    array: str
    slot: int
    schema_id: int
    schema: Any


def block_target(store: "Atlas", array: str, slot: int, schema_id: int) -> BlockTarget:
    root = store._root
    return BlockTarget(store._storage.describe(), root.codec, root.level, root.block_size,
                       root.shuffle, root.generation + 1, array, slot, schema_id,
                       store._catalog.schema(schema_id))


def write_block(target: BlockTarget, values: Any, start: tuple[int, ...]) -> tuple:
    """Write one block (whole chunks of the array) to a segment of its own; returns (key,
    size, index) for the client to adopt. Runs on a worker."""
    import numpy as np

    from atlas.core._pending import PendingWrites
    from atlas.core._write import write_window
    from atlas.dtypes import check_data
    from atlas.storage import from_description

    schema = target.schema
    values = check_data(schema.dtype, np.asarray(values), f"array {target.array!r}")
    storage = from_description(target.description)
    pending = PendingWrites(storage, target.codec, target.level, target.block_size,
                            lambda _sid: schema, target.generation, shuffle=target.shuffle)
    write_window(pending, lambda _s, _c, _e: None, target.array, target.slot,
                 target.schema_id, schema, tuple(start), values, target.generation)
    (segment,) = pending.finish(target.generation)
    out = (segment.key, segment.size, segment.index)
    pending.committed(target.generation)  # the file is the client's to commit now
    return out
