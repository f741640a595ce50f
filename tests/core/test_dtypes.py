"""The dtype table: every dtype round-trips, aliases resolve, and data is never cast."""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import ALL_DTYPES, NUMERIC, NUMPY_OF, assert_same, full_like_fill, reopen, sample

import atlas
from atlas.dtypes import resolve_dtype


def _define(ds, name, dtype, shape, chunk_shape=None, fill_value=None):
    dims = [f"d{i}" for i in range(len(shape))]
    ds.define_array(name, dtype=dtype, dims=dims, shape=list(shape),
                    chunk_shape=chunk_shape, fill_value=fill_value)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_every_dtype_round_trips_exactly_after_reopen(store, store_path, rng, dtype):
    data = sample(dtype, (7, 5), rng)
    ds = store.create_dataset("d")
    _define(ds, "v", dtype, data.shape, chunk_shape=[3, 2])
    ds.write_array("v", [0, 0], data)
    assert_same(ds.read_array("v"), data)
    store.flush()
    back = reopen(store_path).open_dataset("d")
    assert_same(back.read_array("v"), data)
    assert back.array_meta("v")["dtype"] == dtype


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_zero_d_arrays_round_trip_for_every_dtype(store, store_path, rng, dtype):
    data = sample(dtype, (), rng)
    ds = store.create_dataset("d")
    ds.define_array("s", dtype, dims=[], shape=[])
    assert_same(ds.read_array("s"), full_like_fill(dtype, ()))
    ds.write_array("s", [], data)
    assert_same(ds.read_array("s"), data)
    assert_same(ds.read_array("s", [], []), data)
    store.flush()
    back = reopen(store_path).open_dataset("d")
    assert_same(back.read_array("s"), data)
    assert back.array_meta("s")["shape"] == []


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("i8", "int8"), ("i16", "int16"), ("i32", "int32"), ("i64", "int64"), ("u8", "uint8"),
     ("u16", "uint16"), ("u32", "uint32"), ("u64", "uint64"), ("f32", "float32"),
     ("f64", "float64"), ("timestamp_ns", "timestamp_nanoseconds"),
     ("datetime64[ns]", "timestamp_nanoseconds"), ("FLOAT32", "float32"),
     (np.float32, "float32"), (np.dtype("int16"), "int16"), (np.dtype("i8"), "int64"),
     (np.dtype("M8[ns]"), "timestamp_nanoseconds"), (object, "string"), ("str", "string")],
)
def test_dtype_aliases_resolve_to_the_canonical_dtype(store, alias, canonical):
    ds = store.create_dataset("d")
    ds.define_array("v", alias, dims=["x"], shape=[3])
    assert ds.array_meta("v")["dtype"] == canonical
    assert ds.read_array("v").dtype == NUMPY_OF[canonical]


@pytest.mark.parametrize("dtype", ["float16", "bool", "complex64", "datetime64[s]", "nonsense",
                                   np.bool_, "binary"])
def test_unsupported_dtypes_are_rejected_naming_the_supported_set(store, dtype):
    ds = store.create_dataset("d")
    with pytest.raises(TypeError, match="float32"):
        ds.define_array("v", dtype, dims=["x"], shape=[3])
    assert ds.list_arrays() == []


def _wrong_data_cases():
    same = {"int8": "int16", "int16": "int8", "int32": "int64", "int64": "int32",
            "uint8": "int8", "uint16": "int16", "uint32": "uint64", "uint64": "int64",
            "float32": "float64", "float64": "float32"}
    cases = [(dtype, np.zeros(3, other)) for dtype, other in same.items()]
    cases += [("float64", np.zeros(3, "int64")), ("int64", np.zeros(3, "float64")),
              ("int32", np.zeros(3, bool)), ("float64", np.zeros(3, "M8[ns]")),
              ("timestamp_nanoseconds", np.zeros(3, "int64")),
              ("timestamp_nanoseconds", np.zeros(3, "M8[s]")),
              ("timestamp_nanoseconds", np.zeros(3, "M8[us]")),
              ("string", np.zeros(3, "int64")), ("int64", np.array(["1", "2", "3"])),
              ("string", np.array(["a", 1, None], dtype=object))]
    return cases


@pytest.mark.parametrize(("dtype", "data"), _wrong_data_cases(),
                         ids=lambda v: v if isinstance(v, str) else str(v.dtype))
def test_data_of_another_dtype_raises_type_error_and_writes_nothing(store, dtype, data):
    ds = store.create_dataset("d")
    ds.define_array("v", dtype, dims=["x"], shape=[3])
    with pytest.raises(TypeError, match="'v' in dataset 'd'") as info:
        ds.write_array("v", [0], data)
    message = str(info.value)  # says what was expected and what was given
    if data.dtype != object:
        assert str(data.dtype) in message, message
    if dtype != "string":
        assert NUMPY_OF[dtype].name in message or dtype in message, message
    assert_same(ds.read_array("v"), full_like_fill(dtype, (3,)))


