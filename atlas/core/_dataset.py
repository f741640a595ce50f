"""``DatasetView``: the arrays and attributes of one dataset, through its parent ``Atlas``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from atlas.core import _stats
from atlas.core._validate import as_index_tuple, check_name, check_window
from atlas.dtypes import check_data, check_text, fill_for_user, parse_fill, resolve_dtype
from atlas.errors import AlreadyExistsError, ArrayNotFoundError
from atlas.format import values as value_format
from atlas.format.schema import Schema, fill_key

if TYPE_CHECKING:
    from atlas.core._atlas import Atlas


class DatasetView:
    """A named dataset of a store. Cheap to create; holds no data of its own.

    It remembers its dataset id and the rows of the arrays it used while the catalog's
    ``epoch`` says nothing they depend on changed (a delete, a flush): a per-dataset ingest
    then costs a few dict lookups per call.
    """

    __slots__ = ("_store", "_name", "_epoch", "_cached_did", "_rows")

    def __init__(self, store: "Atlas", name: str, did: int | None = None):
        self._store = store
        self._name = name
        self._epoch = -1
        self._cached_did = did
        self._rows: dict[str, tuple] = {}
        if did is not None:
            self._epoch = store._catalog.epoch

    def __reduce__(self):
        return (DatasetView, (self._store, self._name))

    def __repr__(self) -> str:
        return f"<atlas.DatasetView {self._name!r} of {self._store.location}>"

    def _repr_html_(self) -> str:
        from atlas.core._html import dataset_html

        return dataset_html(self)

    @property
    def name(self) -> str:
        return self._name

    @property
    def store(self) -> "Atlas":
        return self._store

    # -- schema --------------------------------------------------------------------------------

    def _did(self) -> int:
        catalog = self._store._catalog
        if self._epoch == catalog.epoch:
            return self._cached_did
        did = self._store._did(self._name)
        self._epoch, self._cached_did, self._rows = catalog.epoch, did, {}
        return did

    def _row(self, array: str) -> tuple[int, int, int, bool] | None:
        """(did, slot, schema id, pending) of one array, or None."""
        did = self._did()
        found = self._rows.get(array)
        if found is None:
            row = self._store._catalog.array_row(array, did)
            if row is None:
                return None
            found = self._rows[array] = (did, *row)
        return found

    def _required(self, array: str) -> tuple[int, int, int, bool]:
        row = self._row(array)
        if row is None:
            raise ArrayNotFoundError(f"dataset {self._name!r} has no array {array!r}")
        return row

    def _where(self, array: str) -> str:
        return f"{array!r} in dataset {self._name!r}"

    def list_arrays(self) -> list[str]:
        return self._store._catalog.arrays_of(self._did())

    def define_array(self, name: str, dtype: Any, dims: Sequence[str], shape: Sequence[int],
                     chunk_shape: Sequence[int] | None = None, fill_value: Any = None) -> None:
        """Declare an array. Unwritten cells read back as ``fill_value`` (or 0, "", NaT)."""
        store = self._store
        catalog = store._catalog
        key = _define_key(name, dtype, dims, shape, chunk_shape, fill_value)
        schema_id = None if key is None else catalog.defined.get(key)
        if schema_id is None:  # arguments not seen (and checked) before
            check_name(name, "array")
            store._check_writable()
            schema = make_schema(dtype, dims, shape, chunk_shape, fill_value, self._where(name))
            schema_id = catalog.intern(schema)
            if key is not None:
                catalog.defined[key] = schema_id
        did = self._did()
        if name in self._rows or catalog.array_row(name, did) is not None:
            raise AlreadyExistsError(f"array {name!r} already exists in dataset {self._name!r}")
        slot = catalog.define(name, did, schema_id)
        self._rows[name] = (did, slot, schema_id, True)

    def resize_array(self, name: str, shape: Sequence[int]) -> None:
        """Give an array a new shape of the same rank; dtype, dims, chunk shape and fill stay.
        Cells outside the old shape read as the fill value; cells outside the new one are
        dropped (growing again later reads the fill there). Like every change, it reaches
        the store at the next ``flush()``."""
        store = self._store
        store._check_writable()
        did, slot, schema_id, _pending = self._required(name)
        catalog = store._catalog
        old = catalog.schema(schema_id)
        new = old._replace(shape=_new_shape(shape, old, self._where(name)))
        if new.shape == old.shape:
            return
        new_id = catalog.intern(new)
        store._resize(name, slot, new_id, old, new)
        catalog.reshaped(name, did, slot, new_id)

    def delete_array(self, name: str) -> None:
        store = self._store
        store._check_writable()
        did, slot, schema_id, _pending = self._required(name)
        if store._pending_state is not None:
            store._pending_state.drop_slots({slot})
        store._catalog.undefine(name, did, slot, schema_id)

    def array_meta(self, name: str) -> dict | None:
        row = self._row(name)
        if row is None:
            return None
        schema = self._store._catalog.schema(row[2])
        return {"dtype": schema.dtype.name, "shape": list(schema.shape),
                "chunk_shape": list(schema.chunk_shape), "dimension_names": list(schema.dims),
                "fill_value": fill_for_user(schema.dtype, schema.fill)}

    def array_fill_value(self, name: str) -> Any:
        schema = self._store._catalog.schema(self._required(name)[2])
        return fill_for_user(schema.dtype, schema.fill)

    def array_stats(self, name: str) -> dict | None:
        """{"row_count", "null_count", "min", "max"}; None before the first flush after a write."""
        row = self._row(name)
        if row is None:
            return None
        catalog = self._store._catalog
        return _stats.for_user(catalog.schema(row[2]), catalog.array_stats(name, row[0]))

    # -- data ----------------------------------------------------------------------------------

    def write_array(self, name: str, start: Sequence[int], data: np.ndarray) -> None:
        """Write ``data`` at ``start``; its dtype must be the array's (atlas never casts)."""
        store = self._store
        catalog = store._catalog
        row = self._rows.get(name) if self._epoch == catalog.epoch else None
        if row is None:
            row = self._row(name)
        if row is not None and type(data) is np.ndarray and type(start) in (list, tuple):
            # the commonest write by far: a whole array of one chunk (a profile, a scalar)
            did, slot, schema_id, pending = row
            fast = catalog.fast_write(schema_id)  # (dtype, shape) or None
            if (fast is not None and data.dtype == fast[0] and data.shape == fast[1]
                    and len(start) == len(fast[1]) and not any(start)
                    and _INT_ONLY.issuperset(map(type, start)) and store._fast_writes
                    and store._pending.put_whole(name, schema_id, slot, data)):
                if not pending:
                    catalog.stats_changed(name, did, slot, schema_id)
                    self._rows[name] = (did, slot, schema_id, True)
                return
        store._check_writable()
        did, slot, schema_id, _pending = self._required(name)
        schema = store._catalog.schema(schema_id)
        where = self._where(name)
        if isinstance(data, np.generic):
            data = np.asarray(data)
        if not isinstance(data, np.ndarray):
            raise TypeError(f"{where}: data must be a numpy.ndarray of {schema.dtype.name}, "
                            f"got {type(data).__name__}")
        if data.ndim != schema.ndim:
            raise ValueError(f"{where}: data has rank {data.ndim}, the array has rank "
                             f"{schema.ndim}")
        start_t = as_index_tuple(start, "start", schema.ndim, where)
        check_window(start_t, data.shape, schema.shape, where)
        values = check_data(schema.dtype, data, where)
        store._write(name, slot, schema_id, schema, start_t, values)
        store._catalog.stats_changed(name, did, slot, schema_id)
        self._rows[name] = (did, slot, schema_id, True)

    def read_array(self, name: str, start: Sequence[int] | None = None,
                   shape: Sequence[int] | None = None) -> np.ndarray | None:
        """The whole array, or the window at ``start`` of ``shape``; None if there is no such
        array in this dataset."""
        row = self._row(name)
        if row is None:
            return None
        store = self._store
        schema = store._catalog.schema(row[2])
        start_t, window = store._window(schema, start, shape, self._where(name))
        out = np.empty((1, *window), dtype=schema.dtype.numpy)
        store._read(name, np.array([row[1]]), np.array([row[2]]), start_t, window, out)
        return out[0, ...]  # an ndarray also for 0-D arrays, never a numpy scalar

    def read_arrays(self, names: Sequence[str], start: Sequence[int] | None = None,
                    shape: Sequence[int] | None = None) -> dict[str, np.ndarray | None]:
        return {name: self.read_array(name, start, shape) for name in names}

    # -- attributes ----------------------------------------------------------------------------

    def set_attribute(self, key: str, value: Any, dtype: str | None = None) -> None:
        _public_key(key, f"dataset {self._name!r}")
        self._set_attribute(key, value, dtype)

    def _set_attribute(self, key: str, value: Any, dtype: str | None = None) -> None:
        """:meth:`set_attribute`, reserved ``_pyatlas`` keys allowed (the xarray layer's)."""
        self._set(("attr", _key(key)), self._did(), value, dtype,
                  f"attribute {key!r} of dataset {self._name!r}")

    def get_attribute(self, key: str) -> Any:
        if is_internal(key):
            return None
        found = self._store._catalog.get_attr(("attr", _key(key)), self._did())
        return None if found is None else found[1]

    def attributes(self) -> dict[str, Any]:
        return {k: v for k, v in self._all_attributes().items() if not is_internal(k)}

    def _all_attributes(self) -> dict[str, Any]:
        """Every attribute, the xarray layer's internal ``_pyatlas*`` ones included."""
        return dict(self._store._catalog.attrs(("attr",), self._did()))

    def delete_attribute(self, key: str) -> None:
        self._store._check_writable()
        if not self._store._catalog.del_attr(("attr", _key(key)), self._did()):
            raise KeyError(f"dataset {self._name!r} has no attribute {key!r}")

    def set_array_attribute(self, array: str, key: str, value: Any,
                            dtype: str | None = None) -> None:
        _public_key(key, self._where(array))
        self._set_array_attribute(array, key, value, dtype)

    def _set_array_attribute(self, array: str, key: str, value: Any,
                             dtype: str | None = None) -> None:
        """:meth:`set_array_attribute`, reserved ``_pyatlas`` keys allowed."""
        slot = self._required(array)[1]
        self._set(("array_attr", array, _key(key)), slot, value, dtype,
                  f"attribute {key!r} of {self._where(array)}")

    def get_array_attribute(self, array: str, key: str) -> Any:
        slot = self._required(array)[1]
        if is_internal(key):
            return None
        found = self._store._catalog.get_attr(("array_attr", array, _key(key)), slot)
        return None if found is None else found[1]

    def array_attributes(self, array: str) -> dict[str, Any]:
        return {k: v for k, v in self._all_array_attributes(array).items()
                if not is_internal(k)}

    def _all_array_attributes(self, array: str) -> dict[str, Any]:
        """Every attribute of ``array``, the xarray layer's internal ones included."""
        slot = self._required(array)[1]
        return dict(self._store._catalog.attrs(("array_attr", array), slot))

    def _set(self, section_id: tuple, key: int, value: Any, dtype: str | None,
             where: str) -> None:
        self._store._check_writable()
        encoded = value_format.encode(value, dtype, where)
        self._store._catalog.set_attr(section_id, key, encoded)


