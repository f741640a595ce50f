"""Round-trip fidelity for variables as netCDF files give them to xarray.

The ordinary mapping (``_mapping``) stores what the store types natively. This module handles
what it cannot keep exactly, by storing an equivalent variable plus one JSON marker per array
(the array attribute ``_pyatlas_cf``, stripped on read like every ``_pyatlas`` key):

- cftime datetimes (non-standard calendars, dates outside the datetime64[ns] range) as int64
  numbers with units and calendar (``_cf``);
- packed and masked integer variables as the packed integers (``_packing``);
- byte strings that are not UTF-8 (``_strings``);
- the variable's ``.encoding`` (dtype on disk, packing, units, chunking...), restored on read.

``prepare_variable`` runs at ingest, ``restore_variable`` after a variable was read back; both
import xarray only when called.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas.xarray import _cf, _encoding, _packing, _strings
from atlas.xarray._mapping import CF_ATTR, DTYPE_ATTR

if TYPE_CHECKING:
    import xarray as xr

    from atlas.core import Atlas
    from atlas.xarray._mapping import DecodedVariable

_VERSION = 1  # of the JSON marker {"v", "decode", "encoding"} kept in the CF_ATTR attribute


def prepare_variable(name: str, var: "xr.Variable", where: str
                     ) -> tuple["xr.Variable", dict[str, Any]]:
    """(variable to store, marker attributes) for one variable of a Dataset being ingested.

    The variable to store is ``var`` itself unless its values need another representation;
    the markers are empty when the variable has nothing to restore.
    """
    doc: dict[str, Any] = {}
    stored, decode = _representation(name, var, where)
    if var.encoding:
        encoding = dict(var.encoding)
        if isinstance(encoding.get("dtype"), str):  # xarray's readers report a numpy dtype
            try:
                encoding["dtype"] = np.dtype(encoding["dtype"])
            except TypeError:
                pass
        if decode is None and stored.dtype.kind in "UOT" and _is_bytes_dtype(encoding):
            # text written as bytes: xarray's netCDF writer encodes it as UTF-8 and says so
            encoding.setdefault("_Encoding", "utf-8")
        encoding = _encoding.dumps(encoding)
        if encoding:
            doc["encoding"] = encoding
    if decode is not None:
        doc["decode"] = decode
    stored, fill_attr = _untyped_fill(stored, decode is not None and decode["kind"] == "cftime")
    if fill_attr is not None:
        doc["fill_attr"] = fill_attr
    if "_FillValue" in var.attrs and list(var.attrs)[-1] != "_FillValue":
        doc["order"] = list(var.attrs)  # the mapping gives _FillValue back last
    if not doc:
        return stored, {}
    doc["v"] = _VERSION
    return stored, {CF_ATTR: doc}


def _is_bytes_dtype(encoding: dict) -> bool:
    try:
        return np.dtype(encoding.get("dtype", object)).kind == "S"
    except TypeError:
        return False


def _representation(name: str, var: "xr.Variable", where: str
                    ) -> tuple["xr.Variable", dict[str, Any] | None]:
    import xarray as xr

    kind = var.dtype.kind
    if kind in "OS":
        if kind == "O" and _is_dask(var.data):
            from xarray.coding.variables import SerializationWarning  # what xarray's writers use

            warnings.warn(f"{where}: a dask array with dtype=object is loaded into memory to find "
                          "how to store its values; convert it with .astype() first to keep the "
                          "ingest streaming", SerializationWarning, stacklevel=6)
        values = np.asarray(var.values)
        plan = _cf.cftime_plan(values) if kind == "O" else None
        if plan is None and kind == "O" and _cf.holds_cftime(values):
            kinds = sorted({f"{type(v).__name__}({getattr(v, 'calendar', '?')})"
                            for v in values.flat})
            raise TypeError(f"{where}: cftime datetimes must share one type, calendar and "
                            f"year-zero convention to be stored; got {', '.join(kinds)}")
        if plan is not None:
            numbers = _cf.encode_cftime(values, plan)
            if not _cf.same_cftime(_cf.decode_cftime(numbers, plan), values):
                raise ValueError(f"{where}: its cftime datetimes do not survive a round trip "
                                 f"through {_cf.UNITS!r} in calendar {plan['calendar']!r}")
            attrs = dict(var.attrs)
            added = {k: v for k, v in _cf.cf_attrs(plan).items() if k not in attrs}
            attrs.update(added)
            return xr.Variable(var.dims, numbers, attrs), {**plan, "added": sorted(added)}
        fill = var.encoding.get("_FillValue")
        plan = _strings.bytes_plan(values, fill)
        if plan is not None:
            encoding = dict(var.encoding)
            if "_FillValue" in encoding:
                encoding["_FillValue"] = _strings.text_fill(fill, plan)
            return xr.Variable(var.dims, _strings.encode_bytes(values, plan), dict(var.attrs),
                               encoding), plan
        numbers = _numbers_of_objects(values, where) if kind == "O" else None
        if numbers is not None:
            # object arrays of numbers are stored (and read back) as numbers, as netCDF does
            return xr.Variable(var.dims, numbers, dict(var.attrs), dict(var.encoding)), None
        return var, None
    packing = _packing.packing_encoding(var.dtype, var.attrs, var.encoding)
    if packing is None:
        return var, None
    if _is_dask(var.data):
        packed = _lazily_checked_pack(name, var, packing, where)
    else:
        packed = _packing.checked_pack(var, name, packing)
    if packed is None:
        return var, None
    return packed, {"kind": "packed"}


def _numbers_of_objects(values: np.ndarray, where: str) -> np.ndarray | None:
    """An object array of numbers (and missing cells) as a numeric array, or None when it
    holds anything else. The dtype is that of the first number; missing cells (None/NaN) make
    it float with NaN there, like xarray's netCDF writer."""
    if values.size == 0:
        return None  # nothing says it holds numbers: an empty object array stays text
    flat = values.reshape(-1)
    missing = np.fromiter((v is None or (isinstance(v, float) and v != v) for v in flat),
                          dtype=bool, count=flat.size)
    present = flat[~missing]
    if not all(isinstance(v, (int, float, np.number, np.bool_)) for v in present):
        return None
    if len({type(v) for v in present}) > 1:
        kinds = sorted({type(v).__name__ for v in present})
        raise TypeError(f"{where}: an object array mixing {', '.join(kinds)} cannot be stored; "
                        "convert it to one numeric dtype with .astype()")
    dtype = np.asarray(present[0]).dtype if present.size else np.dtype(np.float64)
    if missing.any() and dtype.kind != "f":
        dtype = np.dtype(np.float64)
    out = np.full(values.shape, np.nan if dtype.kind == "f" else 0, dtype=dtype)
    out.reshape(-1)[~missing] = present.astype(dtype)
    return out


