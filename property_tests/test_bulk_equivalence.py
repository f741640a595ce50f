"""Property: a stacked read equals per-dataset reads stacked, and both equal a numpy model."""

from __future__ import annotations

import tempfile

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import atlas

DTYPES = ["int8", "uint32", "int64", "float32", "float64", "timestamp_ns", "string"]


def _values(dtype, shape, rng):
    if dtype == "string":
        words = np.array(["", "a", "bb", "ccc", "é", "zz"], dtype=object)
        return np.asarray(words[rng.integers(0, len(words), shape)], dtype=object)
    if dtype == "timestamp_ns":
        return np.asarray(rng.integers(0, 10**12, shape)).astype("datetime64[ns]")
    if dtype.startswith("float"):
        return np.asarray(rng.normal(size=shape)).astype(dtype)
    return np.asarray(rng.integers(0, 100, shape)).astype(dtype)


def _empty_model(dtype, shape, fill):
    if dtype == "string":
        model = np.empty(shape, dtype=object)
        model.fill("" if fill is None else fill)
        return model
    if dtype == "timestamp_ns":
        return np.full(shape, np.datetime64("NaT", "ns"))
    return np.full(shape, 0 if fill is None else fill, dtype=dtype)


@st.composite
def scenarios(draw):
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.integers(0, 3))
    shape = draw(st.lists(st.integers(0, 6), min_size=ndim, max_size=ndim))
    chunks = [draw(st.integers(1, max(1, s + 1))) for s in shape]
    fill = None
    if dtype == "string":
        fill = draw(st.sampled_from([None, "?"]))
    elif dtype != "timestamp_ns":
        fill = draw(st.sampled_from([None, 3]))
    n = draw(st.integers(1, 4))
    writes = []
    for d in range(n):
        for _ in range(draw(st.integers(0, 3))):
            start = [draw(st.integers(0, s)) for s in shape]
            extent = [draw(st.integers(0, s - b)) for s, b in zip(shape, start)]
            writes.append((d, start, extent, draw(st.booleans())))
    rewrite = draw(st.booleans())
    start = [draw(st.integers(0, s)) for s in shape]
    window = [draw(st.integers(0, s - b)) for s, b in zip(shape, start)]
    order = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6))
    return dtype, shape, chunks, fill, n, writes, rewrite, start, window, order


@given(scenarios(), st.integers(0, 2**32 - 1))
def test_stacked_reads_equal_per_dataset_reads_and_the_model(scenario, seed):
    dtype, shape, chunks, fill, n, writes, rewrite, start, window, order = scenario
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = atlas.Atlas.create(f"{tmp}/s")
        models = []
        for d in range(n):
            ds = store.create_dataset(f"d{d}")
            ds.define_array("a", dtype, [f"x{i}" for i in range(len(shape))], shape, chunks,
                            fill_value=fill)
            models.append(_empty_model(dtype, shape, fill))
        for d, w_start, extent, flush_after in writes:
            data = _values(dtype, extent, rng)
            store.open_dataset(f"d{d}").write_array("a", w_start, data)
            models[d][tuple(slice(b, b + e) for b, e in zip(w_start, extent))] = data
            if flush_after:
                store.flush()
        if rewrite:  # delete and recreate the first dataset: none of its old data may show
            store.delete_dataset("d0")
            ds = store.create_dataset("d0")
            ds.define_array("a", dtype, [f"x{i}" for i in range(len(shape))], shape, chunks,
                            fill_value=fill)
            models[0] = _empty_model(dtype, shape, fill)
        names = [f"d{i}" for i in order]
        window_slices = tuple(slice(b, b + e) for b, e in zip(start, window))
        expected = np.stack([models[i][window_slices] for i in order])
        for handle in (store, None):
            if handle is None:
                store.flush()
                handle = atlas.Atlas.open(f"{tmp}/s")
            got = handle.read_array_across_stacked("a", names, start, window)
            singles = np.stack([handle.open_dataset(nm).read_array("a", start, window)
                                for nm in names])
            assert got.shape == expected.shape
            assert got.tolist() == singles.tolist()
            np.testing.assert_array_equal(got, expected)
