"""Bad input: hypothesis drives the public API with names, dtypes, shapes, windows, fill values,
attribute values and numpy inputs of every wrong (and right) kind. A call may only fail with a
documented exception (TypeError, ValueError, IndexError, KeyError, OverflowError,
FileExistsError, or an atlas error deriving from them), and a failing call changes nothing: the
store's files (root, catalog parts, segments, pending segments) and everything the API reads
back (pending writes included) are the same after it, and stay the same through a flush and a
reopen. A call that succeeds must read back as numpy says it should and survive the flush
unchanged."""

from __future__ import annotations

import math
import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atlas

from . import _model
from ._harness import record

ALLOWED = (TypeError, ValueError, IndexError, KeyError, OverflowError, FileExistsError)
DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32",
          "float64", "timestamp_nanoseconds", "string"]
NAMES = ["d0", "d1", "gone", "new", "a_int8", "a_float32", "a_string", "a_uint64",
         "a_timestamp_nanoseconds", "a_scalar", "x"]
STATS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _figures():
    """Record what the property tests of this module saw, once they are done."""
    yield
    if STATS:
        record("bad-input", calls=sum(STATS.values()), outcomes=dict(sorted(STATS.items())))


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Two datasets with an array of several dtypes (one 0-D), committed data, attributes."""
    root = tmp_path_factory.mktemp("bad-input") / "template"
    store = atlas.Atlas.create(root)
    rng = np.random.default_rng(0)
    for d in ("d0", "d1", "gone"):
        ds = store.create_dataset(d)
        ds.set_attribute("k", 1)
        for dtype in ("int8", "float32", "string", "uint64", "timestamp_nanoseconds"):
            fill = {"int8": -1, "float32": float("nan"), "string": "?"}.get(dtype)
            ds.define_array(f"a_{dtype}", dtype, ["y", "x"], [5, 6], [2, 4], fill)
            ds.write_array(f"a_{dtype}", [1, 1], _values(rng, dtype, (3, 4)))
        ds.define_array("a_scalar", "float64", [], [], None, None)
    store.flush()
    store.delete_dataset("gone")
    store.flush()
    work = tmp_path_factory.mktemp("bad-input-baseline") / "s"
    baseline = _open_copy((root, None), work)
    baseline.flush()
    return root, _content(atlas.Atlas.open(work))


def _values(rng, dtype, shape):
    if dtype == "string":
        return np.array(["ab", "é", "", "zz"] * 6, dtype=object)[: math.prod(shape)].reshape(
            shape)
    if dtype == "timestamp_nanoseconds":
        return rng.integers(0, 2**60, shape).astype("datetime64[ns]")
    return rng.integers(0, 100, shape).astype(dtype)


def _open_copy(template, work):
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(template[0], work)
    store = atlas.Atlas.open(work)
    # pending (unflushed) changes are part of the state a failing call must not touch
    ds = store.open_dataset("d1")
    ds.write_array("a_float32", [0, 0], np.full((2, 3), 7.5, np.float32))
    ds.set_attribute("pending", "yes")
    return store


def _content(store) -> list[str]:
    """What the API reads back: like _model.snapshot_store, but each array through a window of
    at most 8 cells per axis (all of the template's arrays; a corner of a huge defined one)."""
    lines: list[str] = []
    for name in store.list_datasets():
        ds = store.open_dataset(name)
        attrs = ds.attributes()
        lines.append(f"dataset {name} {sorted((k, repr(v)) for k, v in attrs.items())}")
        for array in ds.list_arrays():
            meta = ds.array_meta(array)
            window = [min(n, 8) for n in meta["shape"]]
            values = ds.read_array(array, [0] * len(window), window)
            kind_meta = (meta["dtype"], meta["dimension_names"], tuple(meta["shape"]),
                         tuple(meta["chunk_shape"]), meta["fill_value"])
            lines += _model._array_lines(array, kind_meta, values, ds.array_stats(array),
                                         ds.array_attributes(array))
    return lines


def _state(store) -> tuple[dict[str, bytes], list[str]]:
    """What a failing call must not change: every file of the store (the root, catalog parts,
    segments, the handle's pending segments) byte for byte, and everything the API reads
    back, pending writes included."""
    root = Path(store.location)
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
             if p.is_file()}
    return files, _content(store)


# -- strategies for arguments ---------------------------------------------------------------------