# keys the xarray layer keeps its bookkeeping under (coordinate names, dtypes, CF markers):
# stored like any attribute, left out of what attributes()/get_attribute() show
INTERNAL_PREFIX = "_pyatlas"


def is_internal(key: Any) -> bool:
    return isinstance(key, str) and key.startswith(INTERNAL_PREFIX)


def _public_key(key: Any, where: str) -> None:
    """ValueError for a reserved key: the xarray layer's, which reads leave out (set, it
    would be stored and never seen again)."""
    if is_internal(key):
        raise ValueError(f"attribute key {key!r} of {where}: keys beginning with "
                         f"{INTERNAL_PREFIX!r} are reserved for atlas")


_INT_ONLY = frozenset({int})


def _define_key(name, dtype, dims, shape, chunk_shape, fill) -> tuple | None:
    """A hashable key of ``define_array``'s arguments, or None when they are not plain enough
    to tell equal calls apart (then they are checked every time)."""
    try:
        dims_t = (dims,) if isinstance(dims, str) else tuple(dims)
        shape_t = tuple(shape)
        chunks_t = None if chunk_shape is None else tuple(chunk_shape)
        if not _INT_ONLY.issuperset(map(type, shape_t + (chunks_t or ()))):
            return None  # e.g. 100.0 would hash like 100 but must be refused
        key = (name, dtype, dims_t, shape_t, chunks_t, fill_key(fill))
        hash(key)
    except Exception:  # unhashable or odd arguments: the checks will say what is wrong
        return None
    return key


