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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from atlas.errors import CorruptionError

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


@dataclass
class Table:
    """Rows of one catalog table, sorted by ``key`` (unique)."""

    kind: str
    key: np.ndarray
    dead: np.ndarray  # bool
    columns: dict[str, np.ndarray]

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
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        last = np.ones(len(key), bool)
        last[:-1] = sorted_key[1:] != sorted_key[:-1]
        pick = order[last]
        cols = {}
        for name, _k, dtype, default, optional in KINDS[kind]:
            values = columns.get(name)
            if values is None and optional:  # all the default: a read-only broadcast
                cols[name] = np.broadcast_to(np.array(default, dtype), len(pick))
            elif values is None:
                cols[name] = np.full(len(pick), default, dtype)
            else:
                cols[name] = _as_column(values, dtype)[pick]
        return cls(kind, key[pick], np.asarray(dead, bool)[pick], cols)

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
        keep = ~self.dead
        return Table(self.kind, self.key[keep], self.dead[keep],
                     {n: c[keep] for n, c in self.columns.items()})

    # -- storage as a section ------------------------------------------------------------------

    def section_columns(self) -> list[tuple[str, str, Any]]:
        cols = [("key", "i8d", self.key), ("dead", "u1", self.dead.astype(np.uint8))]
        for name, kind, _dtype, default, optional in KINDS[self.kind]:
            values = self.columns[name]
            if optional and not any(values):  # optional columns default to "" (falsy)
                continue  # e.g. no string statistics in an array table of numbers
            cols.append((name, kind, values))
        return cols

    @classmethod
    def from_section(cls, kind: str, columns: dict[str, Any], where: str) -> "Table":
        try:
            key = np.asarray(columns["key"], np.int64)
            dead = np.asarray(columns["dead"]) != 0
            cols = {}
            texts = {}
            for name, _k, dtype, default, optional in KINDS[kind]:
                if name in columns:
                    cols[name] = _as_column(columns[name], dtype)
                    if isinstance(columns[name], list):
                        texts[name] = columns[name]
                elif optional:  # not stored: every value the default (a read-only broadcast)
                    cols[name] = np.broadcast_to(np.array(default, dtype), len(key))
                else:
                    raise KeyError(name)
        except KeyError as err:
            raise CorruptionError(f"{where}: {kind} table lacks column {err}") from None
        check_keys(key, kind, where)
        if kind == "array" and any(np.any(cols[name] < 0) for name in
                                   ("slot", "schema", "nulls", "valid")):
            # a slot or schema id of -1 would read as nothing, or as the last schema
            raise CorruptionError(f"{where}: array table has a negative slot, schema id or "
                                  "count")
        table = cls(kind, key, dead, cols)
        table.__dict__["texts"] = texts  # the text columns as the lists they were decoded to
        return table


def check_keys(key: np.ndarray, kind: str, where: str) -> None:
    """CorruptionError unless ``key`` is sorted, unique and not negative."""
    if len(key) > 1 and np.any(key[1:] <= key[:-1]):
        raise CorruptionError(f"{where}: {kind} table keys are not sorted and unique")
    if np.any(key < 0):
        raise CorruptionError(f"{where}: {kind} table has a negative key")


def _as_column(values: Any, dtype: np.dtype) -> np.ndarray:
    if dtype == _OBJ:
        out = np.empty(len(values), object)
        out[:] = values if isinstance(values, (list, np.ndarray)) else list(values)
        return out
    return np.asarray(values, dtype)


def merge(kind: str, tables: Sequence[Table], drop_dead: bool = False) -> Table:
    """One table from ``tables`` (oldest first): per key the newest row; tombstones dropped when
    ``drop_dead`` (only right when the oldest table is the oldest that exists)."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return Table.empty(kind)
    if len(tables) == 1:
        out = tables[0]
    else:
        key = np.concatenate([t.key for t in tables])
        # a stable sort keeps older rows before newer ones of the same key; on sorted runs it is
        # a linear merge
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        last = np.ones(len(key), bool)
        last[:-1] = sorted_key[1:] != sorted_key[:-1]
        pick = order[last]
        dead = np.concatenate([t.dead for t in tables])[pick]
        cols = {name: np.concatenate([t.columns[name] for t in tables])[pick]
                for name in tables[0].columns}
        out = Table(kind, sorted_key[last], dead, cols)
    return out.live() if drop_dead else out
