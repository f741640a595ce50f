"""Rebase: a flush that finds a newer commit re-applies its changes on top of it.

A flush writes its segments and one catalog part (its *delta*) for the commit it read, then
commits conditionally. When another writer committed first, the flush reads what each commit
since then changed (their deltas, through the version records), and:

- if both touched the same thing, raises ConflictError naming it: both created one dataset
  name, both wrote one array of one dataset (or set one attribute of it, or of one of its
  arrays), one deleted a dataset the other changed, or one deleted (or redefined) an array
  whose attributes the other set;
- otherwise renumbers its new ids above the newer commit's counters (a rewritten part; its
  segments keep their bytes and get a slot remap in the root, ``FileRef.remap``) and commits
  on top of the newer root, retrying while others keep committing.

The same merge joins the change sets of forked writers (:mod:`atlas.core._fork`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas.core import _versions
from atlas.errors import ConflictError
from atlas.format.catalog import BLOOM, read_table
from atlas.format.catalog import MAGIC as PART_MAGIC
from atlas.format.root import FileRef, Root
from atlas.format.tables import Table

if TYPE_CHECKING:
    from atlas.core._atlas import Atlas

MAX_ATTEMPTS = 200  # a writer that loses this many races in a row gives up (ConflictError)
COUNTERS = ("did", "slot", "schema", "seq")


@dataclass
class Summary:
    """What one writer's deltas changed, as sets: dataset names it created (still live),
    committed datasets it deleted, and the (dataset, array) / (dataset, attribute) /
    (slot, array attribute) it wrote."""

    created: set = field(default_factory=set)
    deleted: set = field(default_factory=set)
    arrays: set = field(default_factory=set)
    dropped_arrays: set = field(default_factory=set)  # (dataset, array) deleted or redefined
    attrs: set = field(default_factory=set)
    array_attrs: set = field(default_factory=set)

    def add(self, tables: dict[tuple, Table], base: Root) -> None:
        """Fold in one commit's deltas (oldest first)."""
        for sid, table in tables.items():
            keys = table.key
            if sid == ("datasets",):
                names = table.columns["name"]
                new = keys >= base.next_did
                for name, dead in zip(names[new].tolist(), table.dead[new].tolist()):
                    (self.created.discard if dead else self.created.add)(name)
                self.deleted.update(keys[~new & table.dead].tolist())
            elif sid[0] == "array":
                old = keys < base.next_did
                self.arrays.update((d, sid[1]) for d in keys[old].tolist())
                # a dead row, or a new slot: the committed array (and its attributes) is gone
                gone = old & (table.dead | (np.asarray(table.columns["slot"]) >= base.next_slot))
                self.dropped_arrays.update((d, sid[1]) for d in keys[gone].tolist())
            elif sid[0] == "attr":
                old = keys < base.next_did
                self.attrs.update((d, sid[1]) for d in keys[old].tolist())
            elif sid[0] == "array_attr":
                old = keys < base.next_slot
                self.array_attrs.update((s, sid[1], sid[2]) for s in keys[old].tolist())


def summarize(tables: dict[tuple, Table], base: Root) -> Summary:
    out = Summary()
    out.add(tables, base)
    return out


def conflict(ours: Summary, theirs: Summary, names_of: Any, dataset_of_slot: Any,
             us: str = "this handle", them: str = "the other writer") -> str | None:
    """What both changed, in words (``us`` and ``them`` name the two sides), or None."""
    both = sorted(ours.created & theirs.created)
    if both:
        return f"both created dataset {both[0]!r}"
    both_arrays = sorted(ours.arrays & theirs.arrays)
    if both_arrays:
        did, array = both_arrays[0]
        return f"both wrote array {array!r} of dataset {names_of(did)!r}"
    both_attrs = sorted(ours.attrs & theirs.attrs)
    if both_attrs:
        did, key = both_attrs[0]
        return f"both set attribute {key!r} of dataset {names_of(did)!r}"
    both_array_attrs = sorted(ours.array_attrs & theirs.array_attrs)
    if both_array_attrs:
        slot, array, key = both_array_attrs[0]
        return (f"both set attribute {key!r} of array {array!r} of dataset "
                f"{names_of(dataset_of_slot(array, slot))!r}")
    for deleter, writer, who, other in ((theirs, ours, them, us), (ours, theirs, us, them)):
        array_attrs = {(dataset_of_slot(a, s), a) for s, a, _k in writer.array_attrs}
        touched = {d for d, _a in writer.arrays} | {d for d, _k in writer.attrs} | {
            d for d, _a in array_attrs}
        hit = sorted(deleter.deleted & touched)
        if hit:
            return f"{who} deleted dataset {names_of(hit[0])!r}, which {other} changed"
        dropped = sorted(deleter.dropped_arrays & array_attrs)
        if dropped:
            did, array = dropped[0]
            return (f"{who} deleted or redefined array {array!r} of dataset "
                    f"{names_of(did)!r}, whose attributes {other} set")
    return None


