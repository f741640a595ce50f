"""Stacked reads with one window start per dataset (random crops of every sample in one call),
checked against numpy slicing of each dataset's array, pending, committed and partly rewritten."""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import assert_same, reopen
from hypothesis import given, settings
from hypothesis import strategies as st

import atlas
from atlas.errors import OutOfBoundsError


def _fill(store, names, shapes, chunks, rng, dtype="float32", skip=()):
    """Datasets ``names`` with an array "v" of ``shapes[i]``; every chunk written except in
    datasets ``skip`` (half of theirs left to the fill value). Returns the numpy models."""
    models = []
    for name, shape in zip(names, shapes):
        ds = store.create_dataset(name)
        ds.define_array("v", dtype, [f"a{k}" for k in range(len(shape))], list(shape),
                        list(chunks), -7)
        model = np.full(shape, -7, dtype)
        values = (rng.standard_normal(shape) * 100).astype(dtype)
        if name in skip and len(shape):
            half = tuple(slice(0, max(1, n // 2)) for n in shape)
            model[half] = values[half]
            ds.write_array("v", [0] * len(shape), np.ascontiguousarray(values[half]))
        else:
            model[...] = values
            ds.write_array("v", [0] * len(shape), values)
        models.append(model)
    return models


def _expected(models, starts, window):
    return np.stack([m[tuple(slice(s, s + w) for s, w in zip(start, window))]
                     for m, start in zip(models, starts)])


def _starts(rng, shapes, window):
    return np.array([[rng.integers(0, n - w + 1) for n, w in zip(shape, window)]
                     for shape in shapes], np.int64)


def test_row_windows_match_numpy_pending_committed_and_reopened(store, store_path, rng):
    names = [f"d{i:02d}" for i in range(40)]
    shapes = [(20, 30)] * 30 + [(25, 31)] * 10  # two schemas, one window shape
    models = _fill(store, names, shapes, (6, 7), rng, skip={"d03", "d31"})
    window = (9, 11)
    starts = _starts(rng, shapes, window)
    expected = _expected(models, starts, window)
    assert_same(store.read_array_across_stacked("v", names, start=starts, shape=window),
                expected)
    store.flush()
    assert_same(store.read_array_across_stacked("v", names, start=starts, shape=window),
                expected)
    back = reopen(store_path)
    out = np.empty((40, *window), np.float32)
    got = back.read_array_across_stacked("v", names, start=starts.tolist(), shape=window,
                                         out=out)
    assert got is out
    assert_same(out, expected)
    # every dataset (names=None) and names repeated in another order
    assert_same(back.read_array_across_stacked("v", None, start=starts, shape=window), expected)
    order = [5, 5, 39, 0, 17]
    assert_same(back.read_array_across_stacked("v", [names[i] for i in order],
                                               start=starts[order][::-1], shape=window),
                _expected([models[i] for i in order], starts[order][::-1], window))


def test_row_windows_see_writes_not_yet_flushed_over_committed_chunks(store, rng):
    names = [f"d{i}" for i in range(6)]
    shapes = [(12, 12)] * 6
    models = _fill(store, names, shapes, (5, 5), rng)
    store.flush()
    patch = np.full((3, 4), 1.5, np.float32)  # a part of one chunk: held until the flush
    store.open_dataset("d2").write_array("v", [4, 3], patch)
    models[2][4:7, 3:7] = patch
    window = (6, 6)
    starts = np.array([[0, 0], [6, 6], [2, 2], [3, 1], [6, 0], [0, 6]])
    assert_same(store.read_array_across_stacked("v", names, start=starts, shape=window),
                _expected(models, starts, window))


def test_row_windows_of_one_and_zero_dimensional_arrays(store, rng):
    names = ["a", "b", "c"]
    models = _fill(store, names, [(50,)] * 3, (8,), rng)
    starts = np.array([[0], [42], [17]])
    assert_same(store.read_array_across_stacked("v", names, start=starts, shape=[8]),
                _expected(models, starts, (8,)))
    scalars = _fill(store, ["s0", "s1"], [(), ()], (), rng, dtype="float64")
    got = store.read_array_across_stacked("v", ["s0", "s1"], start=np.zeros((2, 0), int),
                                          shape=[])
    assert_same(got, np.stack(scalars))


def test_row_windows_of_strings(store):
    names = ["p", "q"]
    for name in names:
        ds = store.create_dataset(name)
        ds.define_array("v", "string", ["n"], [6], [4])
        ds.write_array("v", [0], np.array([f"{name}{i}" for i in range(6)], object))
    got = store.read_array_across_stacked("v", names, start=[[1], [3]], shape=[3])
    assert got.tolist() == [["p1", "p2", "p3"], ["q3", "q4", "q5"]]


def test_row_windows_refuse_bad_starts_naming_the_dataset(store, rng):
    names = ["a", "b", "c"]
    _fill(store, names, [(10, 10), (10, 10), (12, 10)], (4, 4), rng)
    with pytest.raises(OutOfBoundsError, match=r"dataset 'b' \(row 1 of start\).*axis 1"):
        store.read_array_across_stacked("v", names, start=[[0, 0], [2, 7], [0, 0]],
                                        shape=[4, 4])
    with pytest.raises(OutOfBoundsError, match="dataset 'a'"):
        store.read_array_across_stacked("v", names, start=[[-1, 0], [0, 0], [0, 0]],
                                        shape=[4, 4])
    # the third dataset is bigger: a start only it admits is fine there
    store.read_array_across_stacked("v", names, start=[[0, 0], [0, 0], [8, 0]], shape=[4, 4])
    with pytest.raises(TypeError, match="shape is required"):
        store.read_array_across_stacked("v", names, start=[[0, 0]] * 3)
    with pytest.raises(ValueError, match=r"must have shape \[3, 2\]"):
        store.read_array_across_stacked("v", names, start=[[0, 0]] * 2, shape=[4, 4])
    with pytest.raises(ValueError, match=r"must have shape \[3, 2\]"):
        store.read_array_across_stacked("v", names, start=[[0, 0, 0]] * 3, shape=[4, 4])
    with pytest.raises(TypeError, match="array of ints"):
        store.read_array_across_stacked("v", names, start=[[0.5, 0]] * 3, shape=[4, 4])
    for ragged in ([[0, 0], [0], [0, 0]], np.zeros((3, 2, 1), int)):
        with pytest.raises(TypeError, match="start must be a sequence of ints"):
            store.read_array_across_stacked("v", names, start=ragged, shape=[4, 4])
    with pytest.raises(ValueError, match=r"must have shape \[3, 2\] .*got \[1, 0\]"):
        store.read_array_across_stacked("v", names, start=[[]], shape=[4, 4])
    with pytest.raises(OutOfBoundsError, match="dataset 'c'"):
        store.read_array_across_stacked("v", names, shape=[4, 4], start=np.array(
            [[0, 0], [0, 0], [2**63 + 5, 0]], np.uint64))


def test_the_plan_of_row_windows_reads_what_the_read_reads(store, store_path, rng):
    names = [f"d{i}" for i in range(10)]
    models = _fill(store, names, [(16, 16)] * 10, (8, 8), rng)
    store.flush()
    back = reopen(store_path)
    starts = _starts(rng, [(16, 16)] * 10, (5, 5))
    plan = back.read_plan("v", names, start=starts, shape=[5, 5])
    out = np.empty((10, 5, 5), np.float32)
    plan.execute(out)
    assert_same(out, _expected(models, starts, (5, 5)))
    # each window touches 1, 2 or 4 chunks of 8 x 8: no more blocks than chunks it needs
    touched = sum(len({(y // 8, x // 8) for y in (s[0], s[0] + 4) for x in (s[1], s[1] + 4)})
                  for s in starts.tolist())
    assert plan.n_chunks == touched


@settings(deadline=None)
@given(data=st.data())
def test_random_row_windows_match_numpy(tmp_path_factory, data):
    ndim = data.draw(st.integers(1, 3))
    shape = tuple(data.draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    chunks = tuple(data.draw(st.integers(1, n)) for n in shape)
    window = tuple(data.draw(st.integers(0, n)) for n in shape)
    n = data.draw(st.integers(1, 12))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    store = atlas.Atlas.create(tmp_path_factory.mktemp("rw") / "s", block_size=4096)
    names = [f"d{i}" for i in range(n)]
    skip = set(data.draw(st.lists(st.sampled_from(names), max_size=3)))
    models = _fill(store, names, [shape] * n, chunks, rng, skip=skip)
    if data.draw(st.booleans()):
        store.flush()
    starts = _starts(rng, [shape] * n, window)
    assert_same(store.read_array_across_stacked("v", names, start=starts, shape=window),
                _expected(models, starts, window))
