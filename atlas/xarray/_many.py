"""``to_xarray_many``: many datasets stacked along a new dimension, lazily.

Data variables become dask arrays of shape ``(len(names), *shape)``. Along their own axes the
dask chunks are the stored chunks; along the new axis a task takes as many datasets as fit in
about ``TASK_BYTES`` and reads its chunk of all of them with one
``Atlas.read_array_across_stacked`` call. So each stored chunk is read once, by one task, and a
remote store sees one request per segment per task rather than one per dataset.

Coordinates are compared across the datasets (they are read to do so) and never taken from
the first dataset alone:

- an indexed coordinate (a dimension's own coordinate) must be equal everywhere with
  ``join="exact"`` (else ValueError naming the first dataset that differs); ``join="outer"``
  aligns the datasets on the union of its values, like ``xr.concat(join="outer")``;
- a dimension without a coordinate must have one size everywhere with ``join="exact"``;
  ``join="outer"`` pads the shorter datasets at the end;
- any other coordinate that is not the same everywhere gains the new dimension.

Padded cells hold what ``xr.concat(join="outer")`` puts there: NaN (integers and bools become
floats), NaT for times, NaN in an object array for strings.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas.xarray._fidelity import stackable_variable
from atlas.xarray._lazy import (
    MAX_TASKS,
    _shared_handle,
    check_datasets,
    chunk_grid,
    dataset_ids,
    present,
)
from atlas.xarray._mapping import DecodedVariable, restore_values
from atlas.xarray._read import Layout, finish_variable, layout

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from atlas.core import Atlas

JOINS = ("exact", "outer")
TASK_BYTES = 64 * 2**20  # decoded bytes one task reads (datasets per task follow from it)


def to_xarray_many(store: Atlas, names: Sequence[str], concat_dim: str = "dataset",
                   join: str = "exact") -> xr.Dataset:
    """The datasets ``names`` stacked along ``concat_dim`` (its coordinate: the names)."""
    import xarray as xr

    if isinstance(names, str):
        raise TypeError("names must be a sequence of dataset names, not a single str")
    names = list(names)
    if not names:
        raise ValueError("names is empty; nothing to stack")
    if join not in JOINS:
        raise ValueError(f"join must be one of {list(JOINS)}, got {join!r}")
    layouts = [layout(store.open_dataset(name)) for name in names]
    first = layouts[0]
    taken = {d for var in first.variables for d in var.dims} | {
        first.key(var) for var in first.variables}
    if concat_dim in taken:
        raise ValueError(f"concat_dim {concat_dim!r} is already a dimension or variable of "
                         f"dataset {names[0]!r}; pick another name")
    members = [_Member(name, found) for name, found in zip(names, layouts)]
    for member in members[1:]:
        member.check_has(first, members[0].name)
    dims = _Alignment(store, members, join)

    coords: dict[Any, xr.Variable] = {}
    data_vars: dict[Any, xr.Variable] = {}
    for var in first.variables:
        key = first.key(var)
        if var.name in first.coord_names:
            if var.is_index:
                template = _template(var)
                coords[key] = xr.Variable(var.dims, dims.index(var.name), template.attrs,
                                          template.encoding)
            else:
                coords[key] = _stacked_coordinate(store, members, dims, var, concat_dim)
        else:
            data_vars[key] = _stacked_data(store, members, dims, var, concat_dim)
    ds = xr.Dataset(data_vars, coords, first.attrs)
    return ds.assign_coords({concat_dim: np.array(names, dtype=object)})


@dataclasses.dataclass
class _Member:
    name: str
    found: Layout

    def __post_init__(self):
        self.variables = {var.name: var for var in self.found.variables}
        self.sizes: dict[str, int] = {}
        for var in self.found.variables:
            for dim, size in zip(var.dims, var.shape):
                if self.sizes.setdefault(dim, size) != size:
                    raise ValueError(f"dataset {self.name!r}: dimension {dim!r} has size "
                                     f"{self.sizes[dim]} and {size} in different arrays; it "
                                     "cannot be stacked")

    def check_has(self, first: Layout, first_name: str) -> None:
        from atlas.errors import ArrayNotFoundError

        for var in first.variables:
            mine = self.variables.get(var.name)
            if mine is None:
                raise ArrayNotFoundError(f"dataset {self.name!r} has no variable "
                                         f"{first.key(var)!r}, which dataset {first_name!r} has")
            if mine.dims != var.dims:
                raise ValueError(f"cannot stack {first.key(var)!r}: its dimensions are "
                                 f"{list(mine.dims)} in dataset {self.name!r}, {list(var.dims)} "
                                 f"in dataset {first_name!r}")
            coordinate = var.name in first.coord_names
            if coordinate != (var.name in self.found.coord_names):  # (xr.concat raises too)
                roles = ("a coordinate", "a data variable")
                raise ValueError(f"cannot stack {first.key(var)!r}: it is {roles[coordinate]} "
                                 f"in dataset {self.name!r} and {roles[not coordinate]} in "
                                 f"dataset {first_name!r}")


class _Alignment:
    """Per dimension: its size in the result, and where each dataset's positions go."""

    def __init__(self, store: Atlas, members: list[_Member], join: str):
        self.size: dict[str, int] = {}
        self._index: dict[str, pd.Index] = {}
        # dim -> per member an int array: the member's position of each result position, -1
        # where the member has none (padding); None where it is the identity
        self.positions: dict[str, list[np.ndarray | None]] = {}
        self._text: dict[str, np.dtype] = {}  # fixed-width text coordinates: their dtype
        first = members[0]
        for dim, size in first.sizes.items():
            coord = first.variables.get(dim)
            if coord is not None and coord.is_index and dim in first.found.coord_names:
                self._align_index(store, members, coord, join)
            else:
                self._align_sizes(members, dim, join)

    def index(self, dim: str) -> Any:
        """The values of ``dim``'s coordinate in the result: fixed-width text in the widest
        of the datasets' widths (as xr.concat gives it; a pandas index holds objects)."""
        index = self._index[dim]
        return index if dim not in self._text else np.asarray(index, self._text[dim])

    def _align_index(self, store, members, coord: DecodedVariable, join: str) -> None:
        import pandas as pd

        values = _member_values(store, members, coord)
        kinds = {np.asarray(v).dtype.kind for v in values}
        if kinds in ({"U"}, {"S"}):
            self._text[coord.name] = np.result_type(*(np.asarray(v).dtype for v in values))
        if all(_same(v, values[0]) for v in values[1:]):  # the common case, made cheap
            self._index[coord.name] = pd.Index(values[0])
            self.size[coord.name] = len(values[0])
            self.positions[coord.name] = [None] * len(members)
            return
        indexes = [pd.Index(v) for v in values]
        differing = next((m for m, index in zip(members, indexes)
                          if not index.equals(indexes[0])), None)
        if differing is None:
            joined = indexes[0]
        elif join == "exact":
            raise ValueError(
                f"cannot stack with join='exact': coordinate {coord.name!r} of dataset "
                f"{differing.name!r} differs from that of dataset {members[0].name!r} "
                f"({_summary(indexes[members.index(differing)])} vs {_summary(indexes[0])}); "
                "join='outer' aligns the datasets on the union of its values")
        else:
            joined = functools.reduce(lambda a, b: a.union(b), indexes)
        self._index[coord.name] = joined
        self.size[coord.name] = len(joined)
        self.positions[coord.name] = [None if index.equals(joined) else
                                      index.get_indexer(joined) for index in indexes]

    def _align_sizes(self, members, dim: str, join: str) -> None:
        sizes = [m.sizes.get(dim, 0) for m in members]
        differing = next((m for m, s in zip(members, sizes) if s != sizes[0]), None)
        if differing is not None and join == "exact":
            raise ValueError(
                f"cannot stack with join='exact': dimension {dim!r} has size "
                f"{differing.sizes.get(dim)} in dataset {differing.name!r} and {sizes[0]} in "
                f"dataset {members[0].name!r}; join='outer' pads the shorter datasets")
        size = max(sizes)
        self.size[dim] = size
        self.positions[dim] = [None if s == size else
                               np.where(np.arange(size) < s, np.arange(size), -1)
                               for s in sizes]

    def shape(self, dims: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(self.size[d] for d in dims)

    def padded(self, dims: tuple[str, ...]) -> bool:
        """Whether some dataset lacks some cell of a variable over ``dims``."""
        return any(p is not None and (p < 0).any() for d in dims for p in self.positions[d])

    def member_positions(self, member: int, dims: tuple[str, ...]) -> list[np.ndarray | None]:
        return [self.positions[d][member] for d in dims]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape, dtype and values, NaN/NaT equal to themselves."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    try:
        return bool(np.array_equal(a, b, equal_nan=True))
    except TypeError:  # object arrays: no NaN test
        return bool(np.array_equal(a, b))


def _summary(index: pd.Index) -> str:
    if len(index) <= 4:
        return "[" + ", ".join(str(v) for v in index) + "]"
    return f"{len(index)} values from {index[0]} to {index[-1]}"


def _template(var: DecodedVariable) -> xr.Variable:
    """``var`` decoded from an empty array: its final dtype, attrs and encoding, no reads."""
    shape = (0,) * len(var.dims) if var.dims else ()
    empty = np.zeros(shape, dtype=var.dtype) if var.dtype != object else np.full(shape, "",
                                                                                  object)
    return finish_variable(var, empty)


def _concat_dtype(dtypes: Sequence[np.dtype]) -> np.dtype:
    """The dtype ``xr.concat`` gives variables of ``dtypes`` (asked of xarray itself: its
    promotion differs from numpy's, e.g. text with numbers is object)."""
    import xarray as xr

    distinct = list(dict.fromkeys(dtypes))
    if len(distinct) == 1:
        return distinct[0]
    empties = [xr.Variable(("x",), np.zeros(0, dtype)) for dtype in distinct]
    return xr.Variable.concat(empties, dim="x").dtype


def _result_dtype(dtype: np.dtype, padded: bool) -> tuple[np.dtype, Any]:
    """(dtype, fill of padded cells) of the stacked variable: what xarray's own alignment
    gives when it pads (asked of a one-cell reindex, so it is xr.concat's rule exactly)."""
    import xarray as xr

    if not padded:
        return dtype, None
    probe = xr.DataArray(np.zeros(1, dtype=dtype), dims="x", coords={"x": [0]})
    padded_probe = probe.reindex(x=[0, 1])
    return padded_probe.dtype, padded_probe.values[1]


def _member_values(store: Atlas, members: list[_Member], var: DecodedVariable) -> list:
    """The decoded values of ``var`` in every dataset (one bulk read)."""
    raw = store.read_array_across(var.name, [m.name for m in members])
    out = []
    for member, values in zip(members, raw):
        mine = member.variables[var.name]
        if not isinstance(values, np.ndarray):  # a 0-D row comes out as a scalar
            values = np.array(values, dtype=object if isinstance(values, str) else None)
        values = restore_values(values, mine.restore)
        if mine.cf is not None or mine.text:  # (an xr.Variable costs more than the read)
            values = np.asarray(finish_variable(mine, values).values)
        out.append(values)
    return out


def _place(values: np.ndarray, positions: list[np.ndarray | None], shape: tuple[int, ...],
           dtype: np.dtype, fill: Any) -> np.ndarray:
    """``values`` (one dataset's) moved to their result positions; the rest ``fill``."""
    if all(p is None for p in positions):
        return values.astype(dtype, copy=False)
    out = np.full(shape, fill, dtype=dtype)
    target, source = [], []
    for axis, p in enumerate(positions):
        if p is None:
            p = np.arange(shape[axis])
        valid = np.flatnonzero(p >= 0)
        target.append(valid)
        source.append(p[valid])
    out[np.ix_(*target)] = values[np.ix_(*source)]
    return out


def _stacked_coordinate(store: Atlas, members: list[_Member], dims: _Alignment,
                        var: DecodedVariable, concat_dim: str) -> xr.Variable:
    """A coordinate that is not a dimension's own: shared when every dataset has the same
    (after alignment), else one row per dataset along ``concat_dim``."""
    import xarray as xr

    shape = dims.shape(var.dims)
    padded = dims.padded(var.dims)
    values = _member_values(store, members, var)
    # each dataset's values decode as its own; they stack in the dtype xr.concat gives them
    dtype, fill = _result_dtype(_concat_dtype([v.dtype for v in values]), padded)
    aligned = [_place(v, dims.member_positions(i, var.dims), shape, dtype, fill)
               for i, v in enumerate(values)]
    template = _template(var)
    first = xr.Variable(var.dims, aligned[0])
    if all(first.equals(xr.Variable(var.dims, a)) for a in aligned[1:]):
        # shared, as xr.concat keeps it: the first dataset's (aligned in its own dtype)
        own_dtype, own_fill = _result_dtype(values[0].dtype, padded)
        shared = _place(values[0], dims.member_positions(0, var.dims), shape, own_dtype,
                        own_fill)
        return xr.Variable(var.dims, shared, template.attrs, template.encoding)
    stacked = np.empty((len(members), *shape), dtype=dtype)
    for row, values in enumerate(aligned):
        stacked[row] = values
    return xr.Variable((concat_dim, *var.dims), stacked, template.attrs, template.encoding)


def _stacked_data(store: Atlas, members: list[_Member], dims: _Alignment,
                  var: DecodedVariable, concat_dim: str) -> xr.Variable:
    """A data variable of every dataset as one dask array along ``concat_dim``."""
    import dask.array as da
    import xarray as xr
    from dask.highlevelgraph import HighLevelGraph

    names = [m.name for m in members]
    stacking = stackable_variable(names, [m.variables[var.name] for m in members])
    var = stacking.var
    shape = dims.shape(var.dims)
    dtype = _concat_dtype([_template(v).dtype for v in stacking.variants])
    dtype, fill = _result_dtype(dtype, dims.padded(var.dims))
    chunks = chunk_grid(shape, tuple(min(c, max(1, n)) for c, n in zip(var.chunk_shape,
                                                                         shape)))
    chunk_bytes = max(1, math.prod(max(c) for c in chunks) * max(1, dtype.itemsize))
    group = max(1, min(len(names), TASK_BYTES // chunk_bytes))
    starts = list(range(0, len(names), group))
    row_chunks = tuple(min(group, len(names) - s) for s in starts)
    tasks = len(starts) * math.prod(len(c) for c in chunks)
    if tasks > MAX_TASKS:  # the graph alone would take hundreds of bytes per task
        raise ValueError(
            f"variable {var.name!r} of {len(names)} datasets makes {tasks} chunks, and a lazy "
            f"read makes one dask task per chunk (at most {MAX_TASKS}); read fewer datasets at "
            "a time, or windows with read_array_across_stacked(name, names, start, shape)")
    name = f"atlas-many-{var.name}-{uuid_hex()}"
    offsets = [np.concatenate([[0], np.cumsum(c[:-1])]).astype(int) for c in chunks]
    commit = store._lazy_mark(names, var.name)
    dids = dataset_ids(store, names)
    graph = {}
    for g, row in enumerate(starts):
        rows = range(row, row + row_chunks[g])
        for index in np.ndindex(*(len(c) for c in chunks)):
            start = tuple(int(offsets[a][i]) for a, i in enumerate(index))
            window = tuple(chunks[a][i] for a, i in enumerate(index))
            positions = [[None if p is None else p[s:s + w]
                          for p, s, w in zip(dims.member_positions(m, var.dims), start, window)]
                         for m in rows]
            graph[(name, g, *index)] = (StackedRead(
                store, commit, [names[m] for m in rows], dids[row:rows.stop], var, start,
                window, positions, dtype, fill,
                None if stacking.rows is None else stacking.rows[row:rows.stop]),)
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=())
    data = da.Array(hlg, name, (row_chunks, *chunks), dtype=dtype)
    template = _template(var)
    return xr.Variable((concat_dim, *var.dims), data, template.attrs, template.encoding)


def uuid_hex() -> str:
    import uuid

    return uuid.uuid4().hex


class StackedRead:
    """The task of one dask chunk: one stored chunk window of ``var`` in a group of datasets.

    Datasets that hold the window as it is are read with one stacked read; the others (padded
    or reordered by an outer join) each read the part of the window they have. ``rows``: each
    dataset's own decoding where the datasets decode differently (None: ``var`` for all)."""

    def __init__(self, store: Atlas, commit: tuple[int, str], names: list[str], dids: np.ndarray,
                 var: DecodedVariable, start: tuple[int, ...], window: tuple[int, ...],
                 positions: list[list[np.ndarray | None]], dtype: np.dtype, fill: Any,
                 rows: Sequence[DecodedVariable] | None = None):
        self.store, self.commit, self.names, self.var = store, commit, names, var
        self.dids = dids  # the datasets themselves, whatever the names name later
        self.start, self.window, self.positions = start, window, positions
        self.dtype, self.fill, self.rows = dtype, fill, rows

    def __reduce__(self):
        commit = self.store._sent_mark(self.commit, self.var.name)
        return (_revive, (self.store, commit, self.names, self.dids, self.var,
                          self.start, self.window, self.positions, self.dtype, self.fill,
                          self.rows))

    def __repr__(self) -> str:
        return (f"StackedRead({self.var.name!r}, {len(self.names)} datasets, "
                f"start={list(self.start)}, shape={list(self.window)})")

    def __call__(self) -> np.ndarray:
        check_datasets(self.store, self.names, self.dids)
        out = np.empty((len(self.names), *self.window), dtype=self.dtype)
        plain = [i for i, p in enumerate(self.positions) if all(q is None for q in p)]
        # one stacked read and decode per distinct decoding (datasets that decode apart may
        # store different dtypes, int32 and int64, which one stacked read cannot mix)
        groups: dict[int, list[int]] = {}
        for i in plain:
            groups.setdefault(0 if self.rows is None else id(self.rows[i]), []).append(i)
        for picked in groups.values():
            var = self.var if self.rows is None else self.rows[picked[0]]
            values = self.store.read_array_across_stacked(
                self.var.name, [self.names[i] for i in picked], self.start, self.window)
            present(values, self.store, self.names[picked[0]], var.name, var.stored)
            out[picked] = self._decoded(values, var, stacked=True)
        for i, positions in enumerate(self.positions):
            if any(p is not None for p in positions):  # not among the plain rows read above
                var = self.var if self.rows is None else self.rows[i]
                out[i] = self._moved(self.names[i], var, positions)
        return out

    def _decoded(self, values: np.ndarray, var: DecodedVariable,
                 stacked: bool = False) -> np.ndarray:
        if stacked:
            var = dataclasses.replace(var, dims=("_stack", *var.dims))
        decoded = finish_variable(var, restore_values(values, var.restore)).values
        return np.asarray(decoded).astype(self.dtype, copy=False)

    def _moved(self, dataset: str, var: DecodedVariable,
               positions: list[np.ndarray | None]) -> np.ndarray:
        """One dataset's part of the window, read and moved to its place, the rest fill."""
        lows, spans = [], []
        for p, s, w in zip(positions, self.start, self.window):
            if p is None:
                lows.append(s)
                spans.append(w)
                continue
            valid = p[p >= 0]
            if valid.size == 0:
                return np.full(self.window, self.fill, dtype=self.dtype)
            lows.append(int(valid.min()))
            spans.append(int(valid.max()) - int(valid.min()) + 1)
        values = present(self.store.open_dataset(dataset).read_array(var.name, lows, spans),
                         self.store, dataset, var.name, var.stored)
        local = [None if p is None else np.where(p >= 0, p - low, -1)
                 for p, low in zip(positions, lows)]
        return _place(self._decoded(values, var), local, self.window, self.dtype, self.fill)


def _revive(store, commit, names, dids, var, start, window, positions, dtype, fill,
            rows=None):
    return StackedRead(_shared_handle(store, commit), commit, names, dids, var, start,
                       window, positions, dtype, fill, rows)
