"""Files opened with decoding switched off (``decode_times=False``, ``mask_and_scale=False``,
``decode_cf=False``) come back exactly as opened: raw numbers, raw attributes, char arrays."""

from __future__ import annotations

import numpy as np
import pytest
from fidelity_helpers import FLAVOURS, roundtrip
from test_nc_calendars import calendar_file
from test_nc_packing import packed_file
from test_nc_strings import station_file


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_times_opened_with_decode_times_false_stay_numbers_with_units(tmp_path, flavour):
    path = tmp_path / "f.nc"
    kw = calendar_file(path, flavour, "noleap")
    store = roundtrip(path, tmp_path / "store", decode_times=False, **kw)
    back = store.to_xarray("d")
    assert back["time"].dtype == np.float64
    assert back["time"].attrs["calendar"] == "noleap"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_packed_files_opened_with_mask_and_scale_false_stay_raw(tmp_path, flavour):
    path = tmp_path / "f.nc"
    kw = packed_file(path, flavour)
    store = roundtrip(path, tmp_path / "store", mask_and_scale=False, **kw)
    back = store.to_xarray("d")
    assert back["t2m"].dtype == np.int16
    assert back["t2m"].attrs["_FillValue"] == -32767
    assert "scale_factor" in back["t2m"].attrs


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_cftime_with_a_fill_attribute_under_mask_and_scale_false_keeps_it(tmp_path, flavour):
    path = tmp_path / "f.nc"
    kw = calendar_file(path, flavour, "all_leap", time_fill=np.float64(-1e30))
    back = roundtrip(path, tmp_path / "store", mask_and_scale=False, **kw).to_xarray("d")
    assert back["time"].dtype == object
    assert back["time"].attrs["_FillValue"] == -1e30


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("make", [calendar_file, packed_file, station_file])
def test_files_opened_with_decode_cf_false_come_back_raw(tmp_path, flavour, make):
    path = tmp_path / "f.nc"
    kw = make(path, flavour) if make is not calendar_file else make(path, flavour, "360_day")
    roundtrip(path, tmp_path / "store", decode_cf=False, **kw)


def test_raw_char_arrays_split_multibyte_characters_and_still_round_trip(tmp_path):
    # decode_cf=False leaves (n, strlen) |S1 arrays; single bytes of UTF-8 are not UTF-8
    path = tmp_path / "f.nc"
    station_file(path, "netcdf4", ["Zürich".encode(), "日本".encode()], 8)
    store = roundtrip(path, tmp_path / "store", decode_cf=False)
    assert store.to_xarray("d")["station_name"].dtype == np.dtype("S1")
