"""Stateful property: random sequences of store operations agree with a dictionary model.

Rules: create dataset, define array, write window, delete dataset, delete array, set attribute,
flush, reopen (unflushed changes leave the model too), compact. After every step the store's
dataset list, array lists, every array's content, the attributes and array_stats (None until a
flush follows a write, then the numpy reference) must match the model.
"""

from __future__ import annotations

import copy
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from strategies import (
    arrays,
    assert_same,
    chunk_shapes,
    dtypes,
    fills,
    new_model,
    reference_stats,
    shapes,
    window_slices,
    windows,
)

import atlas

DATASET_NAMES = st.sampled_from(["north", "south", "east", "west"])
ARRAY_NAMES = st.sampled_from(["temp", "salt", "time"])
ATTR_KEYS = st.sampled_from(["id", "source", "scale", "flag"])
ATTR_VALUES = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False),
                        st.text(max_size=8), st.booleans())


class StoreMachine(RuleBasedStateMachine):
    """One store handle against a model: {dataset: {"attrs": {...}, "arrays": {...}}}."""

    @initialize(codec=st.sampled_from(["zstd", "lz4", "none"]), data=st.data())
    def create_store(self, codec, data):
        self.path = tempfile.mkdtemp(prefix="atlas-machine-")
        self.store = atlas.Atlas.create(self.path, codec=codec)
        self.model: dict[str, dict] = {}
        self.committed: dict[str, dict] = {}
        # start with some content, so that short runs exercise writes, reopens and compaction
        for _ in range(data.draw(st.integers(1, 2), "initial datasets")):
            self.create_dataset(data.draw(DATASET_NAMES, "dataset"))
            self.define_array(data, data.draw(ARRAY_NAMES, "array"), data.draw(dtypes(), "dtype"))

    def teardown(self):
        shutil.rmtree(self.path, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------

    def _arrays(self):
        return [(d, a) for d, rec in self.model.items() for a in rec["arrays"]]

    def _commit_model(self):
        for rec in self.model.values():
            for arr in rec["arrays"].values():
                arr["stats_fresh"] = True
        self.committed = copy.deepcopy(self.model)

    # -- rules -----------------------------------------------------------------------------

    @rule(name=DATASET_NAMES)
    def create_dataset(self, name):
        if name in self.model:
            with pytest.raises(FileExistsError):
                self.store.create_dataset(name)
            return
        self.store.create_dataset(name)
        self.model[name] = {"attrs": {}, "arrays": {}}

    @precondition(lambda self: self.model)
    @rule(data=st.data(), array=ARRAY_NAMES, dtype=dtypes())
    def define_array(self, data, array, dtype):
        dataset = data.draw(st.sampled_from(sorted(self.model)), "dataset")
        shape = data.draw(shapes(max_ndim=2, max_side=5), "shape")
        chunks = data.draw(chunk_shapes(shape), "chunk_shape")
        fill = data.draw(fills(dtype), "fill")
        ds = self.store.open_dataset(dataset)
        dims = [f"d{i}" for i in range(len(shape))]
        if array in self.model[dataset]["arrays"]:
            with pytest.raises(FileExistsError):
                ds.define_array(array, dtype, dims, list(shape), list(chunks), fill)
            return
        ds.define_array(array, dtype, dims, list(shape), list(chunks), fill)
        self.model[dataset]["arrays"][array] = {
            "dtype": dtype, "shape": shape, "chunks": chunks, "fill": fill,
            "data": new_model(dtype, shape, fill), "written": np.zeros(shape, bool),
            "stats_fresh": False}

    @precondition(lambda self: self._arrays())
    @rule(data=st.data())
    def write_window(self, data):
        dataset, array = data.draw(st.sampled_from(self._arrays()), "array")
        arr = self.model[dataset]["arrays"][array]
        start, extent = data.draw(windows(arr["shape"]), "window")
        values = data.draw(arrays(arr["dtype"], extent), "values")
        self.store.open_dataset(dataset).write_array(array, list(start), values)
        arr["data"][window_slices(start, extent)] = values
        arr["written"][window_slices(start, extent)] = True
        arr["stats_fresh"] = False

    @rule(name=DATASET_NAMES)
    def delete_dataset(self, name):
        if name not in self.model:
            with pytest.raises(KeyError):
                self.store.delete_dataset(name)
            return
        self.store.delete_dataset(name)
        del self.model[name]

    @precondition(lambda self: self.model)
    @rule(data=st.data(), array=ARRAY_NAMES)
    def delete_array(self, data, array):
        dataset = data.draw(st.sampled_from(sorted(self.model)), "dataset")
        ds = self.store.open_dataset(dataset)
        if array not in self.model[dataset]["arrays"]:
            with pytest.raises(KeyError):
                ds.delete_array(array)
            return
        ds.delete_array(array)
        del self.model[dataset]["arrays"][array]

    @precondition(lambda self: self.model)
    @rule(data=st.data(), key=ATTR_KEYS, value=ATTR_VALUES)
    def set_attribute(self, data, key, value):
        dataset = data.draw(st.sampled_from(sorted(self.model)), "dataset")
        self.store.open_dataset(dataset).set_attribute(key, value)
        self.model[dataset]["attrs"][key] = value

    @rule()
    def flush(self):
        self.store.flush()
        self._commit_model()

    @rule()
    def reopen(self):
        self.store = atlas.Atlas.open(self.path)
        self.model = copy.deepcopy(self.committed)

    @rule(grace=st.sampled_from([0.0, 600.0]))
    def compact(self, grace):
        self.store.compact(grace=grace)
        self._commit_model()

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def registry_matches(self):
        assert self.store.list_datasets() == list(self.model)
        expected = sorted({a for rec in self.model.values() for a in rec["arrays"]})
        assert self.store.list_arrays() == expected
        for name, rec in self.model.items():
            assert self.store.open_dataset(name).list_arrays() == list(rec["arrays"])

    @invariant()
    def arrays_read_back(self):
        for dataset, array in self._arrays():
            got = self.store.open_dataset(dataset).read_array(array)
            assert_same(got, self.model[dataset]["arrays"][array]["data"])

    @invariant()
    def attributes_match(self):
        for name, rec in self.model.items():
            got = self.store.open_dataset(name).attributes()
            assert {k: (type(v), v) for k, v in got.items()} == {
                k: (type(v), v) for k, v in rec["attrs"].items()}

    @invariant()
    def stats_match(self):
        for dataset, array in self._arrays():
            arr = self.model[dataset]["arrays"][array]
            stats = self.store.open_dataset(dataset).array_stats(array)
            if not arr["stats_fresh"]:
                assert stats is None
            else:
                assert stats == reference_stats(arr["data"], arr["written"], arr["fill"])


TestStoreMachine = StoreMachine.TestCase
