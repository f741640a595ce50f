"""Catalog tables in memory: what was committed (loaded on first use) plus what is pending.

A :class:`LayeredTable` is the in-memory side of one catalog table: a ``base`` merged from the
commit's parts when first used, the small tables of this handle's own later commits
(``deltas``, merged into the base once they grow), and a :class:`RowLog` of changes not yet
flushed. Lookups go newest first; whole-table views merge them with
``atlas.format.tables.merge``, the same rule the parts on disk follow.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import Any, Callable

import numpy as np

from atlas.format.tables import KINDS, Table, merge

# the numeric columns a log keeps per kind; the others are filled in at flush (array stats)
LOG_COLUMNS = {
    "datasets": ((), ("name",)),
    "schemas": ((), ("json",)),
    "array": (("slot", "schema"), ()),
    "attr": (("seq", "tag", "num"), ("data",)),
}
CONSOLIDATE_ROWS = 1 << 15  # deltas merged into the base once they hold this many rows ...
CONSOLIDATE_SHARE = 8  # ... and 1/8 of the base


class RowLog:
    """Rows appended in any order; the latest row of a key wins.

    Keys are one ``array('q')``; each row's tombstone flag and numeric columns are interleaved
    in another (8 bytes a value, one ``extend`` a row: appending is the hot path of a
    per-dataset ingest); object columns are lists. Rows added in bulk (:meth:`extend`, a
    stacked write of a million datasets) stay numpy columns after those, joined to the arrays
    only when a row is next added or looked up one by one. Finding a key's latest row costs a
    bisection while keys come in ascending order (the common case: datasets are created in
    order) and a dict lookup for rows that came out of order.
    """

    def __init__(self, kind: str):
        self.kind = kind
        numeric, objects = LOG_COLUMNS[kind]
        self.names = numeric
        self.stride = 1 + len(numeric)  # dead, then the numeric columns
        self._position = {name: 1 + i for i, name in enumerate(numeric)}
        self.keys = array("q")
        self.data = array("q")
        self.objects: dict[str, list] = {name: [] for name in objects}
        self._object_lists = tuple(self.objects.values())
        self._sorted_end = 0  # rows [0, _sorted_end) have non-decreasing keys
        self._late: dict[int, int] = {}  # key -> latest row appended out of order
        # (keys, dead, numeric columns) of bulk extends, the rows after those in keys/data
        self._bulk: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = []
        self._bulk_rows = 0

    def __len__(self) -> int:
        return len(self.keys) + self._bulk_rows

    def add(self, key: int, dead: int, numbers: tuple, objects: tuple = ()) -> int:
        """Append a row: ``numbers`` in the order of the kind's numeric columns, ``objects``
        in the order of its object columns."""
        if self._bulk:
            self._settle()
        keys = self.keys
        row = len(keys)
        if row == self._sorted_end and (row == 0 or key >= keys[row - 1]):
            self._sorted_end = row + 1
        else:
            self._late[key] = row
        keys.append(key)
        self.data.append(dead)
        self.data.extend(numbers)
        for column, value in zip(self._object_lists, objects):
            column.append(value)
        return row

    def append(self, key: int, dead: bool = False, **values: Any) -> int:
        return self.add(key, 1 if dead else 0, tuple(values.get(n, 0) for n in self.names),
                        tuple(values.get(n) for n in self.objects))

    def extend(self, keys: np.ndarray, dead: np.ndarray | None = None, **values: Any) -> None:
        """Append many rows at once (``values``: a column per name, numpy or list)."""
        keys = np.array(keys, np.int64)  # a copy: the caller may change its arrays later
        n = len(keys)
        if not n:
            return
        first = len(self)
        last = self._bulk[-1][0][-1] if self._bulk else self.keys[-1] if first else 0
        in_order = first == self._sorted_end and (first == 0 or keys[0] >= last) and \
            bool(np.all(keys[1:] >= keys[:-1]))
        if in_order:
            self._sorted_end = first + n
        else:
            self._late.update(zip(keys.tolist(), range(first, first + n)))
        numeric = {}
        for name in self._position:
            given = values.get(name)
            numeric[name] = np.zeros(n, np.int64) if given is None else \
                np.array(np.broadcast_to(given, n), np.int64)
        self._bulk.append((keys, np.zeros(n, bool) if dead is None else
                           np.array(dead, bool), numeric))
        self._bulk_rows += n
        for name, column in self.objects.items():
            given = values.get(name)
            column.extend([None] * n if given is None else list(given))

    def _settle(self) -> None:
        """The bulk rows join keys/data (a row is about to be added or looked up)."""
        for keys, dead, numeric in self._bulk:
            block = np.empty((len(keys), self.stride), np.int64)
            block[:, 0] = dead
            for name, j in self._position.items():
                block[:, j] = numeric[name]
            self.keys.frombytes(keys.tobytes())
            self.data.frombytes(block.tobytes())
        self._bulk = []
        self._bulk_rows = 0

    def find(self, key: int) -> int:
        """The latest row of ``key``, or -1."""
        row = self._late.get(key)
        if row is not None:
            return row
        if self._bulk:
            self._settle()
        keys = self.keys
        end = self._sorted_end
        if not end or key > keys[end - 1]:
            return -1  # beyond every key in order (a dataset created just now): no bisection
        i = bisect_right(keys, key, 0, end) - 1
        return i if i >= 0 and self.keys[i] == key else -1

    def value(self, row: int, name: str) -> Any:
        if self._bulk:
            self._settle()
        j = self._position.get(name)
        if j is not None:
            return self.data[row * self.stride + j]
        if name == "dead":
            return self.data[row * self.stride]
        return self.objects[name][row]

    def is_dead(self, row: int) -> bool:
        if self._bulk:
            self._settle()
        return bool(self.data[row * self.stride])

    def key_array(self) -> np.ndarray:
        """Every row's key, in row order (a copy)."""
        return self._columns()[0]

    def _columns(self, copy: bool = True) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """(keys, dead, numeric columns) of every row: new arrays, not views of the log (or,
        ``copy=False``, the arrays of a log of one stacked write themselves: the log never
        changes them, only replaces them)."""
        n = len(self.keys)
        parts = [(keys, dead, numeric) for keys, dead, numeric in self._bulk]
        if n or not parts:
            table = np.frombuffer(self.data, np.int64).reshape(n, self.stride)
            parts.insert(0, (np.frombuffer(self.keys, np.int64), table[:, 0] != 0,
                             {name: table[:, j] for name, j in self._position.items()}))
        if len(parts) == 1:
            keys, dead, numeric = parts[0]
            if not copy and not n:
                return keys, dead, dict(numeric)
            return keys.copy(), dead.copy(), {name: c.copy() for name, c in numeric.items()}
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                {name: np.concatenate([p[2][name] for p in parts]) for name in self._position})

    def table(self, extra: dict[str, np.ndarray] | None = None, copy: bool = True) -> Table:
        """The log as a table (latest row per key); ``extra`` supplies columns the log does
        not keep, aligned with its rows. ``copy=False``: the table may share the arrays of a
        stacked write's rows (a flush's, which changes no column in place)."""
        keys, dead, columns = self._columns(copy)
        columns.update(self.objects)
        if extra:
            columns.update(extra)
        return Table.from_rows(self.kind, keys, dead, columns)

    def clear(self) -> None:
        self.__init__(self.kind)

    def drop_first(self, rows: int) -> None:
        """Forget the first ``rows`` rows (they were committed); later ones stay."""
        if rows >= len(self.keys):
            self.clear()
            return
        keys, dead, numeric = self._columns()
        objects = {n: c[rows:] for n, c in self.objects.items()}
        self.clear()
        self.extend(keys[rows:], dead[rows:], **{n: c[rows:] for n, c in numeric.items()},
                    **objects)


