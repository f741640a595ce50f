"""Timestamps enter exactly or not at all (items 3 and 4 of issue 17).

A timestamp outside datetime64[ns] (1677-09-21 .. 2262-04-11) used to wrap silently: a fill of
2300-01-01 or an attribute ``datetime(3000, 1, 1)`` came back as another date, and a fill or
attribute of ``2**63`` nanoseconds was committed and then made every read of the dataset raise
OverflowError forever. Now every way a timestamp enters (fill values, attributes with and
without ``dtype="timestamp_ns"``, in any unit) is checked exactly at the call: OverflowError
and nothing changes; everything in range round-trips to the nanosecond. An attribute given as a
datetime64 without a dtype keeps its own unit, so it round-trips exactly whatever its range."""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from contextlib import redirect_stdout

import numpy as np
import pytest

import atlas
from atlas.cli import main as cli_main

from ._harness import record

SEEN: Counter = Counter()

OUTSIDE = [
    np.datetime64("2300-01-01"), np.datetime64("1600-01-01", "s"), np.datetime64(3000, "Y"),
    np.datetime64("2262-04-12", "D"), np.datetime64(10**18, "s"), dt.datetime(3000, 1, 1),
    dt.datetime(1, 1, 1), dt.datetime(2300, 1, 1, tzinfo=dt.timezone.utc), "2500-01-01",
    "2500-01-01T00:00:00.000000000", "2262-04-11T23:47:16.854775808", "1600-01-01T00:00",
    2**63, 2**64 - 1, -(2**63) - 1, np.uint64(2**64 - 1), np.uint64(2**63),
]
INSIDE = [  # value, the datetime64[ns] it must read back as
    (np.datetime64("2262-04-11T23:47:16.854775807"),
     np.datetime64("2262-04-11T23:47:16.854775807", "ns")),
    ("1677-09-21T00:12:43.145224193", np.datetime64("1677-09-21T00:12:43.145224193", "ns")),
    (np.datetime64("2024-02-29", "D"), np.datetime64("2024-02-29", "ns")),
    (np.datetime64("2024", "Y"), np.datetime64("2024-01-01", "ns")),
    (np.datetime64(2000, "ps"), np.datetime64(2, "ns")),  # whole nanoseconds only
    (dt.datetime(2262, 4, 11, 23, 47, 16, 854775), np.datetime64("2262-04-11T23:47:16.854775",
                                                                  "ns")),
    (dt.datetime(2000, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
     np.datetime64("2000-01-01T00:00", "ns")),
    ("2024-01-01T00:00:00.123456789", np.datetime64("2024-01-01T00:00:00.123456789", "ns")),
    (2**63 - 1, np.datetime64(2**63 - 1, "ns")),
    (np.int64(-(2**63) + 1), np.datetime64(-(2**63) + 1, "ns")),
]


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if SEEN:
        record("timestamps", checks=sum(SEEN.values()), outcomes=dict(sorted(SEEN.items())))


def _fresh(tmp_path):
    store = atlas.Atlas.create(tmp_path / "store")
    ds = store.create_dataset("d")
    ds.define_array("t", "timestamp_nanoseconds", ["x"], [3], [3])
    ds.set_attribute("kept", np.datetime64("2024-01-01", "ns"))
    store.flush()
    return store


def _everything_reads(store) -> None:
    """What the issue found poisoned: reads, metadata, attributes, xarray, ``atlas show``."""
    again = atlas.Atlas.open(store.location)
    ds = again.open_dataset("d")
    for name in ds.list_arrays():
        ds.read_array(name)
        ds.array_meta(name)
        ds.array_attributes(name)
    ds.attributes()
    again.to_xarray("d").load()
    with redirect_stdout(io.StringIO()):
        assert cli_main(["show", str(store.location), "d"]) == 0


@pytest.mark.parametrize("value", OUTSIDE, ids=repr)
def test_a_timestamp_outside_datetime64_ns_is_refused_everywhere_it_enters(tmp_path, value):
    store = _fresh(tmp_path)
    ds = store.open_dataset("d")
    before = (ds.list_arrays(), ds.attributes(), ds.array_attributes("t"))
    calls = {
        "fill": lambda: ds.define_array("f", "timestamp_nanoseconds", ["y"], [2], [2], value),
        "attribute timestamp_ns": lambda: ds.set_attribute("k", value, dtype="timestamp_ns"),
        "array attribute timestamp_ns": lambda: ds.set_array_attribute(
            "t", "k", value, dtype="timestamp_nanoseconds"),
    }
    if isinstance(value, dt.datetime):  # inferred as a timestamp in nanoseconds
        calls["attribute"] = lambda: ds.set_attribute("k", value)
        calls["array attribute"] = lambda: ds.set_array_attribute("t", "k", value)
    for what, call in calls.items():
        with pytest.raises(OverflowError, match="datetime64\\[ns\\] range"):
            call()
        SEEN[f"refused: {what}"] += 1
    assert (ds.list_arrays(), ds.attributes(), ds.array_attributes("t")) == before
    if isinstance(value, np.datetime64):
        # an inferred datetime64 attribute keeps its own unit, so it is exact as given
        ds.set_attribute("k", value)
        ds.set_array_attribute("t", "k", value)
    store.flush()
    _everything_reads(store)
    if isinstance(value, np.datetime64):
        back = atlas.Atlas.open(store.location).open_dataset("d")
        for got in (back.get_attribute("k"), back.get_array_attribute("t", "k")):
            assert got == value and got.dtype == value.dtype
        SEEN["kept in its own unit"] += 1


@pytest.mark.parametrize("value,expected", INSIDE, ids=lambda v: repr(v)[:40])
def test_a_timestamp_inside_the_range_round_trips_to_the_nanosecond(tmp_path, value, expected):
    store = _fresh(tmp_path)
    ds = store.open_dataset("d")
    ds.define_array("f", "timestamp_nanoseconds", ["y"], [2], [2], value)
    ds.set_attribute("k", value, dtype="timestamp_ns")
    ds.set_array_attribute("t", "k", value, dtype="timestamp_ns")
    store.flush()
    back = atlas.Atlas.open(store.location).open_dataset("d")
    assert back.array_fill_value("f") == expected
    assert list(back.read_array("f")) == [expected, expected]
    assert back.get_attribute("k") == expected
    assert back.get_array_attribute("t", "k") == expected
    _everything_reads(store)
    SEEN["round trip"] += 1


def test_a_sub_nanosecond_timestamp_is_refused_not_rounded(tmp_path):
    ds = _fresh(tmp_path).open_dataset("d")
    with pytest.raises(ValueError, match="nanoseconds"):
        ds.set_attribute("k", np.datetime64(1500, "ps"), dtype="timestamp_ns")
    with pytest.raises(ValueError, match="nanoseconds"):
        ds.define_array("f", "timestamp_nanoseconds", ["x"], [2], [2], np.datetime64(1, "fs"))
    SEEN["sub-ns refused"] += 2