def _untyped_fill(var: "xr.Variable", cftime: bool) -> tuple["xr.Variable", dict | None]:
    """Take out fills the stored array cannot have as its typed fill: a ``_FillValue``
    attribute of bytes on a string variable (char arrays read with ``decode_cf=False``) or on
    a cftime variable (``mask_and_scale=False``) goes into the marker; such a fill in
    ``.encoding`` is dropped (the encoding comes back from the marker)."""
    import xarray as xr

    fill = var.attrs.get("_FillValue")
    encoded = var.encoding.get("_FillValue")
    text = var.dtype.kind in "OSUT"
    untyped_attr = "_FillValue" in var.attrs and (cftime or (text and not isinstance(fill, str)))
    untyped_encoding = encoded is not None and (cftime or (text and not isinstance(encoded, str)))
    if not (untyped_attr or untyped_encoding):
        return var, None
    attrs, encoding = dict(var.attrs), dict(var.encoding)
    kept = None
    if untyped_attr:
        kept = _encoding.dumps({"_FillValue": attrs.pop("_FillValue")})
    if untyped_encoding:
        as_text = _utf8_text(encoded) if text and not cftime else None
        if as_text is None:
            encoding.pop("_FillValue")
        else:  # text written as bytes (dtype S1): the stored fill is the text of its bytes
            encoding["_FillValue"] = as_text
    return xr.Variable(var.dims, var.data, attrs, encoding), kept


def _utf8_text(value: Any) -> str | None:
    if not isinstance(value, (bytes, np.bytes_)):
        return None
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_dask(data: Any) -> bool:
    import sys

    if "dask" not in sys.modules:
        return False
    import dask

    return dask.is_dask_collection(data)


