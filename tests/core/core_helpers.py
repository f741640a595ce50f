"""Dtype lists, reference data and small store helpers shared by the core tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import atlas

INTS = ["int8", "int16", "int32", "int64"]
UINTS = ["uint8", "uint16", "uint32", "uint64"]
FLOATS = ["float32", "float64"]
NUMERIC = INTS + UINTS + FLOATS
ALL_DTYPES = NUMERIC + ["timestamp_nanoseconds", "string"]

NUMPY_OF = {**{n: np.dtype(n) for n in NUMERIC}, "timestamp_nanoseconds": np.dtype("M8[ns]"),
            "string": np.dtype(object)}

_WORDS = ["", "a", "ab", "zebra", "Äpfel", "日本", "x" * 40, "naïve", "0", "~"]


def sample(dtype: str, shape, rng: np.random.Generator) -> np.ndarray:
    """Random data of an atlas dtype, spanning the dtype's whole range (no NaN/NaT)."""
    shape = tuple(shape)
    if dtype in INTS or dtype in UINTS:
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype in FLOATS:
        return (rng.standard_normal(shape) * 1e3).astype(dtype)
    if dtype == "timestamp_nanoseconds":
        return rng.integers(-(2**62), 2**62, size=shape, dtype=np.int64).view("M8[ns]")
    words = np.array(_WORDS, dtype=object)
    out = np.empty(shape, dtype=object)
    out[...] = words[rng.integers(0, len(words), size=shape)]
    return out


def default_fill(dtype: str):
    """What unwritten cells hold when no fill was declared."""
    if dtype == "string":
        return ""
    if dtype == "timestamp_nanoseconds":
        return np.datetime64("NaT", "ns")
    return np.zeros((), NUMPY_OF[dtype])[()]


def full_like_fill(dtype: str, shape, fill=None) -> np.ndarray:
    """The numpy model of a freshly defined array."""
    value = default_fill(dtype) if fill is None else fill
    out = np.empty(tuple(shape), dtype=NUMPY_OF[dtype])
    out[...] = value
    return out


def assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal dtype, shape and values (NaN == NaN, NaT == NaT)."""
    assert isinstance(actual, np.ndarray), type(actual)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if expected.dtype == object:
        assert all(type(v) is str for v in actual.flat), [type(v) for v in actual.flat][:5]
        assert actual.tolist() == expected.tolist()
    else:
        np.testing.assert_array_equal(actual, expected)


def segment_files(path: Path) -> list[Path]:
    """Every segment file under a store directory."""
    return sorted((Path(path) / "segments").rglob("*.seg"))


def segments_of(path: Path, array: str) -> list[Path]:
    """The committed segment files of one array name, oldest first."""
    root = atlas.Atlas.open(path)._root
    return [Path(path) / ref.key for ref in root.segments.get(array, [])]


def first_block(path: Path) -> tuple[int, int]:
    """(offset, stored length) of the first block of a segment file."""
    from atlas.format.container import parse_footer
    from atlas.format.segment import parse_index

    data = Path(path).read_bytes()
    footer = parse_footer(memoryview(data), 0, len(data), lambda o, n: data[o:o + n], str(path))
    index = parse_index(footer, lambda o, n: data[o:o + n], str(path))
    return int(index.blocks["offset"][0]), int(index.blocks["stored"][0])


def reopen(path) -> atlas.Atlas:
    return atlas.Atlas.open(path)
