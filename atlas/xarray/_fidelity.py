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

import dataclasses
import functools
import json
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas.dtypes import equal_cells
from atlas.xarray import _cf, _encoding, _packing, _strings
from atlas.xarray._mapping import CF_ATTR

if TYPE_CHECKING:
    import xarray as xr

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
            try:
                numbers = _cf.encode_cftime(values, plan)
            except OverflowError:  # cftime says only "Python int too large to convert"
                raise OverflowError(f"{where}: its cftime datetimes (from {values.min()} to "
                                    f"{values.max()}) are not all within about 292,000 years "
                                    f"of 1970, what {_cf.UNITS!r} holds as int64") from None
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
    # a fixed-width variable in the file: cells and fill compare as numpy compares them there,
    # trailing NULs dropped (a char cell b'\x00' is the fill b'' that xarray reads of b'\x00')
    fixed = np.dtype(variable.encoding.get("dtype", object)).kind in "SU"
    data = _elementwise(variable._data, functools.partial(_mask_equal, fill=fill, fixed=fixed),
                        np.dtype(object))
    return xr.Variable(variable.dims, data, variable.attrs, variable.encoding)


def _mask_equal(values: np.ndarray, fill: Any, fixed: bool = False) -> np.ndarray:
    values = np.asarray(values)
    out = values.copy()
    if fixed:
        kind, nul = (str, "\x00") if isinstance(fill, str) else (bytes, b"\x00")
        stripped = kind(fill).rstrip(nul)
        same = np.frompyfunc(lambda v: isinstance(v, kind) and v.rstrip(nul) == stripped, 1, 1)
        out[same(values).astype(bool)] = np.nan  # (cells equal to the fill among them)
    else:
        out[equal_cells(values, fill)] = np.nan
    if isinstance(fill, bytes):  # text written as bytes: the fill is its UTF-8 form
        try:
            out[equal_cells(values, fill.decode("utf-8"))] = np.nan
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
# mixes of kinds of decoded dtypes that stack as xr.concat stacks them, in numpy's promoted
# dtype (fixed-width text becomes object text; integers and floats the dtype holding both); any
# other mix (bool with uint8, timedelta with int64) would change what the values mean: refused
_STACKING_KINDS = (frozenset("UO"), frozenset("iufc"))


@dataclasses.dataclass(frozen=True)
class Stacking:
    """How the datasets' stored values of one variable decode when stacked."""

    var: "DecodedVariable"  # the first dataset's, made valid for every row where one suffices
    # per dataset, its own decoding where the datasets decode differently (else None)
    rows: "tuple[DecodedVariable, ...] | None" = None

    @property
    def variants(self) -> "list[DecodedVariable]":
        """The distinct decodings (the first dataset's first)."""
        return [self.var] if self.rows is None else list({id(v): v for v in self.rows}.values())


@dataclasses.dataclass(frozen=True)
class _Decoding:
    """What decides how one dataset's stored values of a variable decode (no data needed)."""

    dtype: np.dtype  # the decoded fixed-width string dtype, or the restored dtype
    meaning: str  # JSON of what must match for the stored numbers to decode alike ("" if plain)
    text_fill: str  # repr of the _FillValue that masks text cells
    kind: str  # kind of the decoded dtype

    def widthless(self) -> tuple:
        """The decoding with fixed-width strings of any width alike (they widen)."""
        return (self.kind if self.kind in "SU" else self.dtype, self.meaning, self.text_fill)


