"""A variable's ``.encoding`` (what netCDF said about how it was stored) as JSON, and back.

xarray keeps the on-disk facts of a variable in ``.encoding``: the packed dtype, scale and
offset, the fill value, time units and calendar, char-dimension names, chunking and
compression. Keeping them means a Dataset read from the store writes back to netCDF the way
the source file was written. Values are numpy dtypes (and the ``str`` type for variable-length
strings), numpy and Python scalars, tuples, lists, sets and small dicts; anything else is left
out (the encoding is advice to writers, never data).
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np

# keys that describe the source file rather than the variable, or that the store sets itself
_DROPPED = frozenset({"source", "preferred_chunks", "chunks"})
_TAG = "__atlas_enc__"


class _Unencodable(Exception):
    pass


def dumps(encoding: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-ready form of ``encoding`` (keys it cannot represent are left out)."""
    out = {}
    for key, value in encoding.items():
        if not isinstance(key, str) or key in _DROPPED:
            continue
        try:
            out[key] = _to_plain(value)
        except _Unencodable:
            continue
    return out


def loads(plain: Mapping[str, Any]) -> dict[str, Any]:
    """The encoding dict that :func:`dumps` described."""
    return {key: _from_plain(value) for key, value in plain.items()}


def _float(value: float) -> Any:
    # JSON has no NaN/inf literals in the strict sense; keep them as tagged strings
    if math.isfinite(value):
        return value
    return {_TAG: "float", "repr": repr(value)}


def _to_plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if value is str:
        return {_TAG: "type", "name": "str"}
    if isinstance(value, np.dtype):
        out = {_TAG: "dtype", "str": value.str}
        if value.metadata:
            out["metadata"] = _to_plain(dict(value.metadata))
        return out
    if isinstance(value, np.generic):
        if isinstance(value, (np.bool_, np.integer, np.floating, np.bytes_, np.str_)):
            item = value.item()
            return {_TAG: "scalar", "dtype": value.dtype.str, "value": _to_plain(item)}
        raise _Unencodable
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, bytes):
        return {_TAG: "bytes", "latin1": value.decode("latin-1")}
    if isinstance(value, tuple):
        return {_TAG: "tuple", "items": [_to_plain(v) for v in value]}
    if isinstance(value, (set, frozenset)):
        return {_TAG: "set", "items": [_to_plain(v) for v in sorted(value, key=repr)]}
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return {_TAG: "ndarray", "dtype": value.dtype.str, "shape": list(value.shape),
                "items": [_to_plain(v) for v in value.reshape(-1).tolist()]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {_TAG: "dict", "items": {k: _to_plain(v) for k, v in value.items()}}
    raise _Unencodable


def _from_plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(_TAG)
    if tag == "float":
        return float(value["repr"])
    if tag == "type":
        return str
    if tag == "dtype":
        metadata = value.get("metadata")
        if metadata is not None:
            return np.dtype(value["str"], metadata=_from_plain(metadata))
        return np.dtype(value["str"])
    if tag == "scalar":
        return np.dtype(value["dtype"]).type(_from_plain(value["value"]))
    if tag == "bytes":
        return value["latin1"].encode("latin-1")
    if tag == "tuple":
        return tuple(_from_plain(v) for v in value["items"])
    if tag == "set":
        return {_from_plain(v) for v in value["items"]}
    if tag == "ndarray":
        items = [_from_plain(v) for v in value["items"]]
        return np.array(items, dtype=value["dtype"]).reshape(value["shape"])
    if tag == "dict":
        return {k: _from_plain(v) for k, v in value["items"].items()}
    raise ValueError(f"unknown encoding tag {tag!r}")


def to_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
