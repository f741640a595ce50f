"""A random model of a store written in every way at once: stacked writes (a few names, or
thousands across many blocks), per-dataset writes of whole arrays and of parts, deletes,
flushes and reopens, on small blocks, for arrays of every kind. After random steps and at the
end, stacked and per-dataset reads, per-dataset and whole-array statistics and the list of
datasets equal a plain-Python model; the reopened store verifies clean.

It found a pending segment that counted only its stacked rows after a read joined them with
the rows appended one by one (a corrupt commit, or another dataset's values read back)."""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import reopen

import atlas

NAT = np.iinfo(np.int64).min
# array -> (numpy dtype or "str", row shape, chunk shape, fill)
SPECS = {
    "v": ("f8", (4,), None, None),
    "f": ("f4", (3,), None, 2.5),
    "w": ("i4", (3,), None, 7),
    "u": ("u8", (2,), None, None),
    "i1": ("i1", (5,), None, None),
    "t": ("datetime64[ns]", (2,), None, None),
    "s": ("str", (2,), None, None),
    "m": ("f8", (10,), (3,), None),  # several chunks per dataset
    "z": ("f8", (), None, None),  # 0-D
    "big": ("i8", (700,), None, None),  # rows bigger than a block's share: blocks of their own
}
OPS = ["stack", "perds", "partial", "delete", "flush", "reopen", "read"]
WEIGHTS = [0.45, 0.2, 0.1, 0.07, 0.1, 0.04, 0.04]
NAMES = [f"d{i}" for i in range(40)] + ["é1", "a" * 255, "\x7f", " x", "x.", ".x"]
MANY = [f"n{i:05d}" for i in range(6000)] + [f"ü{i}" for i in range(500)]


def _values(rng, array, shape):
    dtype = SPECS[array][0]
    n = int(np.prod(shape)) if shape else 1
    if dtype in ("f8", "f4"):
        pool = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.5, -3.25, 2.5,
                         1e300 if dtype == "f8" else 1e30], dtype)
        values = np.where(rng.random(n) < 0.5, rng.choice(pool, n),
                          rng.normal(size=n) * 100).astype(dtype)
        if rng.random() < 0.1:
            values[:] = np.nan
    elif dtype == "i4":
        values = rng.integers(-10, 10, n).astype(dtype)
        if rng.random() < 0.1:
            values[:] = 7  # the fill: all nulls
    elif dtype == "i8":
        values = rng.integers(-2**62, 2**62, n, dtype="i8")
    elif dtype == "u8":
        values = rng.choice(np.array([0, 1, 2**63, 2**64 - 1, 2**63 - 1], "u8"), n)
    elif dtype == "i1":
        values = rng.integers(-128, 128, n).astype("i1")
    elif dtype.startswith("datetime"):
        ints = rng.integers(-10**18, 10**18, n)
        ints[rng.random(n) < 0.3] = NAT
        values = ints.view("datetime64[ns]")
    else:
        values = np.array(rng.choice(["", "a", "é", "zz", "\x7f", "日本"], n), dtype=object)
    return values.reshape(shape)


def _unwritten(array):
    dtype, _shape, _chunks, fill = SPECS[array]
    if fill is not None:
        return fill
    return {"f8": 0.0, "f4": 0.0, "str": "", "datetime64[ns]": np.datetime64("NaT")}.get(dtype, 0)


def _expected_stats(array, values, written):
    """(nulls, valid, min, max) as numpy computes them."""
    dtype, _shape, _chunks, fill = SPECS[array]
    flat, written = np.asarray(values).reshape(-1), written.reshape(-1)
    null = ~written
    if dtype.startswith("datetime"):
        null |= flat.view("i8") == NAT
    elif dtype in ("f8", "f4"):
        null |= np.isnan(flat)
    if fill is not None:
        null |= flat == fill
    valid = flat[~null]
    return (int(null.sum()), len(valid), valid.min() if len(valid) else None,
            valid.max() if len(valid) else None)


def _same(got, want) -> bool:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return False
    if got.dtype == object or want.dtype == object:
        return got.tolist() == want.tolist()
    if got.dtype.kind == "M":
        return np.array_equal(got.view("i8"), want.view("i8"))
    if got.dtype.kind == "f":  # NaN where NaN, and the sign of every zero
        return np.array_equal(got, want, equal_nan=True) and \
            np.array_equal(np.signbit(got), np.signbit(want))
    return np.array_equal(got, want)