def _new_shape(shape: Any, schema: Schema, where: str) -> tuple[int, ...]:
    """``resize_array``'s shape, checked: as many ints >= 0 as the array has dimensions."""
    dims = list(schema.dims)
    expected = f"{schema.ndim} sizes (one per dimension {dims}, now {list(schema.shape)})"
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise TypeError(f"{where}: resize_array needs a shape of {expected}, got {shape!r}")
    items = list(shape)
    for size in items:
        if isinstance(size, bool) or not hasattr(size, "__index__"):
            raise TypeError(f"{where}: resize_array needs a shape of {expected}, got "
                            f"{items!r}: {size!r} is not an int")
    sizes = tuple(size.__index__() for size in items)
    if len(sizes) != schema.ndim:
        raise ValueError(f"{where}: resize_array keeps the rank; expected {expected}, got "
                         f"{list(sizes)} ({len(sizes)} sizes)")
    for axis, size in enumerate(sizes):
        if size < 0:
            raise ValueError(f"{where}: resize_array needs sizes >= 0, got {list(sizes)} "
                             f"({size} on axis {axis}, dimension {dims[axis]!r})")
    # cell counts, chunk numbers and offsets are int64 throughout (index, kernels, stats)
    if max(sizes, default=0) >= 2**63 or math.prod(sizes) >= 2**63:
        raise OverflowError(f"{where}: shape {list(sizes)} does not fit in int64 cell counts")
    return sizes


