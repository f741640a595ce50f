"""Catalog tables: typed columns keyed by an int64 ``key``, and how newer rows replace older.

Every catalog table has the same shape: a sorted, unique int64 ``key`` (a dataset id, or a
schema id), a ``dead`` flag (a tombstone: the row was deleted), and the columns of its kind:

    datasets      key = dataset id   name (txt)
    schemas       key = schema id    json (txt: the schema as a structured value)
    array         key = dataset id   slot, schema, nulls, valid, min, max (bits), smin, smax
    attr          key = dataset id   seq, tag, num, data  (one attribute key: the value format
                                     of atlas.format.values; seq orders a dataset's attributes)

A table is stored as one section per catalog part. A newer part's row for a key replaces an
older part's: :func:`merge` applies that rule, the same way for the parts of a commit, a merge
of parts, and the changes a handle has not written yet.

A table read from a part has its ``key`` and ``dead`` decoded, and its other columns decoded
when first used (:class:`Columns`): a query reads two of an array table's eight. Merges and
:meth:`Table.live` are lazy the same way, and :meth:`Table.take` gives some rows of a column
without keeping the whole column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from atlas.errors import CorruptionError
from atlas.format.columns import Encoded, constant

# name -> (section kind, numpy dtype for the in-memory column, default, optional)
_I8, _U1, _OBJ = np.dtype(np.int64), np.dtype(np.uint8), np.dtype(object)
KINDS: dict[str, tuple[tuple[str, str, np.dtype, Any, bool], ...]] = {
    "datasets": (("name", "txt", _OBJ, "", False),),
    "schemas": (("json", "txt", _OBJ, "", False),),
    "array": (("slot", "i8d", _I8, 0, False), ("schema", "i8d", _I8, 0, False),
              ("nulls", "i8", _I8, 0, False), ("valid", "i8", _I8, 0, False),
              ("min", "f8", _I8, 0, False), ("max", "f8", _I8, 0, False),
              ("smin", "txt", _OBJ, "", True), ("smax", "txt", _OBJ, "", True)),
    "attr": (("seq", "i8d", _I8, 0, False), ("tag", "u1", _U1, 0, False),
             ("num", "f8", _I8, 0, False), ("data", "bin", _OBJ, b"", False)),
}


Loader = Callable[[Any], np.ndarray]  # rows (None: all) -> a new array the caller owns


class Columns(dict):
    """Columns by name, some still to be computed: ``pending`` maps a name to a loader, which
    runs when the column is first looked up and is then kept like any other column. Iterating
    and :meth:`items` see every column (and so compute them all)."""

    def __init__(self, loaded: dict[str, np.ndarray], pending: dict[str, Loader]):
        super().__init__(loaded)
        self.pending = dict(pending)
        self._names = list(loaded) + [n for n in pending if n not in loaded]

    def __missing__(self, name: str) -> np.ndarray:
        load = self.pending.get(name)
        if load is None:
            if dict.__contains__(self, name):  # another thread loaded it meanwhile
                return dict.__getitem__(self, name)
            raise KeyError(name)  # no such column
        value = load(None)
        dict.__setitem__(self, name, value)
        self.pending.pop(name, None)  # another thread that loaded it too may be first
        return value

    def __setitem__(self, name: str, value: np.ndarray) -> None:
        if name not in self:
            self._names.append(name)
        self.pending.pop(name, None)
        dict.__setitem__(self, name, value)

    def __delitem__(self, name: str) -> None:
        if self.pending.pop(name, None) is None:
            dict.__delitem__(self, name)
        elif dict.__contains__(self, name):
            dict.__delitem__(self, name)
        self._names.remove(name)

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or name in self.pending

    def __iter__(self):
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def keys(self):
        return list(self._names)

    def values(self):
        return [self[n] for n in self.keys()]

    def items(self):
        return [(n, self[n]) for n in self.keys()]

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default

    def copy(self) -> "Columns":
        return Columns({n: v for n, v in dict.items(self)}, self.pending)


def take(columns: dict, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows ``rows`` (positions, None: all) of a column as a new array the caller owns, without
    computing and keeping the whole column when it is still pending."""
    if dict.__contains__(columns, name):
        column = dict.__getitem__(columns, name)
        return column.copy() if rows is None else column[rows]
    return columns.pending[name](rows)


