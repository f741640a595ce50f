"""The catalog of one store handle: datasets, array definitions, attributes and schemas.

It maps the data model onto catalog tables (``atlas.format.tables``): dataset ids (``did``) in
creation order, per array name the dataset -> (slot, schema, statistics) table, per attribute
key a table of values. Committed tables are read from the root's catalog parts the first time
they are used; changes are logged (:class:`~atlas.core._tables.RowLog`) until the flush writes
them as one new part.

A dataset's rows in other tables are not deleted with it: rows of a dataset id that is no longer
live are dead weight that merges and compaction drop, and every query joins on the live ids.
"""

from __future__ import annotations

from array import array
from typing import Any, Callable, Iterator

import numpy as np

from atlas._pools import worker_pool
from atlas.core._index import IndexCache
from atlas.core._tables import LayeredTable
from atlas.errors import AlreadyExistsError, CorruptionError
from atlas.format import values as value_format
from atlas.format.catalog import MAGIC as PART_MAGIC
from atlas.format.bloom import might_contain
from atlas.format.catalog import check_ids, read_bloom, read_table, table_kind
from atlas.format.root import Root
from atlas.format.schema import Schema
from atlas.format.tables import Table, check_keys, merge
from atlas.storage import Storage

_I64 = np.int64
NAME_SEARCHES = 8  # name lookups that search bytes before a dict of every name is built
_ABSENT = object()


def _is_name(array) -> bool:
    """Whether ``array`` can name an array table at all (callers pass what users give)."""
    return isinstance(array, str) and bool(array)


class NameList(list):
    """The list ``list_datasets()`` returns. Passed back to a bulk read unchanged, it means
    every live dataset, with no per-name work; any change to it makes it an ordinary list."""

    __slots__ = ("_token",)

    def __init__(self, names, token: object):
        super().__init__(names)
        self._token = token

    def _touched(self) -> None:
        self._token = None

    def token(self) -> object:
        return self._token


def _mutator(name: str):
    method = getattr(list, name)

    def changed(self, *args, **kwargs):
        self._touched()
        return method(self, *args, **kwargs)

    changed.__name__ = name
    return changed


for _name in ("__setitem__", "__delitem__", "__iadd__", "__imul__", "append", "extend",
              "insert", "pop", "remove", "clear", "sort", "reverse"):
    setattr(NameList, _name, _mutator(_name))