def part_tables(store: "Atlas", ref: FileRef) -> dict[tuple, Table]:
    """Every table of one catalog part."""
    storage = store._storage
    footer = store._files.footer(ref, PART_MAGIC)
    read = footer.reader(lambda o, n: storage.get_range(ref.key, o, n, ref.size))
    where = f"{storage.location}/{ref.key}"
    return {sid: read_table(footer, sid, read, where) for sid in footer.sections
            if sid != BLOOM}


class Seen:
    """What the attempts of one rebase have read: records and delta tables of the commits since
    its base, by commit id and part key (immutable), so that each attempt reads only what
    landed since the attempt before (an attempt that read every commit since the base again
    took longer with each loss, and lost every race to a writer that flushes without pause)."""

    def __init__(self) -> None:
        self.roots: dict[str, Root] = {}
        self.tables: dict[str, dict[tuple, Table]] = {}


def their_changes(store: "Atlas", base: Root, latest: Root, seen: Seen | None = None
                  ) -> Summary:
    """What the commits after ``base`` up to ``latest`` changed, from their deltas."""
    storage = store._storage
    seen = Seen() if seen is None else seen
    newer = _versions.newer_commits(storage, base, latest, seen.roots)
    if not newer or newer[-1].parent != base.commit:
        raise ConflictError(
            f"store at {storage.location} was committed by another writer since this handle "
            "read it, and the versions committed since have expired, so this flush cannot be "
            "re-applied on top of them; reopen the store and redo the changes")
    theirs = Summary()
    sizes = {}
    for root in reversed(newer):  # oldest first: a later delete undoes an earlier create
        if root.delta is None:
            continue  # a compaction, an expire, a policy change: no data changed
        sizes.update({p.key: p.size for p in root.parts})
        tables = seen.tables.get(root.delta)
        if tables is None:
            try:
                size = sizes.get(root.delta) or _size_of(storage, root.delta)
                tables = seen.tables[root.delta] = part_tables(store, FileRef(root.delta, size))
            except FileNotFoundError:  # an expire removed it since the chain was read
                raise ConflictError(
                    f"store at {storage.location} was committed by another writer since this "
                    f"handle read it, and what version {root.generation} changed has expired "
                    "meanwhile, so this flush cannot be re-applied on top of it; reopen the "
                    "store and redo the changes") from None
        theirs.add(tables, base)
    return theirs


def _size_of(storage, key: str) -> int:
    for found, size, _mtime in storage.list(key.rsplit("/", 1)[0]):
        if found == key:
            return size
    raise FileNotFoundError(f"{storage.location}/{key}: a version's delta part is missing")


# -- renumbering --------------------------------------------------------------------------------

def shifts(base: Root, latest: Root) -> dict[str, int]:
    """How far each new id of a change made on ``base`` moves to sit above ``latest``'s."""
    return {c: getattr(latest, f"next_{c}") - getattr(base, f"next_{c}") for c in COUNTERS}


def renumbered(tables: dict[tuple, Table], base: Root, shift: dict[str, int]
               ) -> dict[tuple, Table]:
    """``tables`` with every id at or above ``base``'s counters moved by ``shift`` (keys stay
    sorted: the ids that move are the largest)."""
    if not any(shift.values()):
        return tables
    firsts = {c: getattr(base, f"next_{c}") for c in COUNTERS}

    def moved(values: np.ndarray, counter: str) -> np.ndarray:
        if not shift[counter]:
            return values
        return np.where(values >= firsts[counter], values + shift[counter], values)

    out = {}
    for sid, table in tables.items():
        key_counter = {"datasets": "did", "array": "did", "attr": "did",
                       "array_attr": "slot", "schemas": "schema"}[sid[0]]
        columns = dict(table.columns)
        if sid[0] == "array":
            columns["slot"] = moved(columns["slot"], "slot")
            columns["schema"] = moved(columns["schema"], "schema")
        elif sid[0] in ("attr", "array_attr"):
            columns["seq"] = moved(columns["seq"], "seq")
        out[sid] = Table(table.kind, moved(table.key, key_counter), table.dead, columns)
    return out


def remapped_ref(ref: FileRef, base: Root, shift: dict[str, int]) -> FileRef:
    if not shift["slot"]:
        return ref
    first = base.next_slot
    if ref.remap is not None:  # already remapped once (a forked writer's file): compose
        first, earlier = ref.remap
        return FileRef(ref.key, ref.size, ref.level, (first, earlier + shift["slot"]))
    return FileRef(ref.key, ref.size, ref.level, (first, shift["slot"]))


def backoff(attempt: int) -> None:
    """A short random sleep that grows with the attempts: writers that keep colliding spread
    out instead of retrying in lock step."""
    time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** min(attempt, 7))))