def peek(columns: dict, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows ``rows`` (None: all) of a column to read, not to change (perhaps the one kept, or
    read-only): the one kept, or else computed and not kept."""
    if dict.__contains__(columns, name):
        column = dict.__getitem__(columns, name)
        return column if rows is None else column[rows]
    load = columns.pending[name]
    return load(rows, writable=False) if isinstance(load, _Decoder) else load(rows)


_DTYPES = {kind: {name: dtype for name, _k, dtype, _d, _o in cols} for kind, cols in KINDS.items()}


@dataclass
class Table:
    """Rows of one catalog table, sorted by ``key`` (unique)."""

    kind: str
    key: np.ndarray
    dead: np.ndarray  # bool
    columns: dict[str, np.ndarray]
    # a datasets table's bloom.name_hashes of its names, when the writer has them (not stored)
    name_hashes: np.ndarray | None = field(default=None, repr=False, compare=False)
    # a datasets table's name column as encode_column stores it, when the writer has it
    name_bytes: bytes | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.key)

    @property
    def last_key(self) -> int:
        """The largest key, as a Python int (-1 for an empty table)."""
        found = self.__dict__.get("_last_key")
        if found is None:
            found = self.__dict__["_last_key"] = int(self.key[-1]) if len(self.key) else -1
        return found

    @classmethod
    def empty(cls, kind: str) -> "Table":
        return cls(kind, np.zeros(0, np.int64), np.zeros(0, bool),
                   {name: np.zeros(0, dtype) for name, _k, dtype, _d, _o in KINDS[kind]})

    @classmethod
    def from_rows(cls, kind: str, key, dead, columns: dict[str, Any]) -> "Table":
        """A table from rows in any order, possibly repeating a key: the last row of a key wins."""
        key = np.asarray(key, np.int64)
        if bool(np.all(key[1:] > key[:-1])):  # in order, once each (the usual log)
            pick = slice(None)
            n = len(key)
        else:
            order = np.argsort(key, kind="stable")
            sorted_key = key[order]
            last = np.ones(len(key), bool)
            last[:-1] = sorted_key[1:] != sorted_key[:-1]
            pick = order[last]
            n = len(pick)
        cols = {}
        for name, _k, dtype, default, _optional in KINDS[kind]:
            values = columns.get(name)
            if values is None:  # all the default: a read-only broadcast (np.full of 10^6
                cols[name] = constant(default, n, dtype)  # rows: ~3 ms)
            else:
                cols[name] = _as_column(values, dtype)[pick]
        return cls(kind, key[pick], np.asarray(dead, bool)[pick], cols)

    def take(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """See :func:`take`."""
        return take(self.columns, name, rows)

    def peek(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """See :func:`peek`."""
        return peek(self.columns, name, rows)

    def blobs(self, name: str) -> tuple[np.ndarray, bytes] | None:
        """A bin column not decoded yet as (end offsets, the values' bytes back to back), with
        no Python object per value; None when the column is not one of a stored section."""
        load = getattr(self.columns, "pending", {}).get(name)
        return load.blobs() if isinstance(load, _Decoder) else None

    def texts(self, name: str) -> list:
        """A txt column as a list of str, not kept: a list of names without an object array
        in between."""
        load = getattr(self.columns, "pending", {}).get(name)
        if isinstance(load, _Decoder):
            values, _taken = load.decode(None)
            if isinstance(values, list):
                return values
        return self.take(name).tolist()

    def prefetch(self, names: Sequence[str], submit: Callable) -> None:
        """Start decompressing these columns, when not decoded yet, on other threads
        (``submit`` as an executor's): a query names its columns before it reads them."""
        pending = getattr(self.columns, "pending", {})
        for name in names:
            load = pending.get(name)
            if isinstance(load, _Decoder):
                load.prefetch(submit)

    def joined_texts(self, name: str) -> memoryview | None:
        """A txt column not decoded yet as its texts joined by NUL, with no Python object per
        value; None when the column is not one of a stored section, or is stored with offsets
        (its texts hold a NUL)."""
        load = getattr(self.columns, "pending", {}).get(name)
        return load.blobs() if isinstance(load, _Decoder) else None

    def row(self, position: int) -> dict[str, Any]:
        return {name: col[position] for name, col in self.columns.items()}

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Position of each key in this table, -1 where absent."""
        pos = np.searchsorted(self.key, keys)
        pos = np.minimum(pos, max(len(self.key) - 1, 0))
        hit = (self.key[pos] == keys) if len(self.key) else np.zeros(len(keys), bool)
        return np.where(hit, pos, -1)

    def live(self) -> "Table":
        """The rows that are not tombstones."""
        if not self.dead.any():
            return self
        keep = np.flatnonzero(~self.dead)
        return Table(self.kind, self.key[keep], self.dead[keep],
                     Columns({}, {n: _subset(self, n, keep) for n in self.columns}))

    # -- storage as a section ------------------------------------------------------------------

    def section_columns(self) -> list[tuple[str, str, Any]]:
        cols = [("key", "i8d", self.key), ("dead", "u1", self.dead.astype(np.uint8))]
        for name, kind, _dtype, default, optional in KINDS[self.kind]:
            values = self.columns[name]
            if name == "name" and self.name_bytes is not None:
                values = Encoded(self.name_bytes)
            if optional and not _any_set(values):  # optional columns default to "" (falsy)
                continue  # e.g. no string statistics in an array table of numbers
            cols.append((name, kind, values))
        return cols

    @classmethod
    def from_section(cls, kind: str, columns: dict[str, Any], where: str,
                     frames: dict[str, Callable[[Any], Any]] | None = None,
                     check: Callable[[str, np.ndarray], None] | None = None) -> "Table":
        """A table from a section's decoded ``columns`` (``key`` and ``dead`` at least) and
        ``frames``: per column not decoded yet, ``decode(rows)`` giving ``(stored values,
        False)``, or ``(an object array of just those rows, True)`` where it can pick rows
        cheaper than decoding them all; ``decode(None, blobs=True)`` gives a bin column as
        ``((end offsets, bytes), True)``. ``check(name, column)`` runs on each column as it is
        decoded."""
        frames = frames or {}
        try:
            key = np.asarray(columns["key"], np.int64)
            dead = np.asarray(columns["dead"]) != 0
            loaded, pending = {}, {}
            for name, _k, dtype, default, optional in KINDS[kind]:
                if name in columns:
                    loaded[name] = _stored(kind, name, columns[name], where, check)
                elif name in frames:
                    pending[name] = _Decoder(kind, name, frames[name], where, check)
                elif optional:  # not stored: every value the default (a read-only broadcast)
                    loaded[name] = constant(default, len(key), dtype)
                else:
                    raise KeyError(name)
        except KeyError as err:
            raise CorruptionError(f"{where}: {kind} table lacks column {err}") from None
        check_keys(key, kind, where)
        if check is not None:
            check("key", key)
        return cls(kind, key, dead, Columns(loaded, pending) if pending else loaded)


_NOT_NEGATIVE = ("slot", "schema", "nulls", "valid")  # of array tables


def _stored(kind: str, name: str, values: Any, where: str, check) -> np.ndarray:
    """A column as stored, checked, in its in-memory dtype."""
    column = _as_column(values, _DTYPES[kind][name])
    if kind == "array" and name in _NOT_NEGATIVE and np.any(column < 0):
        # a slot or schema id of -1 would read as nothing, or as the last schema
        raise CorruptionError(f"{where}: array table has a negative slot, schema id or count")
    if check is not None:
        check(name, column)
    return column


class _Decoder:
    """Loader of one column of a stored section (see ``Table.from_section``)."""

    def __init__(self, kind: str, name: str, decode: Callable, where: str, check) -> None:
        self.kind, self.name, self.decode, self.where, self.check = kind, name, decode, where, check

    def __call__(self, rows, writable: bool = True):
        values, taken = self.decode(rows)
        if taken:  # the decoder gave only those rows (texts): nothing of the column to check
            return values
        column = _stored(self.kind, self.name, values, self.where, self.check)
        if rows is not None:
            return column[rows]
        # the caller owns the column: fixed-width kinds come back as views of the decompressed
        # bytes, which numpy cannot write to (a DataFrame column that cannot be assigned to)
        return column if column.flags.writeable or not writable else column.copy()

    def blobs(self) -> Any:
        """bin: (end offsets, the values' bytes back to back); txt: the texts joined by NUL,
        or None."""
        return self.decode(None, blobs=True)[0]

    def prefetch(self, submit: Callable) -> None:
        prefetch = getattr(self.decode, "prefetch", None)
        if prefetch is not None:
            prefetch(submit)


def _subset(table: Table, name: str, positions: np.ndarray) -> Loader:
    return lambda rows: table.take(name, positions if rows is None else positions[rows])


def check_keys(key: np.ndarray, kind: str, where: str) -> None:
    """CorruptionError unless ``key`` is sorted, unique and not negative."""
    if len(key) > 1 and np.any(key[1:] <= key[:-1]):
        raise CorruptionError(f"{where}: {kind} table keys are not sorted and unique")
    if np.any(key < 0):
        raise CorruptionError(f"{where}: {kind} table has a negative key")


def _any_set(values: Any) -> bool:
    """Whether a value is not the (falsy) default; a broadcast column has only one value."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.strides == (0,):
        values = values[:1]
    return any(values)


def _as_column(values: Any, dtype: np.dtype) -> np.ndarray:
    if dtype == _OBJ:
        out = np.empty(len(values), object)
        out[:] = values if isinstance(values, (list, np.ndarray)) else list(values)
        return out
    return np.asarray(values, dtype)


def merge(kind: str, tables: Sequence[Table], drop_dead: bool = False, lazy: bool = True
          ) -> Table:
    """One table from ``tables`` (oldest first): per key the newest row; tombstones dropped when
    ``drop_dead`` (only right when the oldest table is the oldest that exists). ``lazy``: each
    column is merged when first used (the result keeps ``tables``), else at once."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return Table.empty(kind)
    if len(tables) == 1:
        out = tables[0]
    else:
        key = np.concatenate([t.key for t in tables])
        dead = np.concatenate([t.dead for t in tables])
        pick: np.ndarray | None = None  # every row, in order
        if any(newer.key[0] <= older.key[-1] for older, newer in zip(tables, tables[1:])):
            # a stable sort keeps older rows before newer ones of the same key; on sorted runs
            # it is a linear merge (else each table holds keys after the last one's: the
            # datasets created since, the common case, which needs no sort)
            order = np.argsort(key, kind="stable")
            sorted_key = key[order]
            last = np.ones(len(key), bool)
            last[:-1] = sorted_key[1:] != sorted_key[:-1]
            pick = order[last]
            key, dead = sorted_key[last], dead[pick]
        starts = np.cumsum([0] + [len(t) for t in tables])
        loaders = {name: _merged(tables, starts, pick, name) for name in tables[0].columns}
        if lazy:
            cols: dict = Columns({}, loaders)
        else:
            cols = {name: load(None) for name, load in loaders.items()}
        out = Table(kind, key, dead, cols)
    out = out.live() if drop_dead else out
    if not lazy and isinstance(out.columns, Columns):
        out = Table(out.kind, out.key, out.dead, {n: out.columns[n] for n in out.columns})
    return out


def _merged(tables: list[Table], starts: np.ndarray, pick: np.ndarray | None, name: str
            ) -> Loader:
    """Loader of column ``name`` of the merge of ``tables`` (``pick``: the rows of their
    concatenation that the merge keeps; None: all of them)."""
    kept = int(starts[-1]) if pick is None else len(pick)

    def load(rows):
        if pick is None:  # every row, in order
            if rows is None:
                return np.concatenate([t.columns[name] for t in tables])
            at = np.asarray(rows)
        else:
            at = pick if rows is None else pick[rows]
        if rows is None or len(at) * 8 >= kept:
            # the tables keep their columns: a merge with this handle's pending rows is made
            # again for every look at them, and must not decode the committed rows every time
            return np.concatenate([t.columns[name] for t in tables])[at]
        # a few rows (names of matching datasets): only those rows of each table
        source = np.searchsorted(starts, at, "right") - 1
        out = None
        for i, table in enumerate(tables):
            mine = np.flatnonzero(source == i)
            if len(mine):
                part = table.take(name, at[mine] - starts[i])
                if out is None:
                    out = np.empty(len(at), part.dtype)
                out[mine] = part
        return out if out is not None else np.zeros(0, _DTYPES[tables[0].kind][name])
    return load