def _key(key: Any) -> str:
    """An attribute key: a non-empty str of valid Unicode text (a lone surrogate would break
    every later export of the store)."""
    if not isinstance(key, str):
        raise TypeError(f"attribute keys must be str, got {type(key).__name__} {key!r}")
    if not key:
        raise ValueError("attribute keys must not be empty")
    if not key.isascii():
        check_text(key, f"attribute key {key!r}")
    return key


MAX_DIMS = 63  # reads allocate (datasets, *window): one axis more than the array has


def make_schema(dtype: Any, dims: Sequence[str], shape: Sequence[int],
                chunk_shape: Sequence[int] | None, fill_value: Any, where: str) -> Schema:
    """A checked schema from ``define_array``'s arguments."""
    atlas_dtype = resolve_dtype(dtype)
    if isinstance(dims, str):
        dims = [dims]
    dims_t = tuple(dims)
    if not all(isinstance(d, str) and d for d in dims_t):
        raise TypeError(f"{where}: dims must be non-empty strs, got {list(dims_t)}")
    for d in dims_t:
        check_text(d, f"{where}: dimension name")
    if len(dims_t) > MAX_DIMS:
        raise ValueError(f"{where}: {len(dims_t)} dimensions; at most {MAX_DIMS} (numpy's "
                         "64, less the axis a read adds: every read of it would fail)")
    shape_t = as_index_tuple(shape, "shape", len(dims_t), where)
    if any(s < 0 for s in shape_t):
        raise ValueError(f"{where}: shape {list(shape_t)} has a negative extent")
    if chunk_shape is None:
        chunks_t = tuple(max(1, s) for s in shape_t)
    else:
        chunks_t = as_index_tuple(chunk_shape, "chunk_shape", len(dims_t), where)
        if any(c < 1 for c in chunks_t):
            raise ValueError(f"{where}: chunk_shape {list(chunks_t)} must be >= 1 on "
                             "every axis")
    # cell counts, chunk ids and offsets are int64 throughout (index, kernels, stats)
    if max((*shape_t, *chunks_t), default=0) >= 2**63 or math.prod(shape_t) >= 2**63:
        raise OverflowError(f"{where}: shape {list(shape_t)} with chunk_shape "
                            f"{list(chunks_t)} does not fit in int64 cell counts")
    fill = parse_fill(atlas_dtype, fill_value, where)
    return Schema(atlas_dtype, dims_t, shape_t, chunks_t, fill)
