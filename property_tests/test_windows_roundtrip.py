"""Property: random dtype/shape/chunk/window writes and reads agree with a numpy model, through
pending (unflushed) state, flushes, and reopens that discard what was not flushed."""

from __future__ import annotations

import tempfile

from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    arrays,
    assert_same,
    chunk_shapes,
    dtypes,
    fills,
    new_model,
    shapes,
    window_slices,
    windows,
)

import atlas

DATASETS = ("first", "second")  # two datasets share the array name, so they share segments


@given(data=st.data())
def test_random_window_writes_and_reads_match_a_numpy_model(data):
    dtype = data.draw(dtypes(), "dtype")
    shape = data.draw(shapes(), "shape")
    chunks = data.draw(chunk_shapes(shape), "chunk_shape")
    fill = data.draw(fills(dtype), "fill")
    with tempfile.TemporaryDirectory() as tmp:
        store = atlas.Atlas.create(tmp, codec=data.draw(st.sampled_from(["zstd", "lz4", "none"])))
        for name in DATASETS:
            store.create_dataset(name).define_array(
                "v", dtype, dims=[f"d{i}" for i in range(len(shape))], shape=list(shape),
                chunk_shape=list(chunks), fill_value=fill)
        model = {name: new_model(dtype, shape, fill) for name in DATASETS}
        committed = None  # nothing is committed until the first flush
        steps = data.draw(st.lists(st.sampled_from(["write", "write", "read", "flush", "reopen"]),
                                   min_size=1, max_size=8), "steps")
        for step in steps:
            if step == "write":
                name = data.draw(st.sampled_from(DATASETS))
                start, extent = data.draw(windows(shape), "write window")
                values = data.draw(arrays(dtype, extent), "values")
                store.open_dataset(name).write_array("v", list(start), values)
                model[name][window_slices(start, extent)] = values
            elif step == "read":
                name = data.draw(st.sampled_from(DATASETS))
                start, extent = data.draw(windows(shape), "read window")
                got = store.open_dataset(name).read_array("v", list(start), list(extent))
                assert_same(got, model[name][window_slices(start, extent)])
            elif step == "flush":
                store.flush()
                committed = {name: m.copy() for name, m in model.items()}
            elif committed is not None:  # reopen: unflushed writes are gone
                store = atlas.Atlas.open(tmp)
                model = {name: m.copy() for name, m in committed.items()}
        for name in DATASETS:
            assert_same(store.open_dataset(name).read_array("v"), model[name])
        store.flush()
        back = atlas.Atlas.open(tmp)
        for name in DATASETS:
            assert_same(back.open_dataset(name).read_array("v"), model[name])
