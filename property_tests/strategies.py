"""Hypothesis strategies for atlas: dtypes, shapes, chunk shapes, windows, fills and data,
plus the numpy model helpers the property tests compare against."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

INTS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FLOATS = ["float32", "float64"]
NUMERIC = INTS + FLOATS
DTYPES = NUMERIC + ["timestamp_nanoseconds", "string"]

NUMPY_OF = {**{n: np.dtype(n) for n in NUMERIC}, "timestamp_nanoseconds": np.dtype("M8[ns]"),
            "string": np.dtype(object)}
_NAT = np.iinfo(np.int64).min
_TEXT = st.text(st.characters(codec="utf-8"), max_size=6)


def dtypes() -> st.SearchStrategy[str]:
    return st.sampled_from(DTYPES)


def shapes(max_ndim: int = 3, max_side: int = 7) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes of rank 0 to ``max_ndim``; an extent of 0 now and then."""
    return st.lists(st.integers(0, max_side), min_size=0, max_size=max_ndim).map(tuple)


def chunk_shapes(shape: tuple[int, ...]) -> st.SearchStrategy[tuple[int, ...]]:
    """From unit chunks to chunks larger than the array, per axis."""
    return st.tuples(*(st.integers(1, max(1, side + 1)) for side in shape))


@st.composite
def windows(draw, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(start, extent) of an in-bounds window; empty windows included."""
    start = tuple(draw(st.integers(0, side)) for side in shape)
    extent = tuple(draw(st.integers(0, side - s)) for side, s in zip(shape, start))
    return start, extent


def _elements(dtype: str) -> st.SearchStrategy:
    if dtype in INTS:
        info = np.iinfo(dtype)
        return st.integers(int(info.min), int(info.max))
    if dtype in FLOATS:
        return st.floats(width=np.dtype(dtype).itemsize * 8, allow_nan=True,
                         allow_infinity=True)
    if dtype == "timestamp_nanoseconds":
        return st.integers(_NAT, 2**63 - 1)  # NaT included
    return _TEXT


def fills(dtype: str) -> st.SearchStrategy:
    """None or a fill value the dtype accepts (NaN, extremes and NaT included)."""
    if dtype in FLOATS:
        values = st.one_of(st.just(float("nan")), st.floats(width=np.dtype(dtype).itemsize * 8),
                           st.integers(-1000, 1000))
    elif dtype == "timestamp_nanoseconds":
        values = _elements(dtype).map(lambda ns: np.datetime64(ns, "ns"))
    else:
        values = _elements(dtype)
    return st.one_of(st.none(), values)


def arrays(dtype: str, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Data of exactly the array's numpy dtype (timestamps as datetime64[ns], strings object)."""
    if dtype == "timestamp_nanoseconds":
        return hnp.arrays(np.int64, shape, elements=_elements(dtype)).map(
            lambda a: a.view("M8[ns]"))
    if dtype == "string":
        return hnp.arrays(object, shape, elements=_TEXT)
    return hnp.arrays(NUMPY_OF[dtype], shape, elements=_elements(dtype))


# -- the numpy model -------------------------------------------------------------------------


def default_fill(dtype: str):
    if dtype == "string":
        return ""
    if dtype == "timestamp_nanoseconds":
        return np.datetime64("NaT", "ns")
    return NUMPY_OF[dtype].type(0)


def new_model(dtype: str, shape: tuple[int, ...], fill) -> np.ndarray:
    """What a freshly defined array reads back as."""
    out = np.empty(shape, dtype=NUMPY_OF[dtype])
    out[...] = default_fill(dtype) if fill is None else fill
    return out


def window_slices(start, extent) -> tuple:
    """Index of a window; the trailing Ellipsis keeps 0-D results arrays, never scalars."""
    return (*(slice(s, s + n) for s, n in zip(start, extent)), Ellipsis)


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal dtype, shape and values; NaN equals NaN, NaT equals NaT; strings come back str."""
    assert isinstance(actual, np.ndarray), type(actual)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (
        actual.dtype, actual.shape, expected.dtype, expected.shape)
    if expected.dtype == object:
        assert all(type(v) is str for v in actual.flat)
        assert actual.tolist() == expected.tolist()
    else:
        np.testing.assert_array_equal(actual, expected)


def reference_stats(model: np.ndarray, written: np.ndarray, fill) -> dict:
    """array_stats by hand: nulls are unwritten cells, fill-equal cells and NaN/NaT."""
    flat = model.reshape(-1)
    null = ~written.reshape(-1)
    if model.dtype.kind == "f":
        null |= np.isnan(flat)
    elif model.dtype.kind == "M":
        null |= np.isnat(flat)
    if fill is not None and not (isinstance(fill, float) and math.isnan(fill)):
        null |= np.array([v == fill for v in flat], dtype=bool).reshape(-1)
    data = flat[~null]
    if data.size == 0:
        lo = hi = None
    elif model.dtype == object:
        lo, hi = min(data), max(data)
    else:
        lo, hi = data.min(), data.max()
    return {"row_count": flat.size, "null_count": int(null.sum()), "min": lo, "max": hi}