class Model:
    def __init__(self, path, seed):
        self.path = path
        self.rng = np.random.default_rng(seed)
        self.store = atlas.Atlas.create(str(path), block_size=4096)
        # name -> array -> (values, cells written, their statistics as numpy computes them)
        self.data: dict[str, dict[str, tuple]] = {}

    def pick(self, items):
        return items[int(self.rng.integers(len(items)))]

    def stack(self):
        array = self.pick(list(SPECS))
        dtype, shape, chunks, fill = SPECS[array]
        if self.rng.random() < 0.15:  # thousands of names: many blocks and batches
            k = int(self.rng.integers(100, 3000))
            start = int(self.rng.integers(0, 3000))
            names = list(self.rng.choice(MANY, k, replace=False)) if self.rng.random() < 0.5 \
                else MANY[start : start + k]
        else:
            names = list(self.rng.choice(NAMES, int(self.rng.integers(1, 13)), replace=False))
        names = [str(n) for n in names]
        rows = [_values(self.rng, array, shape) for _ in names]
        if dtype == "str":
            data = np.empty((len(names), *shape), object)
            for i, row in enumerate(rows):
                data[i] = row
        else:
            data = np.stack(rows)
        self.store.write_array_across_stacked(array, names, data, chunk_shape=chunks,
                                              fill_value=fill)
        for name, row in zip(names, data):
            self._keep(name, array, row.copy(), np.ones(shape, bool))

    def per_dataset(self, partial: bool):
        array, name = self.pick(list(SPECS)), self.pick(NAMES)
        dtype, shape, chunks, fill = SPECS[array]
        if name not in self.data:
            view = self.store.create_dataset(name)
            self.data[name] = {}
        else:
            view = self.store.open_dataset(name)
        if array not in self.data[name]:
            view.define_array(array, "string" if dtype == "str" else np.dtype(dtype),
                              [f"dim_{i}" for i in range(len(shape))], list(shape),
                              chunk_shape=chunks, fill_value=fill)
            empty = np.full(shape, _unwritten(array), dtype=object if dtype == "str" else dtype)
            self._keep(name, array, empty, np.zeros(shape, bool))
        values, written = (a.copy() for a in self.data[name][array][:2])
        if partial and shape:
            lo = int(self.rng.integers(0, shape[0]))
            hi = int(self.rng.integers(lo + 1, shape[0] + 1))
            part = _values(self.rng, array, (hi - lo, *shape[1:]))
            view.write_array(array, [lo] + [0] * (len(shape) - 1), part)
            values[lo:hi], written[lo:hi] = part, True
        else:
            values = _values(self.rng, array, shape)
            view.write_array(array, [0] * len(shape), values)
            written[...] = True
        self._keep(name, array, values, written)

    def _keep(self, name, array, values, written):
        stats = None if SPECS[array][0] == "str" else _expected_stats(array, values, written)
        self.data.setdefault(name, {})[array] = (values, written, stats)

    def step(self, op):
        if op == "stack":
            self.stack()
        elif op in ("perds", "partial"):
            self.per_dataset(op == "partial")
        elif op == "delete" and self.data:
            name = self.pick(sorted(self.data))
            self.store.delete_dataset(name)
            del self.data[name]
        elif op == "flush":
            self.store.flush()
            self.check_stats()
        elif op == "reopen":
            self.store.flush()
            self.store = reopen(self.path)
            self.check_stats()

    def check_reads(self):
        for array in SPECS:
            have = [n for n in self.data if array in self.data[n]]
            if not have:
                continue
            count = int(self.rng.integers(1, min(200, 2 * len(have)) + 1))
            picked = [self.pick(have) for _ in range(count)]
            got = self.store.read_array_across_stacked(array, picked)
            for row, name in zip(got, picked):
                assert _same(row, self.data[name][array][0]), (array, name)
            name = self.pick(have)
            assert _same(self.store.open_dataset(name).read_array(array),
                         self.data[name][array][0]), (array, name)
        assert sorted(self.store.list_datasets()) == sorted(self.data)

    def check_stats(self):
        for array, (dtype, *_rest) in SPECS.items():
            if dtype == "str":
                continue
            have = [n for n in self.data if array in self.data[n]]
            whole = self.store.array_stats(array)
            if not have:
                assert whole is None, array
                continue
            per = self.store.array_stats_by_dataset(array)
            assert sorted(per) == sorted(have)
            for name in (have if len(have) <= 200 else self.rng.choice(have, 200)):
                want, got = self.data[name][array][2], per[name]
                assert (got["null_count"], got["row_count"] - got["null_count"]) == want[:2]
                assert (got["min"], got["max"]) == want[2:], (array, name)
            nulls = valid = 0
            lo = hi = None
            for name in have:
                want = self.data[name][array][2]
                nulls, valid = nulls + want[0], valid + want[1]
                if want[2] is not None:
                    lo = want[2] if lo is None or want[2] < lo else lo
                    hi = want[3] if hi is None or want[3] > hi else hi
            assert not whole["unflushed"]
            assert (whole["null_count"], whole["row_count"]) == (nulls, nulls + valid)
            assert (whole["min"], whole["max"]) == (lo, hi), array


@pytest.mark.parametrize("seed", range(4))
def test_a_store_written_every_way_at_once_equals_its_model(tmp_path, seed):
    model = Model(tmp_path / "s", seed)
    for _ in range(60):
        model.step(OPS[int(model.rng.choice(len(OPS), p=WEIGHTS))])
        if model.rng.random() < 0.5:
            model.check_reads()
    model.store.flush()
    model.check_reads()
    model.check_stats()
    model.store = reopen(tmp_path / "s")
    model.check_reads()
    model.check_stats()
    assert model.store.verify().problems == []