weird_text = st.one_of(
    st.sampled_from(["", ".", "..", "/", "a/b", "_x", "\x00", "\ud800", "\t", "é", " ", "x" * 300,
                     "a\\b", "new\n"]),
    st.text(max_size=5))
names = st.one_of(st.sampled_from(NAMES), weird_text, st.integers(-2, 2), st.none(),
                  st.binary(max_size=3), st.just(["d0"]))
ints = st.one_of(st.integers(-3, 8), st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64, -(2**63),
                                                      10**30]))
index_item = st.one_of(ints, st.booleans(), st.floats(allow_nan=True), st.none(), st.text(
    max_size=2), st.just(np.int64(1)), st.just(np.uint8(2)), st.just(np.float64(1.0)))
index_list = st.one_of(st.lists(ints, max_size=3), st.lists(index_item, max_size=3), st.none(),
                       ints, st.text(max_size=2), st.just(np.array([1, 1])),
                       st.just(np.array([[1, 1]])), st.just((0.5, 1)))
dtype_specs = st.one_of(
    st.sampled_from(DTYPES + ["i32", "f32", "u64", "timestamp_ns", "datetime64[ns]", "str",
                              "object", "bool", "complex64", "float16", "datetime64[ms]", "S3",
                              "<U5", " int32 ", "INT8", "", "nope", "utf8"]),
    st.sampled_from([np.int16, np.float64, np.bool_, np.complex128, int, float, str, bool,
                     object, np.dtype(">i4"), np.dtype("M8[s]")]),
    st.integers(), st.none())
scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.text(max_size=4),
    st.binary(max_size=4), st.booleans(), st.none(),
    st.sampled_from([np.int8(-5), np.uint64(2**64 - 1), np.float32(1.5), np.float16(2.0),
                     np.complex64(1j), np.datetime64("2024-01-01", "ns"),
                     np.datetime64("2024-01-01", "D"), np.timedelta64(5, "s"), np.str_("s"),
                     np.bytes_(b"b"), np.bool_(True), np.longdouble(1.5)]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                         max_size=1),
    st.tuples(st.integers()), st.just(float("nan")), st.just(float("inf")),
    st.just("\ud800"))
array_dtypes = st.sampled_from(DTYPES[:10] + ["datetime64[ns]", "datetime64[s]", "object", "<U3",
                                              "S2", "bool", "complex64", "float16", ">i8",
                                              ">f4", "<u8", "V4"])


