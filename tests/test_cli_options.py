"""``atlas ingest --no-decode-times / --drop-variables``, xarray's warnings in the
``atlas: warning:`` form, cftime dates shown as dates, and object stores configured through
environment variables (with a one-line error when credentials are missing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr
from _s3 import moto_s3  # noqa: F401  (fixture)

import atlas
from atlas.cli import main


def write_noleap(path: Path, start_year: int = 400) -> Path:
    """Monthly noleap times (as CESM writes them), a field along them, and a second variable
    whose fill values disagree (xarray warns about those when it decodes the file)."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 4)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = f"days since {start_year:04d}-01-01"
        t.calendar = "noleap"
        t[:] = [0.0, 31.0, 59.0, 90.0]
        v = nc.createVariable("temp", "f4", ("time",))
        v.units = "K"
        v[:] = [280.0, 281.0, 282.0, 283.0]
        q = nc.createVariable("flag", "i2", ("time",), fill_value=np.int16(-999))
        q.missing_value = np.int16(-1)
        q[:] = [1, 2, -1, 3]
        extra = nc.createVariable("extra", "f4", ("time",))
        extra[:] = np.arange(4)
    return path


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    write_noleap(folder / "y0400.nc", 400)
    write_noleap(folder / "y0500.nc", 500)
    return folder


def test_no_decode_times_keeps_the_numbers_and_drop_variables_leaves_some_out(src, tmp_path,
                                                                             capsys):
    store_path = tmp_path / "store"
    assert main(["ingest", str(src), str(store_path), "-q", "--no-decode-times",
                 "--drop-variables", "extra,nothing"]) == 0
    err = capsys.readouterr().err
    assert "atlas: warning: --drop-variables names 'nothing'" in err
    ds = atlas.Atlas.open(store_path).to_xarray("y0500")
    expected = xr.open_dataset(src / "y0500.nc", decode_times=False,
                               drop_variables=["extra", "nothing"])
    xr.testing.assert_identical(ds, expected)
    assert ds["time"].dtype == np.float64 and ds["time"].attrs["calendar"] == "noleap"
    assert main(["ingest", str(src), str(store_path), "--drop-variables", "a,,b"]) == 1
    assert "expected comma-separated variable names, got 'a,,b'" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_xarrays_warnings_come_out_as_atlas_warning_lines(src, tmp_path, jobs):
    proc = subprocess.run([sys.executable, "-m", "atlas", "ingest", str(src), str(tmp_path / "s"),
                           "-q", "-j", jobs], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(line.startswith("atlas: warning: ") for line in lines), lines
    for name in ("y0400.nc", "y0500.nc"):  # one per file, naming it and the variable
        assert sum(str(src / name) in line and "'flag'" in line and "fill values" in line
                   for line in lines) == 1, lines


def test_cftime_dates_are_shown_as_dates(src, tmp_path, capsys):
    store_path = tmp_path / "store"
    assert main(["ingest", str(src), str(store_path), "-q"]) == 0
    capsys.readouterr()
    assert main(["show", str(store_path), "y0500"]) == 0
    shown = capsys.readouterr().out
    assert "dates in calendar noleap" in shown
    assert "min 0500-01-01T00:00:00, max 0500-04-01T00:00:00" in shown
    assert main(["info", str(store_path), "--json"]) == 0
    import json

    info = json.loads(capsys.readouterr().out)["arrays"]["time"]
    assert (info["min"], info["max"], info["calendar"]) == (
        "0400-01-01T00:00:00", "0500-04-01T00:00:00", "noleap")
    assert main(["info", str(store_path)]) == 0
    assert "0400-01-01T00:00:00" in capsys.readouterr().out
    png = tmp_path / "temp.png"
    assert main(["plot", str(store_path), "y0400", "temp", "-o", str(png)]) == 0
    assert png.stat().st_size > 0
    assert main(["plot", str(store_path), "y0400", "time"]) == 1
    assert "holds dates (calendar noleap)" in capsys.readouterr().err


def test_the_time_axis_of_a_plot_is_labelled_with_dates(src, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from atlas.cli import _export

    store_path = tmp_path / "store"
    assert main(["ingest", str(src), str(store_path), "-q"]) == 0
    view = atlas.Atlas.open(store_path).open_dataset("y0400")
    fig, ax = plt.subplots()
    _export._date_axis(view, "time", ax.xaxis)
    x = view.read_array("time")
    label = ax.xaxis.get_major_formatter()(x[1], 0)
    plt.close(fig)
    assert label == "0400-02-01T00:00:00"


def _env(**aws) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **aws}


def test_object_stores_take_their_settings_from_environment_variables(moto_s3, src):
    url = f"s3://atlas-test/{moto_s3.new_prefix()}"
    with atlas.Atlas.create(url, **moto_s3.options()) as store:
        store.create_dataset("a")
    server = {"AWS_ENDPOINT": moto_s3.endpoint, "AWS_ALLOW_HTTP": "true",
              "AWS_REGION": "us-east-1", "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false"}
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.run([sys.executable, "-m", "atlas", "ls", url], env=_env(**server, **keys),
                          capture_output=True, text=True, timeout=300)
    assert (proc.returncode, proc.stdout) == (0, "a\n"), proc.stderr
    for command in (["ls", url], ["ingest", str(src), url + "-new"]):
        proc = subprocess.run([sys.executable, "-m", "atlas", *command], env=_env(**server),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1
        assert proc.stderr.splitlines() == [
            f"atlas: no credentials for {command[-1]}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (with AWS_REGION; for an S3-compatible server also "
            "AWS_ENDPOINT, and AWS_ALLOW_HTTP=true for http://), or AWS_SKIP_SIGNATURE=true "
            "for a public bucket (see docs/cli.md)"]