def _lazily_checked_pack(name: str, var: "xr.Variable", packing: dict, where: str):
    """Pack a dask-backed variable block by block; each block is checked to unpack exactly
    when it is computed (a mismatch raises ValueError and the ingest leaves no trace)."""
    import dask.array as da
    import xarray as xr

    packed = _packing.pack(var, name, packing)
    if packed.dtype.kind not in "iu":
        return None
    check = functools.partial(_check_block, name=name, attrs=dict(packed.attrs),
                              dims=packed.dims, where=where)
    data = da.map_blocks(check, packed.data, var.data, dtype=packed.dtype)
    return xr.Variable(packed.dims, data, dict(packed.attrs))


def _check_block(packed: np.ndarray, original: np.ndarray, *, name: str, attrs: dict,
                 dims: tuple, where: str) -> np.ndarray:
    import xarray as xr

    back = _packing.unpack(xr.Variable(dims, packed, dict(attrs)), name)
    if not _packing.same_values(np.asarray(back.values), np.asarray(original)):
        raise ValueError(f"{where}: its values are not exactly representable with its packing "
                         f"encoding {sorted(k for k in attrs if k in _packing.PACKING_KEYS)}; "
                         "drop those keys from .encoding to store the decoded values")
    return packed


# -- reading ---------------------------------------------------------------------------------


def restore_variable(name: str, variable: "xr.Variable", marker: Any) -> "xr.Variable":
    """The variable as it went in, from the stored variable and its marker."""
    import xarray as xr

    doc = _encoding.marker(marker)
    decode = doc.get("decode")
    eager = isinstance(variable._data, np.ndarray)
    if decode is not None:
        kind = decode["kind"]
        if kind == "packed":
            variable = _packing.unpack(variable, name)
        elif kind == "cftime":
            attrs = {k: v for k, v in variable.attrs.items() if k not in decode["added"]}
            data = _elementwise(variable._data, functools.partial(_cf.decode_cftime,
                                                                 plan=decode), np.dtype(object))
            variable = xr.Variable(variable.dims, data, attrs, dict(variable.encoding))
        elif kind == "bytes":
            data = _elementwise(variable._data, functools.partial(_strings.decode_bytes,
                                                                 plan=decode),
                                _strings.result_dtype(decode))
            variable = xr.Variable(variable.dims, data, dict(variable.attrs),
                                   dict(variable.encoding))
        else:
            raise ValueError(f"variable {name!r}: unknown stored representation {kind!r} "
                             "(written by a newer atlas?)")
        if eager:
            variable = variable.load()
    if "fill_attr" in doc:
        variable.attrs.update(_encoding.loads(doc["fill_attr"]))
    if "order" in doc:
        attrs = variable.attrs
        first = {k: attrs[k] for k in doc["order"] if k in attrs}
        variable.attrs = {**first, **{k: v for k, v in attrs.items() if k not in first}}
    if "encoding" in doc:
        variable.encoding = _encoding.loads(doc["encoding"])
    return variable


def mask_text_fill(variable: "xr.Variable") -> "xr.Variable":
    """An object variable of strings or bytes with cells equal to the ``_FillValue`` of its
    encoding as NaN: what xarray's CF decoding of a netCDF file gives (missing cells went in
    as the fill)."""
    import xarray as xr

    fill = variable.encoding.get("_FillValue")
    if variable.dtype != object or not isinstance(fill, (str, bytes)):
        return variable
    data = _elementwise(variable._data, functools.partial(_mask_equal, fill=fill),
                        np.dtype(object))
    return xr.Variable(variable.dims, data, variable.attrs, variable.encoding)


def _mask_equal(values: np.ndarray, fill: Any) -> np.ndarray:
    values = np.asarray(values)
    out = values.copy()
    out[values == fill] = np.nan
    if isinstance(fill, bytes):  # text written as bytes: the fill is its UTF-8 form
        try:
            out[values == fill.decode("utf-8")] = np.nan
        except UnicodeDecodeError:
            pass
    return out


def _elementwise(data: Any, func, dtype: np.dtype):
    if isinstance(data, np.ndarray):
        return func(data)
    from xarray.coding.common import lazy_elemwise_func

    return lazy_elemwise_func(data, func, dtype)


# -- stacking many datasets ------------------------------------------------------------------

# array attributes that change what stored packed numbers mean
_PACKING_ATTRS = ("scale_factor", "add_offset", "missing_value", "_Unsigned")