@st.composite
def arrays(draw):
    """numpy input of any dtype, rank, size, memory order and byte order - or not numpy."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.one_of(st.lists(st.integers(), max_size=3), st.none(), st.integers(),
                              st.text(max_size=3)))
    dtype = np.dtype(draw(array_dtypes))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    n = math.prod(shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype.kind == "O":
        pool = ["a", "é", "", 3, None, b"x", 1.5, "\ud800"]
        flat = np.empty(n, dtype=object)
        for i in range(n):
            flat[i] = pool[int(rng.integers(0, len(pool) if draw(st.booleans()) else 3))]
        data = flat.reshape(shape)
    elif dtype.kind in "US":
        data = np.array(["ab", "c", ""] * (n + 1), dtype=dtype)[:n].reshape(shape)
    elif dtype.kind == "V":
        data = np.zeros(shape, dtype)
    elif dtype.kind == "M":
        data = rng.integers(-(2**40), 2**40, shape).astype(dtype)
    elif dtype.kind == "c":
        data = (rng.normal(size=shape) + 1j).astype(dtype)
    elif dtype.kind == "f":
        data = rng.normal(0, 1e3, shape).astype(dtype)
        if n and draw(st.booleans()):
            data.reshape(-1)[0] = np.nan
    elif dtype.kind == "b":
        data = rng.integers(0, 2, shape).astype(bool)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, shape, dtype=dtype.newbyteorder("="),
                            endpoint=True).astype(dtype)
    data = np.asarray(data)  # a 0-D draw may have come back as a numpy scalar
    layout = draw(st.sampled_from(["C", "F", "strided", "reversed", "readonly", "scalar"]))
    if layout == "scalar" and data.ndim == 0:
        return data[()]  # numpy scalars are accepted as 0-D data
    if layout == "F":
        data = np.asfortranarray(data)
    elif layout == "strided" and data.ndim:
        data = np.repeat(data, 2, axis=-1)[..., ::2]
    elif layout == "reversed" and data.ndim:
        data = np.flip(np.flip(data, -1).copy(), -1)
    elif layout == "readonly":
        data = data.copy()
        data.flags.writeable = False
    return data


ARRAYS = {"a_int8": ("int8", (5, 6)), "a_float32": ("float32", (5, 6)),
          "a_string": ("object", (5, 6)), "a_uint64": ("uint64", (5, 6)),
          "a_timestamp_nanoseconds": ("datetime64[ns]", (5, 6)), "a_scalar": ("float64", ())}


def _mostly(data, good, bad, p: int = 8):
    """A draw from ``good`` p times in ten, else from ``bad``: deep checks need mostly sane
    arguments with one thing wrong, not garbage that the first check rejects."""
    return data.draw(good if data.draw(st.integers(0, 9)) < p else bad)


def _window(data, shape, what):
    good = st.lists(st.integers(-1, 5), min_size=len(shape), max_size=len(shape))
    return _mostly(data, good, index_list if what == "start" else st.one_of(st.none(),
                                                                              index_list))


def calls(data):
    """One drawn API call: (label, function taking the store, what a write writes or None)."""
    kind = data.draw(st.sampled_from([
        "create_dataset", "delete_dataset", "define_array", "write_array", "write_array",
        "write_array_right_dtype", "write_array_right_dtype", "read_array", "delete_array",
        "set_attribute", "set_array_attribute", "delete_attribute", "read_stacked",
        "array_meta"]))
    ds_name = _mostly(data, st.sampled_from(["d0", "d1"]), names, 9)
    array = _mostly(data, st.sampled_from(sorted(ARRAYS)), names)
    if kind == "create_dataset":
        name = _mostly(data, st.sampled_from(["new", "d0"]), names, 3)
        return kind, lambda s: s.create_dataset(name), None
    if kind == "delete_dataset":
        name = _mostly(data, st.sampled_from(["d0", "d1", "gone"]), names, 3)
        return kind, lambda s: s.delete_dataset(name), None
    if kind == "define_array":
        rank = data.draw(st.integers(0, 3))
        shape = data.draw(st.lists(st.integers(0, 6), min_size=rank, max_size=rank))
        args = [_mostly(data, st.sampled_from(["new", "x2", "a_int8"]), names),
                _mostly(data, st.sampled_from(DTYPES), dtype_specs),
                ["a", "b", "c"][:rank], shape,
                data.draw(st.one_of(st.none(), st.lists(st.integers(1, 4), min_size=rank,
                                                        max_size=rank))),
                data.draw(scalars)]
        if data.draw(st.booleans()):  # one argument gone wrong
            i = data.draw(st.integers(0, 4))
            args[i] = data.draw([names, dtype_specs, st.one_of(
                st.lists(st.one_of(weird_text, st.integers()), max_size=3), st.text(max_size=2),
                st.none()), index_list, index_list][i])
        return kind, lambda s: s.open_dataset(ds_name).define_array(*args), None
    if kind.startswith("write_array"):
        if kind.endswith("dtype") and isinstance(array, str) and array in ARRAYS:
            # the right dtype (any layout or byte order), so window and layout checks are hit
            dtype, full = ARRAYS[array]
            rank = len(full) if data.draw(st.integers(0, 9)) else data.draw(st.integers(0, 3))
            shape = tuple(data.draw(st.lists(st.integers(0, 4), min_size=rank, max_size=rank)))
            payload = _right_dtype(data, dtype, shape)
        else:
            payload = data.draw(arrays())
        start = _window(data, _shape_of(array), "start")
        return kind, lambda s: s.open_dataset(ds_name).write_array(array, start, payload), \
            (ds_name, array, start, payload)
    shape = _shape_of(array)
    if kind == "read_array":
        start, window = _window(data, shape, "start"), _window(data, shape, "shape")
        return kind, lambda s: s.open_dataset(ds_name).read_array(array, start, window), None
    if kind == "delete_array":
        return kind, lambda s: s.open_dataset(ds_name).delete_array(array), None
    if kind in ("set_attribute", "set_array_attribute"):
        key = _mostly(data, st.sampled_from(["k", "new", "pending"]), st.one_of(weird_text,
                                                                                 names))
        value = data.draw(scalars)
        dtype = _mostly(data, st.none(), dtype_specs, 5)
        if kind == "set_attribute":
            return kind, lambda s: s.open_dataset(ds_name).set_attribute(key, value, dtype), None
        return kind, lambda s: s.open_dataset(ds_name).set_array_attribute(array, key, value,
                                                                             dtype), None
    if kind == "delete_attribute":
        key = _mostly(data, st.sampled_from(["k", "pending", "nope"]), names)
        return kind, lambda s: s.open_dataset(ds_name).delete_attribute(key), None
    if kind == "read_stacked":
        targets = _mostly(data, st.lists(st.sampled_from(["d0", "d1"]), max_size=3),
                          st.one_of(st.lists(names, max_size=3), names))
        start, window = _window(data, shape, "start"), _window(data, shape, "shape")
        return kind, lambda s: s.read_array_across_stacked(array, targets, start, window), None
    return kind, lambda s: s.open_dataset(ds_name).array_meta(array), None


def _shape_of(array) -> tuple[int, ...]:
    return ARRAYS[array][1] if isinstance(array, str) and array in ARRAYS else (5, 6)


def _right_dtype(data, dtype, shape):
    if dtype == "object":
        word = data.draw(st.sampled_from(["w", "", "é", "\ud800", "\x00", "x" * 50]))
        payload = np.full(shape, word, object)
        if payload.size and data.draw(st.booleans()):  # the same text as a numpy str array
            payload = payload.astype(str)
    else:
        payload = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape).astype(dtype)
        if data.draw(st.booleans()) and dtype != "datetime64[ns]":
            payload = payload.astype(payload.dtype.newbyteorder(">"))
    layout = data.draw(st.sampled_from(["C", "F", "strided", "reversed"]))
    if layout == "F":
        payload = np.asfortranarray(payload)
    elif layout == "strided" and payload.ndim:
        payload = np.repeat(payload, 2, axis=-1)[..., ::2]
    elif layout == "reversed" and payload.ndim:
        payload = np.flip(np.flip(payload, -1).copy(), -1)
    return payload


HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


@settings(max_examples=150, suppress_health_check=HEALTH)
@given(data=st.data())
def test_bad_calls_raise_documented_errors_and_change_nothing(template, tmp_path_factory, data):
    _one_call(template, tmp_path_factory, data)


@pytest.mark.slow
@settings(max_examples=5 * settings.default.max_examples, suppress_health_check=HEALTH)
@given(data=st.data())
def test_many_bad_calls_raise_documented_errors_and_change_nothing(template, tmp_path_factory,
                                                                   data):
    _one_call(template, tmp_path_factory, data)


def _one_call(template, tmp_path_factory, data) -> None:
    store = _open_copy(template, tmp_path_factory.getbasetemp() / "bad-input-work")
    before = _state(store)
    kind, call, write = calls(data)
    expected = _expected_after(store, write)
    try:
        call(store)
    except ALLOWED as err:
        STATS[f"{kind}: {type(err).__name__}"] += 1
        assert str(err), f"{type(err).__name__} without a message"
        after = _state(store)
        assert after == before, f"{kind} raised {err!r} but changed the store"
        store.flush()
        assert _content(atlas.Atlas.open(store.location)) == template[1]
        return
    except Exception as err:  # noqa: BLE001 - reported with the input that caused it
        raise AssertionError(f"{kind} raised an undocumented {type(err).__name__}: {err}") \
            from err
    STATS[f"{kind}: ok"] += 1
    if expected is not None:
        got = store.open_dataset(write[0]).read_array(write[1])
        assert _same(got, expected), f"{write[1]} reads back wrong after a successful write"
    content = [x for x in _content(store) if not x.startswith("    stats")]
    store.flush()
    assert [x for x in _content(atlas.Atlas.open(store.location))
            if not x.startswith("    stats")] == content


def _expected_after(store, write):
    """numpy's version of the array after the write, or None when it cannot succeed anyway."""
    if write is None:
        return None
    ds_name, array, start, payload = write
    try:
        current = store.open_dataset(ds_name).read_array(array)
        box = tuple(slice(int(b), int(b) + n) for b, n in zip(start, payload.shape))
        expected = current.copy()
        if payload.dtype.kind == "S":
            payload = np.char.decode(payload, "utf-8")
        with warnings.catch_warnings():  # a lossy cast here means the write must fail anyway
            warnings.simplefilter("ignore")
            expected[box] = payload
    except Exception:  # noqa: BLE001 - the call itself will show what is wrong
        return None
    return expected


def _same(a, b) -> bool:
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and [str(x) for x in a.reshape(-1)] == \
            [str(x) for x in b.reshape(-1)]
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