class LayeredTable:
    """One catalog table: committed rows (lazily loaded) plus this handle's pending rows."""

    def __init__(self, kind: str, load: Callable[[], Table] | None):
        self.kind = kind
        self._load = load
        self._base: Table | None = None if load is not None else Table.empty(kind)
        self._deltas: list[Table] = []
        self.log = RowLog(kind)
        self._committed: Table | None = None  # merge of base and deltas, cached

    @property
    def loaded(self) -> bool:
        return self._base is not None

    def base(self) -> Table:
        if self._base is None:
            self._base = self._load()
        return self._base

    def committed(self) -> Table:
        """Every committed row (tombstones included), merged."""
        if self._committed is None:
            self._committed = merge(self.kind, [self.base(), *self._deltas])
        return self._committed

    def view(self, extra: dict[str, np.ndarray] | None = None) -> Table:
        """Committed and pending rows merged (tombstones included)."""
        if not len(self.log):
            return self.committed()
        return merge(self.kind, [self.committed(), self.log.table(extra)])

    def get(self, key: int, committed: bool = True) -> tuple[str, Any] | None:
        """Where the newest row of ``key`` is: ("log", row) or ("table", (table, position)),
        or None when there is none. ``committed=False``: the key cannot have committed rows
        (a dataset created since the commit the handle read), so only the log is looked at."""
        row = self.log.find(key)
        if row >= 0:
            return "log", row
        if not committed:
            return None
        for table in reversed(self._deltas):
            pos = _position(table, key)
            if pos >= 0:
                return "table", (table, pos)
        base = self.base()
        pos = _position(base, key)
        return ("table", (base, pos)) if pos >= 0 else None

    def value(self, found: tuple[str, Any], name: str) -> Any:
        where, at = found
        if where == "log":
            return self.log.value(at, name)
        table, pos = at
        return table.dead[pos] if name == "dead" else table.columns[name][pos]

    def is_dead(self, found: tuple[str, Any]) -> bool:
        where, at = found
        if where == "log":
            return self.log.is_dead(at)
        table, pos = at
        return bool(table.dead[pos])

    def applied(self, delta: Table, rows: int) -> None:
        """This handle committed ``delta``, made of the first ``rows`` rows of its log: they
        join the committed rows (rows logged since stay pending)."""
        self.log.drop_first(rows)
        if self._base is None:  # never loaded: the next load reads the new part too
            return
        self._deltas.append(delta)
        self._committed = None
        rows = sum(len(d) for d in self._deltas)
        if rows >= CONSOLIDATE_ROWS and rows * CONSOLIDATE_SHARE >= len(self._base):
            # at once: a lazy merge would keep the old base, and every base before it
            self._base = merge(self.kind, [self._base, *self._deltas], lazy=False)
            self._deltas = []

    def forget_committed(self, rows: int) -> None:
        """The first ``rows`` rows of the log were committed (in a part, too big to keep in
        memory as well): drop them and everything loaded, to be read again on first use."""
        self.log.drop_first(rows)
        if self._load is not None:
            self._base = None
            self._deltas = []
            self._committed = None


def _position(table: Table, key: int) -> int:
    keys = table.key
    # keys beyond the last are common (new datasets): answer them without numpy
    if not len(keys) or key > table.last_key:
        return -1
    i = int(np.searchsorted(keys, key))
    return i if i < len(keys) and keys[i] == key else -1


def default_of(kind: str, name: str) -> Any:
    for column, _k, _dtype, default, _o in KINDS[kind]:
        if column == name:
            return default
    raise KeyError(name)
