"""``DatasetView``: the arrays and attributes of one dataset, through its parent ``Atlas``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from atlas.core import _attrs, _stats
from atlas.core._validate import as_index_tuple, check_name, check_window
from atlas.core._write import write_window
from atlas.dtypes import check_data, check_text, fill_for_user, parse_fill, resolve_dtype
from atlas.errors import AlreadyExistsError, ArrayNotFoundError
from atlas.format.manifest import Schema

if TYPE_CHECKING:
    from atlas.core._atlas import Atlas


class DatasetView:
    """A named dataset of a store. Cheap to create; holds no data of its own."""

    def __init__(self, store: "Atlas", name: str):
        self._store = store
        self._name = name

    def __reduce__(self):
        return (DatasetView, (self._store, self._name))

    def __repr__(self) -> str:
        return f"<atlas.DatasetView {self._name!r} of {self._store.location}>"

    @property
    def name(self) -> str:
        return self._name

    @property
    def store(self) -> "Atlas":
        return self._store

    # -- schema --------------------------------------------------------------------------------

    def _record(self) -> dict:
        return self._store._dataset_record(self._name)

    def _entry(self, array: str) -> dict | None:
        return self._record()["arrays"].get(array)

    def _required(self, array: str) -> dict:
        entry = self._entry(array)
        if entry is None:
            raise ArrayNotFoundError(f"dataset {self._name!r} has no array {array!r}")
        return entry

    def _schema(self, entry: dict) -> Schema:
        return self._store._manifest.schemas[entry["schema"]]

    def _where(self, array: str) -> str:
        return f"{array!r} in dataset {self._name!r}"

    def list_arrays(self) -> list[str]:
        return list(self._record()["arrays"])

    def define_array(self, name: str, dtype: Any, dims: Sequence[str], shape: Sequence[int],
                     chunk_shape: Sequence[int] | None = None, fill_value: Any = None) -> None:
        """Declare an array. Unwritten cells read back as ``fill_value`` (or 0, "", NaT)."""
        check_name(name, "array")
        self._store._check_writable()
        record = self._record()
        where = self._where(name)
        if name in record["arrays"]:
            raise AlreadyExistsError(f"array {name!r} already exists in dataset {self._name!r}")
        atlas_dtype = resolve_dtype(dtype)
        if isinstance(dims, str):
            dims = [dims]
        dims_t = tuple(dims)
        if not all(isinstance(d, str) and d for d in dims_t):
            raise TypeError(f"{where}: dims must be non-empty strs, got {list(dims_t)}")
        for d in dims_t:
            check_text(d, f"{where}: dimension name")
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
        manifest = self._store._manifest
        schema_id = manifest.intern(Schema(atlas_dtype, dims_t, shape_t, chunks_t, fill))
        record["arrays"][name] = {"slot": manifest.new_slot(), "schema": schema_id,
                                  "attrs": {}, "stats": None}
        self._store._changed = True

    def delete_array(self, name: str) -> None:
        entry = self._required(name)
        self._store._check_writable()
        self._store._drop_slots({entry["slot"]})
        del self._record()["arrays"][name]
        self._store._changed = True

    def array_meta(self, name: str) -> dict | None:
        entry = self._entry(name)
        if entry is None:
            return None
        schema = self._schema(entry)
        return {"dtype": schema.dtype.name, "shape": list(schema.shape),
                "chunk_shape": list(schema.chunk_shape), "dimension_names": list(schema.dims),
                "fill_value": fill_for_user(schema.dtype, schema.fill)}

    def array_fill_value(self, name: str) -> Any:
        entry = self._required(name)
        schema = self._schema(entry)
        return fill_for_user(schema.dtype, schema.fill)

    def array_stats(self, name: str) -> dict | None:
        """{"row_count", "null_count", "min", "max"}; None before the first flush after a write."""
        entry = self._entry(name)
        if entry is None:
            return None
        return _stats.for_user(self._schema(entry), entry["stats"])

    # -- data ----------------------------------------------------------------------------------

    def write_array(self, name: str, start: Sequence[int], data: np.ndarray) -> None:
        """Write ``data`` at ``start``; its dtype must be the array's (atlas never casts)."""
        entry = self._required(name)
        self._store._check_writable()
        schema = self._schema(entry)
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
        store = self._store
        write_window(store._context(name), store._pending, name, entry["slot"], schema, start_t,
                     values, store._manifest.generation + 1)
        entry["stats"] = None
        store._changed = True

    def read_array(self, name: str, start: Sequence[int] | None = None,
                   shape: Sequence[int] | None = None) -> np.ndarray | None:
        """The whole array, or the window at ``start`` of ``shape``; None if there is no such
        array in this dataset."""
        entry = self._entry(name)
        if entry is None:
            return None
        schema = self._schema(entry)
        start_t, window = self._store._window(schema, start, shape, self._where(name))
        out = np.empty((1, *window), dtype=schema.dtype.numpy)
        self._store._read(name, np.array([entry["slot"]]), np.array([entry["schema"]]), start_t,
                          window, out)
        return out[0, ...]  # an ndarray also for 0-D arrays, never a numpy scalar

    def read_arrays(self, names: Sequence[str], start: Sequence[int] | None = None,
                    shape: Sequence[int] | None = None) -> dict[str, np.ndarray | None]:
        return {name: self.read_array(name, start, shape) for name in names}

    # -- attributes ----------------------------------------------------------------------------

    def set_attribute(self, key: str, value: Any, dtype: str | None = None) -> None:
        _set_attr(self._store, self._record()["attrs"], key, value, dtype,
                  f"attribute {key!r} of dataset {self._name!r}")

    def get_attribute(self, key: str) -> Any:
        raw = self._record()["attrs"].get(key)
        return None if raw is None else _attrs.decode(raw)

    def attributes(self) -> dict[str, Any]:
        return {k: _attrs.decode(v) for k, v in self._record()["attrs"].items()}

    def delete_attribute(self, key: str) -> None:
        attrs = self._record()["attrs"]
        if key not in attrs:
            raise KeyError(f"dataset {self._name!r} has no attribute {key!r}")
        self._store._check_writable()
        del attrs[key]
        self._store._changed = True

    def set_array_attribute(self, array: str, key: str, value: Any,
                            dtype: str | None = None) -> None:
        _set_attr(self._store, self._required(array)["attrs"], key, value, dtype,
                  f"attribute {key!r} of {self._where(array)}")

    def get_array_attribute(self, array: str, key: str) -> Any:
        raw = self._required(array)["attrs"].get(key)
        return None if raw is None else _attrs.decode(raw)

    def array_attributes(self, array: str) -> dict[str, Any]:
        return {k: _attrs.decode(v) for k, v in self._required(array)["attrs"].items()}


def _set_attr(store: "Atlas", attrs: dict, key: str, value: Any, dtype: str | None,
              where: str) -> None:
    _attrs.check_key(key)
    store._check_writable()
    attrs[key] = _attrs.encode(value, dtype, where)
    store._changed = True
