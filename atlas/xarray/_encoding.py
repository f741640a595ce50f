"""A variable's ``.encoding`` (what netCDF said about how it was stored), kept and given back.

xarray keeps the on-disk facts of a variable in ``.encoding``: the packed dtype, scale and
offset, the fill value, time units and calendar, char-dimension names, chunking and
compression. Keeping them means a Dataset read from the store writes back to netCDF the way
the source file was written. They are stored, with the rest of what the xarray layer keeps
about a variable (its "marker"), as structured attribute values in the store's one value format
(``atlas.format.values``); anything that format cannot hold is left out (the encoding is advice
to writers, never data).

Stores of format version 1 kept these as JSON text with tags of their own
(``{"__atlas_enc__": ...}``, bytes as latin-1): :func:`marker` and :func:`loads` still read them.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from atlas.format import values

# keys that describe the source file rather than the variable, or that the store sets itself
_DROPPED = frozenset({"source", "preferred_chunks", "chunks"})
_TAG = "__atlas_enc__"  # format version 1 only


def dumps(encoding: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``encoding`` the value format can hold."""
    out = {}
    for key, value in encoding.items():
        if not isinstance(key, str) or key in _DROPPED:
            continue
        try:
            values.to_json_value(value)
        except TypeError:
            continue
        out[key] = value
    return out


def loads(kept: Any) -> dict[str, Any]:
    """The encoding dict that :func:`dumps` kept (or a version-1 store's JSON form of it)."""
    if _is_legacy(kept):
        return {key: _from_plain(value) for key, value in kept.items()}
    return dict(kept)


def marker(stored: Any) -> dict:
    """A stored marker as a dict (version-1 stores kept it as JSON text)."""
    if isinstance(stored, str):
        return json.loads(stored)
    return dict(stored)


def _is_legacy(value: Any) -> bool:
    if isinstance(value, dict):
        return _TAG in value or any(_is_legacy(v) for v in value.values())
    if isinstance(value, list):
        return any(_is_legacy(v) for v in value)
    return False


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