def stackable_variable(store: "Atlas", names: list[str], var: "DecodedVariable"
                       ) -> "DecodedVariable":
    """``var`` (as the first dataset stores it) made valid for the values of every dataset.

    Fixed-width strings widen to the widest width among the datasets. Variables whose stored
    numbers are decoded (packed, cftime, bytes) must be decoded the same way everywhere:
    otherwise ValueError naming the first dataset that differs.
    """
    import dataclasses

    restore = np.dtype(var.restore) if var.restore else None
    doc = _encoding.marker(var.cf) if var.cf else {}
    plan = doc.get("decode")
    if plan is None and (restore is None or restore.kind not in "SU"):
        return var
    first = (_width_kind(restore, plan), _meaning(store, names[0], var.name, plan))
    widest = _width(restore, plan)
    for name in names[1:]:
        view = store.open_dataset(name)
        if var.name not in view.list_arrays():
            continue  # the stacked read names the dataset that lacks it
        stored = view._all_array_attributes(var.name)
        other_restore = stored.get(DTYPE_ATTR)
        other_restore = np.dtype(other_restore) if other_restore else None
        other_plan = _encoding.marker(stored[CF_ATTR]).get("decode") if CF_ATTR in stored \
            else None
        other = (_width_kind(other_restore, other_plan),
                 _meaning(store, name, var.name, other_plan))
        if other != first:
            raise ValueError(f"cannot stack {var.name!r}: dataset {name!r} stores it as "
                             f"{_describe(other)}, dataset {names[0]!r} as {_describe(first)}; "
                             "the stored values would not decode alike")
        width = _width(other_restore, other_plan)
        if widest is not None and width is not None and width.itemsize > widest.itemsize:
            widest = width
    if widest is None or widest == _width(restore, plan):
        return var
    if plan is not None:
        doc["decode"] = dict(plan, dtype=widest.str)
        return dataclasses.replace(var, cf=doc)
    return dataclasses.replace(var, restore=widest.str, dtype=widest)


def _width(restore: np.dtype | None, plan: dict | None) -> np.dtype | None:
    """The fixed-width string dtype the variable comes back as, if it is one."""
    if plan is not None and plan["kind"] == "bytes":
        dtype = np.dtype(plan["dtype"])
        return dtype if dtype.kind == "S" else None
    if plan is None and restore is not None and restore.kind in "SU":
        return restore
    return None


def _describe(how: tuple) -> str:
    kind, meaning = how
    text = {None: "", "S": "fixed-width bytes", "U": "fixed-width unicode"}[kind]
    if meaning is not None:
        text = f"{text} {meaning}".strip()
    return text or "plain values"


def _width_kind(restore: np.dtype | None, plan: dict | None) -> str | None:
    width = _width(restore, plan)
    return None if width is None else width.kind


def _meaning(store: "Atlas", dataset: str, array: str, plan: dict | None) -> dict | None:
    """What must be equal for stored values of two datasets to decode alike."""
    if plan is None:
        return None
    meaning = {k: v for k, v in plan.items() if k not in ("added", "dtype")}
    if plan["kind"] == "packed":
        view = store.open_dataset(dataset)
        attrs = view._all_array_attributes(array)
        meaning["attrs"] = {k: repr(attrs[k]) for k in _PACKING_ATTRS if k in attrs}
        meaning["fill"] = repr(view.array_fill_value(array))
    return meaning


# -- the dataset's own encoding --------------------------------------------------------------

DATASET_ENCODING_ATTR = "_pyatlas_encoding"  # dataset attribute: JSON of Dataset.encoding


def dataset_markers(ds: "xr.Dataset") -> dict[str, str]:
    """Dataset attributes that keep ``ds.encoding`` (``unlimited_dims``: the record dimension
    a netCDF writer should use again); empty when there is nothing to keep."""
    encoding = _encoding.dumps(ds.encoding) if ds.encoding else {}
    return {DATASET_ENCODING_ATTR: encoding} if encoding else {}


def restore_dataset_encoding(ds: "xr.Dataset", view) -> None:
    """Give ``ds`` the encoding its source Dataset had, if one was kept."""
    kept = view._all_attributes().get(DATASET_ENCODING_ATTR)
    if isinstance(kept, (str, dict)):
        ds.encoding = _encoding.loads(_encoding.marker(kept))