def test_write_array_refuses_non_ndarray_data(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int64", dims=["x"], shape=[3])
    with pytest.raises(TypeError, match="numpy.ndarray"):
        ds.write_array("v", [0], [1, 2, 3])
    # a masked array's mask would be dropped: its masked cells stored as whatever they hold
    masked = np.ma.masked_array(np.array([1, 2, 3]), mask=[0, 1, 0])
    with pytest.raises(TypeError, match=r"masked array; give data.filled\(fill\)"):
        ds.write_array("v", [0], masked)
    with pytest.raises(TypeError, match="masked array"):
        store.write_array_across_stacked("w", ["d"], masked[None])
    assert not ds.read_array("v").any() and store.list_arrays() == ["v"]


@pytest.mark.parametrize("dtype", [*NUMERIC, "timestamp_nanoseconds"])
def test_non_native_byte_order_data_is_accepted_with_the_same_values(store, rng, dtype):
    # timestamps too (big-endian datetime64[ns] was refused as another dtype)
    data = sample(dtype, (6,), rng)
    swapped = data.astype(data.dtype.newbyteorder(">" if data.dtype.byteorder != ">" else "<"))
    ds = store.create_dataset("d")
    ds.define_array("v", dtype, dims=["x"], shape=[6], chunk_shape=[4])
    ds.write_array("v", [0], swapped)
    assert_same(ds.read_array("v"), data)
    store.write_array_across_stacked("w", ["d", "e"], np.stack([swapped, swapped[::-1]]))
    assert_same(store.read_array_across_stacked("w", ["d", "e"]), np.stack([data, data[::-1]]))


def test_strings_accept_object_bytes_and_unicode_input_and_read_back_str(store, store_path):
    ds = store.create_dataset("d")
    ds.define_array("s", "string", dims=["x"], shape=[9], chunk_shape=[2])
    ds.write_array("s", [0], np.array(["alpha", "", "βeta"], dtype=object))
    ds.write_array("s", [3], np.array([b"bytes", b""], dtype="S5"))
    ds.write_array("s", [5], np.array(["uni", "日本語"], dtype="U3"))
    ds.write_array("s", [7], np.array([b"raw", "mixed"], dtype=object))
    expected = np.array(["alpha", "", "βeta", "bytes", "", "uni", "日本語", "raw", "mixed"],
                        dtype=object)
    assert_same(ds.read_array("s"), expected)
    store.flush()
    assert_same(reopen(store_path).open_dataset("d").read_array("s"), expected)


def test_two_d_string_arrays_round_trip_with_partial_windows(store, store_path, rng):
    data = sample("string", (5, 7), rng)
    ds = store.create_dataset("d")
    ds.define_array("s", "string", dims=["y", "x"], shape=[5, 7], chunk_shape=[2, 3])
    ds.write_array("s", [0, 0], data)
    ds.write_array("s", [1, 2], np.array([["p", "q"], ["r", "s"]], dtype="U1"))
    data[1:3, 2:4] = [["p", "q"], ["r", "s"]]
    store.flush()
    back = reopen(store_path).open_dataset("d")
    assert_same(back.read_array("s"), data)
    assert_same(back.read_array("s", [1, 1], [3, 4]), data[1:4, 1:5])


def test_timestamps_read_back_as_datetime64_ns_with_nat_preserved(store, store_path):
    data = np.array(["2024-01-01T00:00", "NaT", "1969-12-31T23:59:59.999999999",
                     "2262-04-11T23:47:16.854775807"], dtype="M8[ns]")
    ds = store.create_dataset("d")
    for alias in ("timestamp_nanoseconds", "timestamp_ns", "datetime64[ns]"):
        ds.define_array(f"t_{alias[:6]}{len(alias)}", alias, dims=["t"], shape=[4],
                        chunk_shape=[3])
    for name in ds.list_arrays():
        ds.write_array(name, [0], data)
    store.flush()
    back = reopen(store_path).open_dataset("d")
    for name in back.list_arrays():
        assert_same(back.read_array(name), data)


def test_writing_does_not_keep_a_reference_to_the_callers_buffer(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "float64", dims=["x"], shape=[10], chunk_shape=[4])
    data = np.arange(10, dtype="float64")
    ds.write_array("v", [0], data)  # whole chunks and a partial edge chunk
    part = np.array([100.0, 101.0])
    ds.write_array("v", [1], part)  # a read-modify-write chunk
    expected = data.copy()
    expected[1:3] = part
    data[:] = -1
    part[:] = -1
    assert_same(ds.read_array("v"), expected)


def test_resolve_dtype_accepts_a_resolved_dtype_and_is_idempotent():
    dt = resolve_dtype("i32")
    assert resolve_dtype(dt) is dt
    assert resolve_dtype(dt.name) is dt


def test_atlas_exports_its_error_types_deriving_from_the_builtins():
    pairs = {atlas.DatasetNotFoundError: KeyError, atlas.ArrayNotFoundError: KeyError,
             atlas.AlreadyExistsError: FileExistsError, atlas.InvalidNameError: ValueError,
             atlas.OutOfBoundsError: IndexError, atlas.StoreNotFoundError: FileNotFoundError,
             atlas.ReadOnlyError: PermissionError, atlas.ConflictError: RuntimeError,
             atlas.CorruptionError: OSError, atlas.FormatError: ValueError}
    for cls, builtin in pairs.items():
        assert issubclass(cls, atlas.AtlasError) and issubclass(cls, builtin), cls
