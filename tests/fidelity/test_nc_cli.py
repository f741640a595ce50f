"""The same files through the command line: ``python -m atlas ingest SRC STORE`` gives back
every file as ``xr.open_dataset`` reads it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import xarray as xr
from fidelity_helpers import Var, assert_faithful, write_nc
from test_nc_attributes import attributes_file
from test_nc_calendars import calendar_file
from test_nc_drifting import DRIFT, drifting_file
from test_nc_packing import packed_file
from test_nc_strings import LATIN1, station_file
from test_nc_wide import wide_file

import atlas


def feature_files(folder):
    """One file per feature, in the three flavours where a feature has a format-specific
    side; returns the file paths."""
    makers = {
        "cal_noleap_nc4": lambda p: calendar_file(p, "netcdf4", "noleap"),
        "cal_360_nc3": lambda p: calendar_file(p, "netcdf3", "360_day"),
        "cal_julian_scipy": lambda p: calendar_file(p, "scipy", "julian"),
        "cal_year0": lambda p: calendar_file(p, "netcdf4", "proleptic_gregorian",
                                             "days since 0000-01-01", -40.0),
        "strings_nc4": lambda p: station_file(p, "netcdf4"),
        "strings_latin1_scipy": lambda p: station_file(p, "scipy", LATIN1, 12),
        "packed_nc4": lambda p: packed_file(p, "netcdf4"),
        "packed_nc3": lambda p: packed_file(p, "netcdf3"),
        "packed_scipy": lambda p: packed_file(p, "scipy"),
        "attrs_nc4": lambda p: attributes_file(p, "netcdf4"),
        "attrs_nc3": lambda p: attributes_file(p, "netcdf3"),
        "wide_nc4": lambda p: wide_file(p, "netcdf4"),
        **{f"drift_{name}": (lambda p, n=name: drifting_file(p, "netcdf4", n))
           for name in DRIFT},
        "vlen": lambda p: write_nc(p, "netcdf4", {"n": 2},
                                   [Var("name", "str", ("n",),
                                        np.array(["ÿ", "long name"], dtype=object))]),
    }
    paths = []
    for stem, make in makers.items():
        path = folder / f"{stem}.nc"
        make(path)
        paths.append(path)
    return paths


def test_atlas_ingest_gives_back_every_feature_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    paths = feature_files(src)
    store_path = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "atlas", "ingest", str(src), str(store_path),
                           "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    store = atlas.Atlas.open(store_path)
    assert sorted(store.list_datasets()) == sorted(p.stem for p in paths)
    for path in paths:
        with xr.open_dataset(path) as expected:
            assert_faithful(store.to_xarray(path.stem), expected)
    # the drifting files stack where they fit
    temp = store.read_array_across_stacked("temp", ["drift_a", "drift_b"])
    assert temp.shape == (2, DRIFT["a"][0])