def stackable_variable(names: list[str], variables: "list[DecodedVariable]") -> Stacking:
    """How to stack the variable ``variables`` (one per dataset of ``names``, as each stores
    it), from their stored metadata only.

    Datasets that decode alike share the first dataset's decoding; fixed-width strings widen to
    the widest width among them. Otherwise each dataset keeps its own decoding, which needs
    the stored numbers to decode the same way (packed, cftime, bytes: else ValueError naming the
    first dataset that differs) and the decoded dtypes to stack without changing values (one
    kind, such as datetime or timedelta units, or fixed-width with object text: else
    ValueError naming both datasets and their dtypes).
    """
    var = variables[0]
    decodings = [_decoding(v) for v in variables]
    first = decodings[0]
    if all(d == first for d in decodings[1:]):  # the common case, made cheap
        return Stacking(var)
    differing = next((i for i, d in enumerate(decodings) if d.meaning != first.meaning), None)
    if differing is not None:
        raise ValueError(f"cannot stack {var.name!r}: dataset {names[differing]!r} stores it as "
                         f"{_describe(decodings[differing])}, dataset {names[0]!r} as "
                         f"{_describe(first)}; the stored values would not decode alike")
    if all(d.widthless() == first.widthless() for d in decodings[1:]):
        return Stacking(_widest(variables, decodings))
    _check_kinds(var.name, names, decodings)
    own: dict[_Decoding, "DecodedVariable"] = {}
    return Stacking(var, tuple(own.setdefault(d, v) for d, v in zip(decodings, variables)))


def _decoding(var: "DecodedVariable") -> _Decoding:
    doc = _encoding.marker(var.cf) if var.cf else {}
    plan = doc.get("decode")
    restore = np.dtype(var.restore) if var.restore else None
    width = _width(restore, plan)
    dtype = width if width is not None else var.dtype
    kind = dtype.kind
    if plan is not None and plan["kind"] == "bytes":
        kind = _strings.result_dtype(plan).kind
    text_fill = ""
    if var.text:  # masking (mask_text_fill) uses the fill of the restored encoding
        encoding = _encoding.loads(doc["encoding"]) if "encoding" in doc else var.encoding
        text_fill = repr(encoding.get("_FillValue"))
    return _Decoding(dtype, _meaning(var, plan), text_fill, kind)


def _meaning(var: "DecodedVariable", plan: dict | None) -> str:
    """What must be equal for stored numbers of two datasets to decode alike, as JSON."""
    if plan is None:
        return ""
    meaning = {k: v for k, v in plan.items() if k not in ("added", "dtype")}
    if plan["kind"] == "packed":
        meaning["attrs"] = {k: repr(var.attrs[k]) for k in _PACKING_ATTRS if k in var.attrs}
        meaning["fill"] = repr(var.attrs.get("_FillValue", var.encoding.get("_FillValue")))
    return json.dumps(meaning, sort_keys=True, default=repr)


def _check_kinds(name: str, names: list[str], decodings: list[_Decoding]) -> None:
    """Raise unless the decoded dtypes stack without changing values."""
    seen: dict[str, int] = {}  # kind -> the first dataset decoding to it
    for i, decoding in enumerate(decodings):
        kinds = {*seen, decoding.kind}
        if len(kinds) > 1 and not any(kinds <= allowed for allowed in _STACKING_KINDS):
            other = next(j for k, j in seen.items()
                         if not any({k, decoding.kind} <= allowed for allowed in _STACKING_KINDS))
            raise ValueError(
                f"cannot stack {name!r}: dataset {names[i]!r} gives it as {decoding.dtype}, "
                f"dataset {names[other]!r} as {decodings[other].dtype}; expected dtypes that "
                "stack without changing values (one kind, numbers with numbers, or fixed-width "
                "with object text)")
        seen.setdefault(decoding.kind, i)


def _widest(variables: "list[DecodedVariable]", decodings: list[_Decoding]
            ) -> "DecodedVariable":
    """The first variable decoding to the widest fixed-width string dtype among them all."""
    var = variables[0]
    widest = max((d.dtype for d in decodings), key=lambda dtype: dtype.itemsize)
    if widest == decodings[0].dtype:
        return var
    doc = _encoding.marker(var.cf) if var.cf else {}
    plan = doc.get("decode")
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


def _describe(decoding: _Decoding) -> str:
    text = {"S": "fixed-width bytes", "U": "fixed-width unicode"}.get(decoding.kind, "")
    if decoding.meaning:
        text = f"{text} {decoding.meaning}".strip()
    return text or "plain values"


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
