"""Dataset and per-array attributes: typed values that survive flush and reopen."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from core_helpers import reopen

VALUES = [
    ("int", 1, int), ("negative", -(2**63), int), ("float", 2.5, float), ("str", "KNMI", str),
    ("unicode", "Zürich 東京", str), ("empty", "", str), ("true", True, bool),
    ("false", False, bool), ("bytes", b"\x00\xff", bytes),
    ("np_int8", np.int8(-3), np.int8), ("np_uint64", np.uint64(2**64 - 1), np.uint64),
    ("np_float32", np.float32(0.1), np.float32), ("np_float64", np.float64(1e300), np.float64),
    ("np_bool", np.bool_(True), np.bool_),
    ("ts", np.datetime64("2024-01-01T12:00:00.000000001", "ns"), np.datetime64),
    ("ts_coarse", np.datetime64("2024-01-01", "D"), np.datetime64),
]


def _check(got, value, kind):
    assert type(got) is kind, (type(got), kind)
    if isinstance(value, np.datetime64):  # with its unit: values come back as they were set
        assert got.dtype == value.dtype and got == value
    else:
        assert got == value


def test_attribute_values_keep_their_type_through_flush_and_reopen(store, store_path):
    ds = store.create_dataset("d")
    for key, value, _ in VALUES:
        ds.set_attribute(key, value)
    for key, value, kind in VALUES:
        _check(ds.get_attribute(key), value, kind)
    store.flush()
    back = reopen(store_path).open_dataset("d")
    for key, value, kind in VALUES:
        _check(back.get_attribute(key), value, kind)
    assert list(back.attributes()) == [key for key, _, _ in VALUES]


def test_python_datetimes_are_stored_as_nanosecond_timestamps(store):
    ds = store.create_dataset("d")
    ds.set_attribute("naive", dt.datetime(2024, 5, 6, 7, 8, 9, 123456))
    ds.set_attribute("aware", dt.datetime(2024, 5, 6, 9, 8, 9, tzinfo=dt.timezone(
        dt.timedelta(hours=2))))
    assert ds.get_attribute("naive") == np.datetime64("2024-05-06T07:08:09.123456", "ns")
    assert ds.get_attribute("aware") == np.datetime64("2024-05-06T07:08:09", "ns")


@pytest.mark.parametrize("ns", [-(2**63), -(2**63) + 1, -1, 0, 2**63 - 1])
def test_nanosecond_timestamps_keep_every_int64_and_nat(store, store_path, ns):
    """NaT and both ends of datetime64[ns] (converted without a range check: every int64 is
    one of them) come back as set."""
    store.create_dataset("d").set_attribute("t", np.datetime64(ns, "ns"))
    store.flush()
    got = reopen(store_path).open_dataset("d").get_attribute("t")
    assert isinstance(got, np.datetime64) and got.dtype == np.dtype("datetime64[ns]")
    assert int(got.view(np.int64)) == ns


def test_special_floats_survive_reopen(store, store_path):
    ds = store.create_dataset("d")
    ds.set_attribute("nan", float("nan"))
    ds.set_attribute("inf", float("-inf"))
    store.flush()
    back = reopen(store_path).open_dataset("d")
    assert math.isnan(back.get_attribute("nan"))
    assert back.get_attribute("inf") == -math.inf


@pytest.mark.parametrize(
    ("value", "dtype", "expected", "kind"),
    [(5, "int8", np.int8(5), np.int8), (5, "float32", np.float32(5), np.float32),
     (2.5, "float64", 2.5, np.float64), (7, "uint16", np.uint16(7), np.uint16),
     ("2024-01-02", "timestamp_nanoseconds", np.datetime64("2024-01-02", "ns"), np.datetime64),
     (0, "timestamp_ns", np.datetime64(0, "ns"), np.datetime64),
     (True, "bool", True, bool), ("x", "string", "x", str)],
)
def test_explicit_attribute_dtype_overrides_inference(store, store_path, value, dtype, expected,
                                                      kind):
    ds = store.create_dataset("d")
    ds.set_attribute("k", value, dtype=dtype)
    store.flush()
    got = reopen(store_path).open_dataset("d").get_attribute("k")
    assert type(got) is kind and got == expected


@pytest.mark.parametrize(
    ("value", "dtype", "error"),
    [(None, None, TypeError), (object(), None, TypeError), ([1, object()], None, TypeError),
     (np.zeros(2, dtype="V2"), None, TypeError), 
     (300, "int8", OverflowError), (-1, "uint8", OverflowError), (1.5, "int32", TypeError),
     ("x", "float32", TypeError), (1, "string", TypeError), (1, "bool", TypeError),
     (1, "complex64", TypeError), (1, "nonsense", TypeError)],
)
def test_attribute_values_that_cannot_be_stored_are_rejected(store, value, dtype, error):
    ds = store.create_dataset("d")
    with pytest.raises(error, match="'k'"):
        ds.set_attribute("k", value, dtype=dtype)
    assert ds.attributes() == {}


@pytest.mark.parametrize("value", [[1, 2], {"a": [1, None]}, np.array([[1, 2]], np.int16),
                                   ("x", b"\x00"), {"nan": float("nan")}],
                         ids=["list", "dict", "ndarray", "tuple", "nan"])
def test_structured_attribute_values_come_back_as_they_were_set(store, store_path, value):
    store.create_dataset("d").set_attribute("k", value)
    store.flush()
    got = reopen(store_path).open_dataset("d").get_attribute("k")
    assert type(got) is type(value)
    if isinstance(value, np.ndarray):
        assert got.dtype == value.dtype
        np.testing.assert_array_equal(got, value)
    elif isinstance(value, dict) and "nan" in value:
        assert np.isnan(got["nan"])
    else:
        assert got == value


def test_non_str_attribute_keys_raise_type_error(store):
    ds = store.create_dataset("d")
    with pytest.raises(TypeError):
        ds.set_attribute(1, "x")


def test_empty_attribute_keys_raise_value_error_and_store_nothing(store):
    ds = store.create_dataset("d")
    with pytest.raises(ValueError, match="empty"):
        ds.set_attribute("", "x")
    ds.define_array("a", "int8", ["i"], [2])
    with pytest.raises(ValueError, match="empty"):
        ds.set_array_attribute("a", "", 1)
    assert ds.attributes() == {}
    assert ds.array_attributes("a") == {}


def test_setting_again_replaces_and_delete_removes(store, store_path):
    ds = store.create_dataset("d")
    ds.set_attribute("month", 1)
    ds.set_attribute("month", "January")
    assert ds.get_attribute("month") == "January"
    ds.set_attribute("gone", 1)
    ds.delete_attribute("gone")
    with pytest.raises(KeyError, match="gone"):
        ds.delete_attribute("gone")
    assert ds.get_attribute("gone") is None
    store.flush()
    assert reopen(store_path).open_dataset("d").attributes() == {"month": "January"}


def test_attributes_belong_to_one_dataset(store):
    a = store.create_dataset("a")
    b = store.create_dataset("b")
    a.set_attribute("k", 1)
    assert b.attributes() == {} and b.get_attribute("k") is None


def test_attribute_changes_are_invisible_to_a_fresh_handle_until_flush(store, store_path):
    ds = store.create_dataset("d")
    store.flush()
    ds.set_attribute("k", 1)
    assert reopen(store_path).open_dataset("d").attributes() == {}
    store.flush()
    assert reopen(store_path).open_dataset("d").attributes() == {"k": 1}


def test_array_attributes_are_per_array_and_survive_reopen(store, store_path):
    ds = store.create_dataset("d")
    for name in ("t", "s"):
        ds.define_array(name, "float32", dims=["x"], shape=[2])
    ds.set_array_attribute("t", "units", "degC")
    ds.set_array_attribute("t", "scale", np.float32(0.5))
    ds.set_array_attribute("s", "units", "psu")
    ds.set_array_attribute("s", "valid_max", 42, dtype="int16")
    store.flush()
    back = reopen(store_path).open_dataset("d")
    assert back.array_attributes("t") == {"units": "degC", "scale": np.float32(0.5)}
    assert type(back.get_array_attribute("t", "scale")) is np.float32
    assert back.get_array_attribute("s", "units") == "psu"
    assert type(back.get_array_attribute("s", "valid_max")) is np.int16
    assert back.get_array_attribute("s", "missing") is None
    assert back.attributes() == {}  # not flattened into the dataset's attributes


def test_array_attributes_of_a_missing_array_raise_key_error(store):
    ds = store.create_dataset("d")
    with pytest.raises(KeyError, match="nope"):
        ds.set_array_attribute("nope", "k", 1)
    with pytest.raises(KeyError):
        ds.get_array_attribute("nope", "k")
    with pytest.raises(KeyError):
        ds.array_attributes("nope")


def test_redefining_a_deleted_array_starts_without_attributes(store):
    ds = store.create_dataset("d")
    ds.define_array("v", "int8", dims=["x"], shape=[1])
    ds.set_array_attribute("v", "units", "m")
    ds.delete_array("v")
    ds.define_array("v", "int8", dims=["x"], shape=[1])
    assert ds.array_attributes("v") == {}


def test_integers_beyond_int64_are_kept_exactly(store, store_path):
    store.create_dataset("d").set_attribute("big", 2**70)
    store.flush()
    got = reopen(store_path).open_dataset("d").get_attribute("big")
    assert type(got) is int and got == 2**70


def test_one_arrays_attributes_are_looked_up_in_its_own_tables_only(store, store_path,
                                                                   monkeypatch):
    """array_attributes walked the attribute tables of every array: a dataset of 16,000 arrays
    took 22 s to read each array's attributes once."""
    from atlas.core._catalog import Catalog

    view = store.create_dataset("wide")
    for i in range(60):
        view.define_array(f"a{i}", "float32", ["x"], [2])
        view.set_array_attribute(f"a{i}", "units", f"u{i}")
    store.flush()
    reopened = reopen(store_path)
    looked, walks = [], []
    get_attr, section_ids = Catalog.get_attr, Catalog.section_ids
    monkeypatch.setattr(Catalog, "get_attr", lambda self, sid, key: looked.append(sid) or
                        get_attr(self, sid, key))
    # a listing of the tables of a kind walks every table of that kind in the store
    monkeypatch.setattr(Catalog, "section_ids", lambda self, kind: walks.append(kind) or
                        section_ids(self, kind))
    wide = reopened.open_dataset("wide")
    assert [wide.array_attributes(f"a{i}") for i in range(60)] == [{"units": f"u{i}"}
                                                                   for i in range(60)]
    assert len(looked) == 60  # one table each
    assert len(walks) <= 2, walks  # not once per array