def _every_live_row(table: Table, dids: np.ndarray, gone: Callable[[], np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``Catalog.rows`` of an array table whose live rows are exactly ``dids`` (every live
    dataset, in order), without a search; None when they are not. ``gone()``: the ids of
    deleted datasets, whose rows an array table keeps until a merge from the oldest part."""
    if len(table) < len(dids):
        return None
    dead = table.dead
    if len(table) == len(dids) and not dead.any():
        if not np.array_equal(table.key, dids):
            return None
        # the columns themselves (read-only views), not copies
        return (_read_only(table.columns["slot"]), _read_only(table.columns["schema"]),
                np.ones(len(dids), bool))
    keep = ~dead
    if len(table) > len(dids):
        keep &= ~np.isin(table.key, gone())
    if int(np.count_nonzero(keep)) != len(dids) or not np.array_equal(table.key[keep], dids):
        return None
    return table.columns["slot"][keep], table.columns["schema"][keep], np.ones(len(dids), bool)


def _read_only(values: np.ndarray) -> np.ndarray:
    view = values.view()
    view.flags.writeable = False
    return view


class Catalog:
    def __init__(self, storage: Storage, root: Root, files: IndexCache):
        self.storage = storage
        self.root = root
        self.files = files
        self.tables: dict[tuple, LayeredTable] = {}
        self.next_did = root.next_did
        self.next_slot = root.next_slot
        self.next_schema = root.next_schema
        self.next_seq = root.next_seq
        self._dids: dict[str, int] | None = None  # live name -> did, once built
        # names created in bulk since (names, first did): added to the dict when it is next
        # used, so that a stacked write followed by a flush never pays for it
        self._dids_todo: list[tuple[list[str], int]] = []
        # (first did, bloom hashes of the names, their bloom.join-ed bytes or None) of each
        # bulk create since the last commit: the flush's Bloom filter and name column reuse
        # them (dids only grow under one Catalog)
        self._created: list[tuple[int, np.ndarray, np.ndarray | None]] = []
        # until then: names this handle created (-> did) or deleted (-> None), and the datasets
        # sections of the parts, searched as joined bytes
        self._names_changed: dict[str, int | None] = {}
        self._name_blobs: dict[str, tuple | None] = {}
        self._blooms: dict[str, Any] = {}
        self._searches = 0
        self._live: list | None = None  # see _live_view
        # section ids by kind and by prefix: of the root's parts (keyed by their keys), and
        # of the tables this handle opened (see table())
        self._stored: tuple | None = None
        self._opened: dict[tuple, dict[tuple, None]] = {}
        self._live_dids: np.ndarray | None = None  # _live_view's dids as numpy, once asked for
        # the parts loaded tables were read from: their columns are read when first used, so
        # the tables must not outlive those files (see forget_files)
        self._read_from: set[str] = set()
        self._schemas: list[Schema] | None = None
        self._schema_ids: dict[tuple, int] = {}
        self.new_schemas: list[tuple[int, Schema]] = []
        # schemas of merged change sets (numbered, not logged: the merged tables hold them)
        self.held_schemas: list[tuple[int, Schema]] = []
        # what the per-dataset hot path may keep between calls: the arguments of define_array
        # already checked (-> schema id), and ``epoch``, which grows whenever something a
        # DatasetView keeps (a dataset id, an array's row) may have changed
        self.defined: dict[tuple, int] = {}
        self.epoch = 0
        self._array_tables: dict[str, LayeredTable] = {}
        # the names of the last stacked write and their ids: the next array of the same names
        # (a stacked write is one call per array) skips a million dict lookups
        self.last_resolved: tuple[list[str], np.ndarray, int] | None = None

    def _moved(self) -> None:
        """Something a DatasetView or a stacked write keeps may have changed."""
        self.epoch += 1
        self.last_resolved = None

    # -- tables --------------------------------------------------------------------------------

    def table(self, section_id: tuple) -> LayeredTable:
        found = self.tables.get(section_id)
        if found is None:
            found = self.tables[section_id] = LayeredTable(
                table_kind(section_id), lambda: self._load(section_id))
            self._opened.setdefault(section_id[:-1], {})[section_id] = None
        return found

    def put_table(self, section_id: tuple, table: LayeredTable) -> None:
        """Hold ``table`` as the table ``section_id`` (a version-1 store's, read whole)."""
        self.tables[section_id] = table
        self._opened.setdefault(section_id[:-1], {})[section_id] = None

    def _footers(self):
        return self.files.footers(self.root.parts, PART_MAGIC)

    def _load(self, section_id: tuple) -> Table:
        kind = table_kind(section_id)
        found = []
        for ref, footer in zip(self.root.parts, self._footers()):
            # columns other than key and dead are read when first used, and checked then
            table = read_table(footer, section_id, footer.reader(
                lambda o, n, key=ref.key, size=ref.size: self.storage.get_range(key, o, n, size)),
                f"{self.storage.location}/{ref.key}", root=self.root, lazy=True)
            if table is not None:
                self._read_from.add(ref.key)
                found.append(table)
        return merge(kind, found)

    def forget_files(self, keys) -> None:
        """This handle deleted the files ``keys`` (parts no retained version reads): tables
        read from one of them, whose columns would be read from it when first used, are dropped
        and read again from the root's parts when next used."""
        if self._read_from.isdisjoint(keys):
            return
        for table in self.tables.values():
            table.forget_committed(0)
        self._read_from = set()
        self._moved()  # DatasetViews keep rows of the dropped tables

    def section_ids(self, kind: str) -> list[tuple]:
        """Every table of ``kind`` ("array", "attr", "array_attr") committed or pending."""
        seen = dict(self._stored_ids()[0].get(kind, {}))
        for prefix, ids in list(self._opened.items()):
            if prefix[:1] == (kind,):
                seen.update((sid, None) for sid in ids if sid not in seen and (
                    len(self.tables[sid].log) or self.tables[sid].loaded
                    and len(self.tables[sid].committed())))
        return list(seen)

    def _prefixed_ids(self, prefix: tuple) -> list[tuple]:
        """The tables ``prefix + (name,)`` the parts hold or this handle opened (rows or not):
        what a look at one array's attributes walks, not every table of its kind (a dataset of
        16,000 arrays read them all in quadratic time)."""
        found = dict(self._stored_ids()[1].get(prefix, {}))
        found.update(self._opened.get(prefix, {}))
        return list(found)

    def _stored_ids(self) -> tuple[dict, dict]:
        """({kind: section ids}, {prefix: section ids}) of the root's parts, read once per
        root (a part's footer lists its tables)."""
        keys = tuple(ref.key for ref in self.root.parts)
        if self._stored is None or self._stored[0] != keys:
            by_kind: dict[str, dict] = {}
            by_prefix: dict[tuple, dict] = {}
            for footer in self._footers():
                for sid in footer.sections:
                    by_kind.setdefault(sid[0], {})[sid] = None
                    by_prefix.setdefault(sid[:-1], {})[sid] = None
            self._stored = (keys, (by_kind, by_prefix))
        return self._stored[1]

    # -- datasets ------------------------------------------------------------------------------

    def _live_view(self) -> list:
        """[names (None until asked for), dids, token] of the live datasets in creation order;
        the dids are a read-only numpy array, an ``array('q')`` once datasets are created."""
        if self._live is None:
            table = self.table(("datasets",)).view()
            dids = table.key[~table.dead] if table.dead.any() else table.key
            self._live_dids = _read_only(dids)
            self._live = [None, self._live_dids, object()]
        return self._live

    def _growing_dids(self) -> array:
        """The live dids as an ``array('q')``, to append to."""
        dids = self._live[1]
        if not isinstance(dids, array):
            self._live[1] = array("q")
            self._growing_dids().frombytes(np.ascontiguousarray(dids, _I64).view(np.uint8))
        return self._live[1]

    def _live_names(self) -> list[str]:
        live = self._live_view()
        if live[0] is None:
            table = self.table(("datasets",)).view()
            table.prefetch(["name"], worker_pool().submit)  # its pieces side by side
            # the handle keeps the list, not the column
            live[0] = (table.take("name", np.flatnonzero(~table.dead)).tolist()
                       if table.dead.any() else table.texts("name"))
        return live[0]

    def joined_names(self) -> tuple[bytes, int, np.ndarray | None] | None:
        """The names of the live datasets without a Python string per name: (the names of
        the committed datasets table joined by NUL, their count, the positions of the live ones
        or None for all), when the handle keeps no list of names yet and the table is one
        stored section with nothing pending; else None (ask :meth:`names`)."""
        if self._live is not None and self._live[0] is not None:
            return None
        layered = self.table(("datasets",))
        if len(layered.log):
            return None
        table = layered.view()
        joined = table.joined_texts("name")
        if joined is None:
            return None
        return joined, len(table), np.flatnonzero(~table.dead) if table.dead.any() else None

    def names(self) -> NameList:
        names = self._live_names()
        return NameList(names, self._live[2])

    def names_at(self, positions: np.ndarray) -> list[str]:
        """Names of the live datasets at ``positions`` (in creation order) without turning
        every name into a string when they are not known yet."""
        if self._live is not None and self._live[0] is not None:
            names = self._live[0]
            return [names[i] for i in positions.tolist()]
        table = self.table(("datasets",)).view()
        rows = np.flatnonzero(~table.dead)[positions] if table.dead.any() else positions
        return table.take("name", np.asarray(rows, _I64)).tolist()

    def prefetch_names(self, submit: Callable) -> None:
        """Start decompressing the names column on another thread (see ``names_at``)."""
        if self._live is None or self._live[0] is None:
            self.table(("datasets",)).view().prefetch(["name"], submit)

    def _deleted_dids(self) -> np.ndarray:
        """Ids of the deleted datasets whose tombstones the datasets table keeps."""
        table = self.table(("datasets",)).view()
        return table.key[table.dead]

    def live_dids(self) -> np.ndarray:
        """The live dataset ids in creation order (read-only: the handle keeps it)."""
        dids = self._live_view()[1]
        if self._live_dids is None:  # appended to since: a copy (the array keeps growing)
            self._live_dids = _read_only(np.frombuffer(dids, _I64).copy() if len(dids) else
                                         np.zeros(0, _I64))
        return self._live_dids

    def count(self) -> int:
        return len(self._live_view()[1])

    def is_all(self, names: Any) -> bool:
        """Whether ``names`` is an unchanged ``list_datasets()`` list of the current state."""
        return isinstance(names, NameList) and self._live is not None and \
            names.token() is self._live[2]

    def dids(self) -> dict[str, int]:
        if self._dids is None:
            dids = self._live_view()[1]
            self._dids = dict(zip(self._live_names(),
                                  dids.tolist() if isinstance(dids, np.ndarray) else dids))
            self._names_changed = {}
            self._dids_todo = []  # the live names hold them
        while self._dids_todo:
            names, first = self._dids_todo.pop(0)
            self._dids.update(zip(names, range(first, first + len(names))))
        return self._dids

    def did_of(self, name: str) -> int | None:
        """The live dataset id of ``name``, or None. Until a dict of every name is worth
        building (after ``NAME_SEARCHES`` lookups), a lookup searches the parts' name columns
        as bytes: a fresh handle appending or deleting one dataset never parses every name."""
        if self._dids is not None:
            return self.dids().get(name)
        if name in self._names_changed:
            return self._names_changed[name]
        self._searches += 1
        if self._searches > NAME_SEARCHES:
            return self.dids().get(name)
        found = self._search_parts(name)
        return None if found is _ABSENT else found

    def _search_parts(self, name: str):
        """The live id of ``name`` from the parts' name columns, newest part first; None when
        every dataset of that name is dead, _ABSENT when no part names it. A dataset's newest
        row settles it, and a newer part may hold only a tombstone of an older dataset of the
        name while an older part holds the live one (a delete rebased over a commit that
        deleted and re-created the name), so dead ids are remembered, not taken as the
        answer."""
        needle = b"\x00" + name.encode("utf-8") + b"\x00"
        dead_ids: set[int] = set()
        for ref, footer in reversed(list(zip(self.root.parts, self._footers()))):
            blob = self._name_blobs.get(ref.key)
            if blob is None and ref.key not in self._name_blobs:
                blob = self._name_blobs[ref.key] = self._name_blob(ref, footer)
            if blob is None:
                continue
            if blob is False:  # names that could not be searched as bytes
                self._searches = NAME_SEARCHES + 1
                return self.dids().get(name, _ABSENT)
            text, keys, dead = blob
            hits = []
            pos = text.find(needle)
            while pos >= 0:
                hits.append(text.count(b"\x00", 0, pos))
                pos = text.find(needle, pos + 1)
            live = [int(keys[r]) for r in hits if not dead[r] and int(keys[r]) not in dead_ids]
            if live:
                return live[-1]
            dead_ids.update(int(keys[r]) for r in hits)
        return None if dead_ids else _ABSENT

    def _name_blob(self, ref, footer):
        ref_section = footer.sections.get(("datasets",))
        if ref_section is None:
            return None
        from atlas.format.container import read_section

        where = f"{self.storage.location}/{ref.key}"
        columns = read_section(ref_section, footer.reader(
            lambda o, n: self.storage.get_range(ref.key, o, n, ref.size))(
                ref_section.offset, ref_section.stored), where, joined=True)
        names = columns.get("name")
        if "key" not in columns or "dead" not in columns or names is None:
            raise CorruptionError(f"{where}: datasets table lacks a column")
        check_keys(columns["key"], "datasets", where)
        check_ids(("datasets",), columns["key"], columns, self.root, where)
        if not isinstance(names, memoryview):  # stored with offsets: names hold a NUL
            return False
        return b"\x00" + names + b"\x00", columns["key"], np.asarray(columns["dead"]) != 0

    def _may_exist(self, name: str) -> bool:
        """False when no committed part can hold ``name`` (their names filters say so)."""
        if not self.root.parts:
            return False
        for ref, footer in zip(self.root.parts, self._footers()):
            bits = self._blooms.get(ref.key, _ABSENT)
            if bits is _ABSENT:
                bits = self._blooms[ref.key] = read_bloom(footer, footer.reader(
                    lambda o, n, r=ref: self.storage.get_range(r.key, o, n, r.size)),
                    f"{self.storage.location}/{ref.key}")
            if bits is True or bits is not None and might_contain(bits, name):
                return True
        return False

    def create(self, name: str) -> int:
        fresh = (self._dids is None and name not in self._names_changed
                 and not self._may_exist(name))
        if not fresh and self.did_of(name) is not None:
            raise AlreadyExistsError(f"dataset {name!r} already exists in "
                                     f"{self.storage.location}")
        did = self.next_did
        self.next_did += 1
        self.table(("datasets",)).log.add(did, 0, (), (name,))
        if self._dids is not None:
            self.dids()[name] = did
        else:
            self._names_changed[name] = did
        if self._live is not None:  # datasets are created in did order: the list grows at its end
            if self._live[0] is not None:
                self._live[0].append(name)
            self._growing_dids().append(did)
            self._live[2] = object()  # lists handed out before no longer list everything
            self._live_dids = None
        return did

    def create_many(self, names: list[str], dids: np.ndarray,
                    hashes: np.ndarray | None = None, joined: Any = None) -> None:
        """Datasets ``names`` (checked, new, distinct) with the ids ``dids`` (the next ones,
        consecutive); ``hashes``: their ``bloom.name_hashes``, and ``joined``: their
        ``bloom.join``, when known."""
        self.dids()  # the caller looked every name up: the dict exists
        self.table(("datasets",)).log.extend(dids, name=names)
        self._dids_todo.append((names, int(dids[0])))
        if hashes is not None:
            self._created.append((int(dids[0]), hashes, None if joined is None else joined.data))
        self.next_did = int(dids[-1]) + 1
        if self._live is not None:
            if self._live[0] is not None:
                self._live[0].extend(names)
            self._growing_dids().frombytes(np.ascontiguousarray(dids, _I64).view(np.uint8))
            self._live[2] = object()
            self._live_dids = None

    def delete(self, name: str, did: int) -> None:
        self.table(("datasets",)).log.append(did, dead=True, name=name)
        if self._dids is not None:
            self.dids().pop(name, None)
        else:
            self._names_changed[name] = None
        self._live = None
        self._moved()

    # -- arrays --------------------------------------------------------------------------------

    def array_table(self, array: str) -> LayeredTable:
        found = self._array_tables.get(array)
        if found is None:
            found = self._array_tables[array] = self.table(("array", array))
        return found

    def changed_since_commit(self, array: str, dids: Callable[[], np.ndarray]) -> bool:
        """Whether ``array`` of one of the datasets ``dids()`` (asked for only where this
        handle has logged rows of it) was defined, written or changed since the commit."""
        if not _is_name(array):
            return False
        log = self.array_table(array).log
        if not len(log):
            return False
        for did in dids().tolist():
            row = log.find(did)
            if row >= 0 and not log.is_dead(row):
                return True
        return False

    def array_row(self, array: str, did: int) -> tuple[int, int, bool] | None:
        """(slot, schema id, pending) of ``array`` in dataset ``did``, or None."""
        if not _is_name(array):
            return None
        table = self.array_table(array)
        log = table.log
        row = log.find(did)
        if row >= 0:  # the hot path of a per-dataset ingest
            if log.is_dead(row):
                return None
            at = row * log.stride
            return log.data[at + 1], log.data[at + 2], True
        if not self.is_committed(did):  # created since the commit: rows in the log only
            return None
        found = table.get(did)
        if found is None or table.is_dead(found):
            return None
        return (int(table.value(found, "slot")), int(table.value(found, "schema")),
                found[0] == "log")

    def array_stats(self, array: str, did: int) -> tuple | None:
        """(nulls, valid, min bits, max bits, smin, smax) as committed; None while pending."""
        table = self.table(("array", array))
        found = table.get(did)
        if found is None or found[0] == "log" or table.is_dead(found):
            return None
        return tuple(table.value(found, n) for n in ("nulls", "valid", "min", "max", "smin",
                                                     "smax"))

    def define(self, array: str, did: int, schema_id: int) -> int:
        slot = self.next_slot
        self.next_slot += 1
        self.array_table(array).log.add(did, 0, (slot, schema_id))
        return slot

    def undefine(self, array: str, did: int, slot: int, schema_id: int) -> None:
        self.array_table(array).log.add(did, 1, (slot, schema_id))
        self._moved()

    def reshaped(self, array: str, did: int, slot: int, schema_id: int) -> None:
        """The array has the schema ``schema_id`` now (resized; its statistics are recomputed
        at the next flush)."""
        self.array_table(array).log.add(did, 0, (slot, schema_id))
        self._moved()  # views keep the old schema id in their rows

    def stats_changed(self, array: str, did: int, slot: int, schema_id: int) -> None:
        """Written to: the statistics are recomputed at the next flush."""
        log = self.array_table(array).log
        if log.find(did) < 0:
            log.add(did, 0, (slot, schema_id))

    def rows(self, array: str, dids: np.ndarray, everything: bool = False
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slots, schema ids, found) of ``array`` in datasets ``dids``; ``everything`` says
        ``dids`` are all live datasets in order (no search needed when the table is exactly
        those rows)."""
        table = self.table(("array", array)).view() if _is_name(array) else \
            Table.empty("array")
        if not len(table):  # an array no dataset has yet (a stacked write defining it)
            return (np.zeros(len(dids), _I64), np.zeros(len(dids), _I64),
                    np.zeros(len(dids), bool))
        if everything:
            found = _every_live_row(table, dids, self._deleted_dids)
            if found is not None:
                return found
        pos = table.find(dids)
        found = pos >= 0
        found[found] = ~table.dead[pos[found]]
        pos = np.where(found, pos, 0)
        return table.columns["slot"][pos], table.columns["schema"][pos], found

    def array_names(self) -> list[str]:
        """Sorted distinct array names over live datasets."""
        live = self.live_dids()
        out = []
        for section_id in self.section_ids("array"):
            table = self.table(section_id).view().live()
            if len(table) and np.isin(table.key, live).any():
                out.append(section_id[1])
        return sorted(out)

    def arrays_of(self, did: int) -> list[str]:
        """The arrays of one dataset, in the order they were defined."""
        found = []
        for section_id in self.section_ids("array"):
            row = self.array_row(section_id[1], did)
            if row is not None:
                found.append((row[0], section_id[1]))
        return [name for _slot, name in sorted(found)]

    # -- attributes ----------------------------------------------------------------------------

    def is_committed(self, did: int) -> bool:
        """Whether dataset ``did`` may have committed rows (it was created before the commit
        this handle is at): a dataset created since has rows in the logs only, so appending
        one dataset never loads a committed table."""
        return did < self.root.next_did

    def set_attr(self, section_id: tuple, key: int, encoded: tuple[int, int, bytes]) -> None:
        table = self.table(section_id)
        found = table.get(key, section_id[0] != "attr" or self.is_committed(key))
        if found is not None and not table.is_dead(found):
            seq = int(table.value(found, "seq"))
        else:
            seq = self.next_seq
            self.next_seq += 1
        tag, num, data = encoded
        table.log.add(key, 0, (seq, tag, num), (data,))

    def get_attr(self, section_id: tuple, key: int) -> tuple[int, Any] | None:
        """(seq, value) of one attribute, or None."""
        table = self.tables.get(section_id) or self.table(section_id)
        found = table.get(key, section_id[0] != "attr" or self.is_committed(key))
        if found is None or table.is_dead(found):
            return None
        value = value_format.decode_stored(
            int(table.value(found, "tag")), int(table.value(found, "num")),
            table.value(found, "data"), f"{self.storage.location}: attribute {list(section_id)}")
        return int(table.value(found, "seq")), value

    def del_attr(self, section_id: tuple, key: int) -> bool:
        table = self.table(section_id)
        found = table.get(key)
        if found is None or table.is_dead(found):
            return False
        table.log.append(key, dead=True, data=b"")
        return True

    def attrs(self, prefix: tuple, key: int) -> Iterator[tuple[str, Any]]:
        """(name, value) of every attribute of ``key`` among the tables ``prefix + (name,)``,
        in the order they were first set."""
        found = []
        for section_id in self._prefixed_ids(prefix):
            hit = self.get_attr(section_id, key)
            if hit is not None:
                found.append((hit[0], section_id[-1], hit[1]))
        return ((name, value) for _seq, name, value in sorted(found, key=lambda f: f[0]))

    # -- schemas -------------------------------------------------------------------------------

    def schemas(self) -> list[Schema]:
        if self._schemas is None:
            table = self.table(("schemas",)).committed()
            out: list[Schema] = []
            for expected, (key, text) in enumerate(zip(table.key.tolist(),
                                                       table.columns["json"])):
                if key != expected:
                    raise CorruptionError(f"{self.storage.location}: schema {expected} is "
                                          "missing from the catalog")
                try:
                    schema = Schema.from_value(value_format.loads(text))
                except (ValueError, TypeError, KeyError) as err:
                    raise CorruptionError(f"{self.storage.location}: schema {key} does not "
                                          f"decode ({err})") from err
                out.append(schema)
            self._schemas = out
            self.fast_dtypes = [_fast_dtype(s) for s in out]
            self._schema_ids = {s.key(): i for i, s in enumerate(out)}
            for sid, schema in sorted(self.new_schemas + self.held_schemas,
                                      key=lambda pair: pair[0]):
                self._schemas.append(schema)
                self.fast_dtypes.append(_fast_dtype(schema))
                self._schema_ids[schema.key()] = sid
        return self._schemas

    def fast_write(self, schema_id: int):
        """:func:`_fast_dtype` of a schema (the hot path of ``write_array``)."""
        fast = self.fast_dtypes if self._schemas is not None else (self.schemas(),
                                                                     self.fast_dtypes)[1]
        return fast[schema_id]

    def schema(self, schema_id: int) -> Schema:
        schemas = self.schemas()
        if not 0 <= schema_id < len(schemas):
            raise CorruptionError(f"{self.storage.location}: schema {schema_id} does not exist "
                                  f"(the catalog has {len(schemas)})")
        return schemas[schema_id]

    def hold_schemas(self, rows) -> None:
        """Know the schemas ``(id, json)`` of a merged change set (renumbered into this
        catalog's ids) before the flush that commits them: later writes intern after them."""
        schemas = self.schemas()
        for sid, text in rows:
            schema = Schema.from_value(value_format.loads(text))
            if sid != len(schemas):
                raise CorruptionError(f"{self.storage.location}: a merged schema is numbered "
                                      f"{sid}, the catalog holds {len(schemas)}")
            schemas.append(schema)
            self.fast_dtypes.append(_fast_dtype(schema))
            self._schema_ids.setdefault(schema.key(), sid)
            self.held_schemas.append((sid, schema))

    def intern(self, schema: Schema) -> int:
        schemas = self.schemas()
        key = schema.key()
        found = self._schema_ids.get(key)
        if found is None:
            found = self.next_schema
            self.next_schema += 1
            if found != len(schemas):
                raise CorruptionError(f"{self.storage.location}: the catalog holds "
                                      f"{len(schemas)} schemas, its root counts {found}")
            schemas.append(schema)
            self.fast_dtypes.append(_fast_dtype(schema))
            self._schema_ids[key] = found
            self.new_schemas.append((found, schema))
            self.table(("schemas",)).log.append(found, json=value_format.dumps(
                schema.to_value()))
        return found

    # -- flush ---------------------------------------------------------------------------------

    def created_hashes(self, table: Table) -> np.ndarray | None:
        """The name hashes of a pending datasets table, when bulk creates hashed every name of
        it (else None: the Bloom filter hashes them)."""
        if not self._created:
            return None
        keys = table.key
        out = np.empty(len(keys), np.uint64)
        covered = 0
        for first, hashes, _joined in self._created:
            lo, hi = np.searchsorted(keys, [first, first + len(hashes)]).tolist()
            # a table's keys are sorted and unique: a span of hi - lo - 1 means consecutive
            if hi > lo and keys[hi - 1] - keys[lo] == hi - lo - 1:
                out[lo:hi] = hashes[keys[lo] - first:keys[hi - 1] - first + 1]
            else:
                out[lo:hi] = hashes[keys[lo:hi] - first]
            covered += hi - lo
        return out if covered == len(keys) and covered else None

    def created_name_bytes(self, table: Table) -> bytes | None:
        """The stored name column of a pending datasets table (``encode_column``'s text
        bytes), when one bulk create made exactly its rows and joined their names already
        (else None: the column is encoded from the names)."""
        if len(self._created) != 1 or not len(table) or table.dead.any():
            return None
        first, hashes, joined_bytes = self._created[0]
        keys = table.key  # sorted and unique: both ends right means exactly those dids
        if joined_bytes is None or len(keys) != len(hashes) or int(keys[0]) != first or \
                int(keys[-1]) != first + len(keys) - 1:
            return None
        return b"\x00" + joined_bytes[:-1].tobytes()  # names split by NUL, none after the last

    def pending_tables(self) -> dict[tuple, LayeredTable]:
        return {sid: t for sid, t in self.tables.items() if len(t.log)}

    def counters(self) -> dict[str, int]:
        return {"next_did": self.next_did, "next_slot": self.next_slot,
                "next_schema": self.next_schema, "next_seq": self.next_seq}

    def committed(self, root: Root, written: dict[tuple, Table], marks: dict[tuple, int]
                  ) -> None:
        """The flush committed ``written``: the first ``marks[table]`` rows of each log."""
        self.root = root
        self._created = []
        self._moved()  # rows that were pending are committed now
        for section_id, table in self.tables.items():
            if section_id not in written:
                continue
            delta = written[section_id]
            if delta is None:  # too big to keep: read again from the parts when next used
                table.forget_committed(marks.get(section_id, len(table.log)))
            else:
                table.applied(delta, marks.get(section_id, len(table.log)))
        committed = {int(k) for k in (written.get(("schemas",)) or Table.empty("schemas")).key}
        self.new_schemas = [(sid, s) for sid, s in self.new_schemas if sid not in committed]


def _fast_dtype(schema: Schema):
    """(numpy dtype, shape) data written whole must have for the fast path of an array of one
    chunk, or None for arrays of more chunks and for strings (whose values need checks)."""
    if schema.n_chunks == 1 and not schema.dtype.is_string:
        return schema.dtype.numpy, schema.shape
    return None
