"""Fixed-width bytes (char arrays), fixed-width unicode and variable-length strings come back
with their dtype, their padding and their bytes."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from fidelity_helpers import FLAVOURS, Var, assert_faithful, chars, roundtrip, write_nc

import atlas

STATIONS = [b"DE BILT", b"CABAUW  ", b"AMELAND\x00", b"  X", b""]  # padding, NUL, empty
LATIN1 = [b"K\xf8benhavn", b"M\xfcnchen", b"A\xe7ores\xff"]  # not UTF-8


def station_file(path, flavour, names=STATIONS, width=10):
    n = len(names)
    variables = [
        Var("station_name", "S1", ("station", "name_strlen"), chars(names, width),
            {"long_name": "station name", "cf_role": "timeseries_id"}),
        Var("pressure", "f4", ("station",), np.linspace(990, 1020, n, dtype="f4"),
            {"units": "hPa"}),
    ]
    return write_nc(path, flavour, {"station": n, "name_strlen": width}, variables)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_char_arrays_come_back_as_fixed_width_bytes_with_their_padding(tmp_path, flavour):
    path = tmp_path / "f.nc"
    kw = station_file(path, flavour)
    with xr.open_dataset(path, **kw) as ds:
        assert ds["station_name"].dtype == np.dtype("S10")
        assert ds["station_name"].encoding["char_dim_name"] == "name_strlen"
    store = roundtrip(path, tmp_path / "store", **kw)
    back = store.to_xarray("d")["station_name"].values
    assert back.tolist() == [s.rstrip(b"\x00") for s in STATIONS]
    # the store holds text: bulk reads see str
    assert store.open_dataset("d").read_array("station_name").tolist() == \
        [s.rstrip(b"\x00").decode() for s in STATIONS]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_bytes_that_are_not_utf8_come_back_byte_for_byte(tmp_path, flavour):
    path = tmp_path / "f.nc"
    kw = station_file(path, flavour, LATIN1, 12)
    store = roundtrip(path, tmp_path / "store", **kw)
    assert store.to_xarray("d")["station_name"].values.tolist() == LATIN1


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_s1_char_arrays_along_a_real_dimension_keep_that_dimension(tmp_path, flavour):
    # the last dimension is a coordinate, so xarray does not join the characters
    flags = np.array([[b"A", b"B", b" "], [b"\x00", b"x", b"\xe9"]], dtype="S1")
    variables = [
        Var("qc_flag", "S1", ("time", "level"), flags, {"flag_meanings": "A good B bad"}),
        Var("level", "i4", ("level",), np.array([10, 20, 30], dtype="i4")),
    ]
    path = tmp_path / "f.nc"
    kw = write_nc(path, flavour, {"time": 2, "level": 3}, variables)
    with xr.open_dataset(path, **kw) as ds:
        assert ds["qc_flag"].dtype == np.dtype("S1") and ds["qc_flag"].dims == ("time", "level")
    roundtrip(path, tmp_path / "store", **kw)


@pytest.mark.parametrize("flavour", ["netcdf4", "netcdf3"])
@pytest.mark.parametrize("decode_cf", [True, False])
def test_char_arrays_with_a_nul_fill_and_masked_cells_come_back_masked(tmp_path, flavour,
                                                                      decode_cf):
    """A masked cell of an S1 variable whose _FillValue is b'\\x00' came back as b'\\x00',
    not NaN: xarray reads that fill as b'' (numpy drops trailing NULs), and the stored cell
    was compared with it as a Python object."""
    flags = np.array([b"a", b"\x00", b"c"], "S1")  # the middle cells hold the fill
    names = chars([b"ab", b"", b"ef"], 4)
    variables = [Var("other", "f4", ("x",), np.arange(3, dtype="f4")),
                 Var("flag", "S1", ("x",), flags, fill=b"\x00"),
                 Var("name", "S1", ("x", "len"), names, fill=b"\x00")]
    path = tmp_path / "f.nc"
    kw = write_nc(path, flavour, {"x": 3, "len": 4}, variables)
    with xr.open_dataset(path, decode_cf=decode_cf, **kw) as ds:
        if decode_cf:  # what the test is about: xarray masks those cells
            assert ds["flag"].values[1] != ds["flag"].values[1]
            assert ds["name"].values[1] != ds["name"].values[1]
    roundtrip(path, tmp_path / "store", decode_cf=decode_cf, **kw)


def test_variable_length_strings_come_back_as_xarray_gives_them(tmp_path):
    names = np.array(["ÿ-umlaut", "", "a much longer name", "日本"], dtype=object)
    variables = [Var("name", "str", ("n",), names, {"comment": "vlen"}),
                 Var("scalar_name", "str", (), np.array("only one", dtype=object))]
    path = tmp_path / "f.nc"
    write_nc(path, "netcdf4", {"n": 4}, variables)
    roundtrip(path, tmp_path / "store")


@pytest.mark.parametrize("flavour", ["netcdf4", "netcdf3"])
def test_char_arrays_with_an_encoding_attribute_come_back_as_str_objects(tmp_path, flavour):
    text = ["Zürich", "Ørsted", ""]
    encoded = [t.encode("utf-8") for t in text]
    variables = [Var("site", "S1", ("n", "len"), chars(encoded, 8), {"_Encoding": "utf-8"})]
    path = tmp_path / "f.nc"
    kw = write_nc(path, flavour, {"n": 3, "len": 8}, variables)
    with xr.open_dataset(path, **kw) as ds:
        assert ds["site"].dtype == object and ds["site"].values.tolist() == text
    roundtrip(path, tmp_path / "store", **kw)


def test_in_memory_strings_keep_object_unicode_and_bytes_dtypes(tmp_path):
    ds = xr.Dataset({
        "obj": ("x", np.array(["a", "bb", "ccc "], dtype=object)),
        "uni": ("x", np.array(["a", "bb", " c"], dtype="<U7")),
        "byt": ("x", np.array([b"a", b"\xffb", b"c "], dtype="S5")),
        "objbytes": ("x", np.array([b"a", b"\xff", b""], dtype=object)),
        "scalar": ((), np.array("x", dtype="<U3")),
    })
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    store.flush()
    back = atlas.Atlas.open(tmp_path / "store").to_xarray("d")
    assert_faithful(back, ds)
    assert [type(v) for v in back["objbytes"].values] == [bytes] * 3


def test_drifting_string_widths_stack_at_the_widest_width(tmp_path):
    store = atlas.Atlas.create(tmp_path / "store")
    names = {"a": [b"AB", b"C"], "b": [b"LONGER NAME", b"D"], "c": [b"\xff", b"E"]}
    expected = {}
    for name, values in names.items():
        path = tmp_path / f"{name}.nc"
        station_file(path, "netcdf4", values, max(len(v) for v in values))
        with xr.open_dataset(path) as ds:
            store.add_xr_dataset(ds, name)
            expected[name] = ds["station_name"].values
    stacked = store.to_xarray_many(["a", "b"])["station_name"]
    assert stacked.dtype == np.dtype("S11")
    assert stacked.values.tolist() == [list(expected["a"]), list(expected["b"])]
    with pytest.raises(ValueError, match="'c'"):  # Latin-1 bytes stored differently
        store.to_xarray_many(["a", "b", "c"])


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("decode_cf", [True, False])
def test_char_arrays_with_a_byte_fill_value_round_trip(tmp_path, flavour, decode_cf):
    names = [b"AB", b"xxxx", b"C"]  # the second is all fill: masked when decoded
    variables = [Var("code", "S1", ("n", "len"), chars(names, 4), fill=b"x")]
    path = tmp_path / "f.nc"
    kw = write_nc(path, flavour, {"n": 3, "len": 4}, variables)
    roundtrip(path, tmp_path / "store", decode_cf=decode_cf, **kw)
