"""The ``atlas`` commands other than ingest (ls, show, info, rm, compact, verify, export, plot)
run as ``python -m atlas`` against stores ingested from netCDF files written by netCDF4; results
are checked against netCDF4 reads of the same files and against the files on disk."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pytest

import atlas
from atlas.cli import main
from atlas.cli._common import jsonable
from atlas.cli._progress import Progress, human_bytes

DAYS = 3
NT, NLAT, NLON = 2, 5, 7  # rank-3 "sst" with two time steps, so plots take the first slice


def write_file(path: Path, day: int) -> Path:
    rng = np.random.default_rng(day)
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", NT)
        nc.createDimension("lat", NLAT)
        nc.createDimension("lon", NLON)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "hours since 2024-01-01"
        t[:] = [24 * day, 24 * day + 12]
        lat = nc.createVariable("lat", "f4", ("lat",))
        lat.units = "degrees_north"
        lat[:] = np.linspace(-60, 60, NLAT)
        lon = nc.createVariable("lon", "f4", ("lon",))
        lon[:] = np.linspace(0, 300, NLON)
        sst = nc.createVariable("sst", "f4", ("time", "lat", "lon"),
                                fill_value=np.float32(np.nan))
        sst.units = "K"
        sst.long_name = "sea surface temperature"
        values = rng.normal(290, 4, (NT, NLAT, NLON)).astype(np.float32)
        values[:, 0, :3] = np.nan  # "land"
        sst.set_auto_mask(False)
        sst[:] = values
        count = nc.createVariable("count", "i2", ("lat",))
        count[:] = rng.integers(0, 100, NLAT)
        nc.title = f"file {day}"
        nc.day = np.int32(day)
    return path


def nc_values(path: Path, var: str) -> np.ndarray:
    with netCDF4.Dataset(path) as nc:
        v = nc[var]
        v.set_auto_mask(False)
        return v[:]


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atlas", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=300)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("atlas: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> tuple[Path, list[Path]]:
    """A store ingested (in-process, once) from DAYS netCDF files."""
    root = tmp_path_factory.mktemp("cli")
    src = root / "src"
    src.mkdir()
    files = [write_file(src / f"f{day}.nc", day) for day in range(DAYS)]
    assert main(["ingest", str(src), str(root / "store"), "-q"]) == 0
    return root / "store", files


@pytest.fixture
def store_copy(collection, tmp_path) -> Path:
    """A private copy of the collection's store for commands that change it."""
    dst = tmp_path / "store"
    shutil.copytree(collection[0], dst)
    return dst


def segment_files(store: Path) -> list[Path]:
    return sorted(p for p in (store / "segments").rglob("*") if p.is_file())


# -- ls / show / info ---------------------------------------------------------------------------

def test_ls_lists_the_datasets_in_ingest_order(collection):
    store, files = collection
    assert ok(run("ls", store)).splitlines() == [f.stem for f in files]
    assert json.loads(ok(run("ls", store, "--json"))) == [f.stem for f in files]


def test_ls_long_lists_each_datasets_arrays(collection, capsys):
    store, files = collection
    assert main(["ls", str(store), "-l", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert set(listing) == {f.stem for f in files}
    assert sorted(listing["f0"]) == ["count", "lat", "lon", "sst", "time"]


def test_show_prints_dimensions_variables_attributes_and_stats(collection):
    store, files = collection
    text = ok(run("show", store, "f1"))
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "dataset f1 {" and lines[-1] == "}"
    assert f"lat = {NLAT} ;" in lines and f"time = {NT} ;" in lines
    assert "float32 sst(time, lat, lon) ;" in lines
    assert "int16 count(lat) ;" in lines
    assert 'sst:units = "K" ;' in lines
    assert ':title = "file 1" ;' in lines and ":day = 1 ;" in lines
    sst = nc_values(files[1], "sst")
    stats_line = lines[lines.index('sst:long_name = "sea surface temperature" ;') + 1]
    assert stats_line.startswith("// stats:")
    assert f"cells {sst.size}, nulls {int(np.isnan(sst).sum())}" in stats_line
    assert "_pyatlas" not in text  # the xarray layer's bookkeeping stays out of the listing


def test_show_json_matches_the_netcdf_file(collection, capsys):
    store, files = collection
    assert main(["show", str(store), "f2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    sst = nc_values(files[2], "sst")
    var = info["variables"]["sst"]
    assert var["shape"] == list(sst.shape) and var["dims"] == ["time", "lat", "lon"]
    assert var["dtype"] == "float32" and var["fill_value"] == "NaN"
    assert var["stats"]["min"] == pytest.approx(float(np.nanmin(sst)))
    assert var["stats"]["max"] == pytest.approx(float(np.nanmax(sst)))
    assert info["dimensions"] == {"time": NT, "lat": NLAT, "lon": NLON}
    assert info["variables"]["count"]["stats"]["max"] == int(nc_values(files[2], "count").max())
    assert info["attributes"]["title"] == "file 2"


def test_info_counts_the_bytes_on_disk_and_merges_stats_over_the_collection(collection):
    store, files = collection
    info = json.loads(ok(run("info", store, "--json")))
    assert info["disk"]["bytes_on_disk"] == on_disk(store)
    assert info["disk"]["segments"] == len(segment_files(store))
    assert info["datasets"] == DAYS
    sst = np.stack([nc_values(f, "sst") for f in files])
    merged = info["arrays"]["sst"]
    assert merged["datasets"] == DAYS and merged["cells"] == sst.size
    assert merged["nulls"] == int(np.isnan(sst).sum())
    assert merged["min"] == pytest.approx(float(np.nanmin(sst)))
    assert merged["max"] == pytest.approx(float(np.nanmax(sst)))
    counts = np.stack([nc_values(f, "count") for f in files])
    assert (info["arrays"]["count"]["min"], info["arrays"]["count"]["max"]) == (
        int(counts.min()), int(counts.max()))
    assert info["arrays"]["time"]["min"] == "2024-01-01"

    text = ok(run("info", store))
    assert f"datasets    {DAYS}" in text and f"({on_disk(store)} bytes)" in text
    sst_row = next(line for line in text.splitlines() if line.startswith("sst "))
    assert f"{NT}x{NLAT}x{NLON}" in sst_row and str(int(np.isnan(sst).sum())) in sst_row.split()
    handle = atlas.Atlas.open(store, read_only=True)
    assert info["disk"]["problems"] == []
    assert info["disk"]["per_array"]["sst"]["chunks"] == sum(
        handle._files.segment(ref).rows for ref in handle._root.segments["sst"])


def test_info_on_a_damaged_segment_tells_the_rest_and_exits_1(store_copy):
    seg = max(segment_files(store_copy), key=lambda p: p.stat().st_size)
    data = bytearray(seg.read_bytes())
    data[-10] ^= 0xFF  # the trailer: the file's index cannot be found
    seg.write_bytes(bytes(data))
    proc = run("info", store_copy)
    assert proc.returncode == 1
    assert "datasets    3" in proc.stdout and "sst " in proc.stdout
    assert seg.name in proc.stderr and "atlas verify" in proc.stderr.splitlines()[-1]
    info = json.loads(run("info", store_copy, "--json").stdout)
    damaged = [a for a, entry in info["disk"]["per_array"].items() if entry["chunks"] is None]
    assert len(damaged) == 1 and len(info["disk"]["problems"]) == 1


# -- rm / compact / verify ----------------------------------------------------------------------

def data_files(store: Path) -> list[Path]:
    """Segments and catalog parts."""
    return segment_files(store) + sorted((store / "catalog").glob("*.cat"))


def on_disk(store: Path) -> int:
    """Data files, the root, and the version records and tags (every file of the store)."""
    records = [p for folder in ("versions", "tags") if (store / folder).is_dir()
               for p in (store / folder).iterdir()]
    return sum(p.stat().st_size for p in data_files(store) + records) + (
        store / "manifest.atlas").stat().st_size


def test_rm_deletes_the_named_datasets_and_compact_reclaims_their_space(store_copy, collection):
    _, files = collection
    before = data_files(store_copy)
    assert "removed 2 datasets" in ok(run("rm", store_copy, "f0", "f2"))
    assert atlas.Atlas.open(store_copy).list_datasets() == ["f1"]
    # deleting writes a small catalog part; the data stays until a compact
    assert set(before) < set(data_files(store_copy))
    before = data_files(store_copy)

    # a compact keeps the replaced files for readers of the previous version (grace period)...
    result = json.loads(ok(run("compact", store_copy, "--json")))
    assert result["after"]["retired"] == len(before)
    assert result["after"]["bytes_on_disk"] == on_disk(store_copy)
    assert "retired" in ok(run("info", store_copy))
    # ...and one with --grace 0 deletes them
    result = json.loads(ok(run("compact", store_copy, "--grace", "0", "--json")))
    assert result["after"]["retired"] == 0
    assert result["after"]["bytes_on_disk"] == on_disk(store_copy)
    assert result["after"]["bytes_on_disk"] < json.loads(ok(run("info", str(
        collection[0]), "--json")))["disk"]["bytes_on_disk"]
    assert not set(before) & set(data_files(store_copy))
    view = atlas.Atlas.open(store_copy).open_dataset("f1")
    np.testing.assert_array_equal(view.read_array("sst"), nc_values(files[1], "sst"))


def test_rm_of_a_missing_name_removes_nothing_unless_forced(store_copy):
    assert_one_line_error(run("rm", store_copy, "f0", "nope"), "'nope'", "nothing was removed")
    assert atlas.Atlas.open(store_copy).list_datasets() == ["f0", "f1", "f2"]
    assert json.loads(ok(run("rm", store_copy, "f0", "nope", "-f", "--json"))) == {
        "removed": ["f0"], "missing": ["nope"]}
    assert atlas.Atlas.open(store_copy).list_datasets() == ["f1", "f2"]


def test_verify_passes_a_sound_store(collection):
    store, _ = collection
    report = json.loads(ok(run("verify", store, "--json")))
    assert report["ok"] and report["problems"] == [] and report["orphans"] == []
    assert report["segments"] == len(segment_files(store))
    assert report["chunks"] > 0
    assert ok(run("verify", store)).splitlines()[-1] == "ok"


def test_verify_finds_a_flipped_byte_and_exits_1(store_copy):
    seg = max(segment_files(store_copy), key=lambda p: p.stat().st_size)
    data = bytearray(seg.read_bytes())
    data[len(data) // 4] ^= 0xFF  # inside the chunk records, before the index footer
    seg.write_bytes(bytes(data))
    proc = run("verify", store_copy)
    assert_one_line_error(proc, "verify found 1 problem")
    assert "problems: 1" in proc.stdout and seg.name in proc.stdout


def test_verify_lists_orphans_and_repair_removes_them(store_copy):
    key = "segments/00000099-" + "c" * 32 + ".seg"
    orphan = store_copy / key
    orphan.write_bytes(b"partial")
    report = json.loads(ok(run("verify", store_copy, "--json")))
    assert report["ok"] and report["orphans"] == [key]
    assert orphan.exists()
    report = json.loads(ok(run("verify", store_copy, "--repair", "--json")))
    assert report["removed"] == [key]
    assert not orphan.exists()
    assert atlas.Atlas.open(store_copy).list_datasets() == ["f0", "f1", "f2"]


# -- export / plot ------------------------------------------------------------------------------

def test_export_writes_a_netcdf_file_equal_to_the_source(collection, tmp_path):
    store, files = collection
    out = tmp_path / "f1.nc"
    assert str(out) in ok(run("export", store, "f1", out))
    for var in ("sst", "lat", "lon", "count"):
        np.testing.assert_array_equal(nc_values(out, var), nc_values(files[1], var))
    with netCDF4.Dataset(out) as back, netCDF4.Dataset(files[1]) as src:
        assert back["sst"].units == "K" and back.title == src.title
        assert np.isnan(back["sst"]._FillValue)
        # the same instants, whatever reference date the encoder picked
        dates = [netCDF4.num2date(nc["time"][:], nc["time"].units) for nc in (back, src)]
        assert list(dates[0]) == list(dates[1])

    assert_one_line_error(run("export", store, "f1", out), "already exists", "--force")
    assert_one_line_error(run("export", store, "f1", tmp_path / "no" / "x.nc"),
                          "does not exist")
    # readable as any file the user makes (the temporary file's 0600 stayed)
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_export_of_what_netcdf_cannot_hold_is_one_line_and_writes_nothing(tmp_path):
    with atlas.Atlas.create(tmp_path / "s") as store:
        view = store.create_dataset("a")
        view.set_attribute("d", {"k": 1})
        view.define_array("v", "float32", ["x"], [2])
    out = tmp_path / "a.nc"
    assert_one_line_error(run("export", tmp_path / "s", "a", out),
                          "cannot export dataset 'a' to netCDF", "attr 'd'")
    assert list(tmp_path.iterdir()) == [tmp_path / "s"]  # no OUT, no temporary file


def test_plot_writes_a_map_of_the_first_slice_and_a_line_plot(collection, tmp_path, capsys):
    from matplotlib import image

    store, _ = collection
    png = tmp_path / "map.png"
    proc = run("plot", store, "f0", "sst", "-o", png, "--json")
    result = json.loads(ok(proc))
    assert result["index"] == [0] and result["path"] == str(png)
    pixels = image.imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels[..., :3].std() > 0.05

    line = tmp_path / "line.png"
    assert main(["plot", str(store), "f0", "count", "-o", str(line)]) == 0
    assert image.imread(line).shape[0] > 100
    # no suffix: the file written and the one named are OUT.png (it named OUT)
    bare = json.loads(ok(run("plot", store, "f0", "count", "-o", tmp_path / "bare", "--json")))
    assert bare["path"] == str(tmp_path / "bare.png") and (tmp_path / "bare.png").exists()
    assert main(["plot", str(store), "f0", "sst", "--index", "1", "-o", str(png)]) == 0
    capsys.readouterr()
    assert main(["plot", str(store), "f0", "sst", "--index", str(NT), "-o", str(png)]) == 1
    assert "outside 0..1 on axis 0 (time)" in capsys.readouterr().err
    assert main(["plot", str(store), "f0", "nope", "-o", str(png)]) == 1
    assert "has no array 'nope'" in capsys.readouterr().err


def test_plot_without_coordinates_and_show_with_conflicting_dimensions(tmp_path, capsys):
    from matplotlib import image

    with atlas.Atlas.create(tmp_path / "s") as store:
        view = store.create_dataset("d")
        view.define_array("grid", "int32", ["y", "x"], [4, 6], fill_value=-1)
        view.write_array("grid", [0, 0], np.arange(18, dtype=np.int32).reshape(3, 6))
        view.define_array("edge", "float64", ["x"], [7])
    png = tmp_path / "grid.png"
    assert main(["plot", str(tmp_path / "s"), "d", "grid", "-o", str(png)]) == 0
    assert image.imread(png)[..., :3].std() > 0.05
    assert capsys.readouterr().out == f"wrote {png}\n"
    assert main(["show", str(tmp_path / "s"), "d", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dimension_conflicts"] == {"x": [6, 7]}
    assert info["variables"]["grid"]["stats"] == {"row_count": 24, "null_count": 6, "min": 0,
                                                  "max": 17}
    assert main(["show", str(tmp_path / "s"), "d"]) == 0
    assert "x = 6 ; // also 7 in other arrays" in capsys.readouterr().out


def test_plot_of_values_matplotlib_cannot_lay_out_or_of_a_gappy_coordinate(tmp_path, capsys):
    """Values spanning +-1.7e308 failed with matplotlib's 'arange: cannot compute length',
    a coordinate with a cell at its fill with 'non-finite values' from pcolormesh."""
    from matplotlib import image

    with atlas.Atlas.create(tmp_path / "s") as store:
        view = store.create_dataset("d")
        view.define_array("huge", "float64", ["t"], [3])
        view.write_array("huge", [0], np.array([-1.7e308, 0.0, 1.7e308]))
        view.define_array("lat", "float32", ["lat"], [3], fill_value=-999.0)
        view.write_array("lat", [0], np.array([0.0, -999.0, 2.0], np.float32))
        view.define_array("lon", "float32", ["lon"], [4])
        view.write_array("lon", [0], np.arange(4, dtype=np.float32))
        view.define_array("v", "float32", ["lat", "lon"], [3, 4])
        view.write_array("v", [0, 0], np.arange(12, dtype=np.float32).reshape(3, 4))
    assert main(["plot", str(tmp_path / "s"), "d", "huge", "-o", str(tmp_path / "h.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("atlas: cannot plot 'huge' (values -1.7e+308 .. 1.7e+308)")
    assert len(err.splitlines()) == 1
    png = tmp_path / "v.png"
    assert main(["plot", str(tmp_path / "s"), "d", "v", "-o", str(png)]) == 0
    assert image.imread(png)[..., :3].std() > 0.05
    # a coordinate no axis lays out: plotted against the index
    with atlas.Atlas.open(tmp_path / "s") as store:
        view = store.open_dataset("d")
        view.define_array("t", "float64", ["t"], [3])
        view.write_array("t", [0], np.array([-1.7e308, 0.0, 1.7e308]))
        view.define_array("w", "float32", ["t"], [3])
        view.write_array("w", [0], np.array([1, 3, 2], np.float32))
    assert main(["plot", str(tmp_path / "s"), "d", "w", "-o", str(png)]) == 0


# -- errors, --json, --log-file, --debug --------------------------------------------------------

def test_errors_are_one_line_with_exit_1(collection, tmp_path):
    store, _ = collection
    assert_one_line_error(run("ls", tmp_path / "missing"), "no atlas store")
    assert_one_line_error(run("show", store, "nope"), "no dataset 'nope'")
    assert_one_line_error(run("frobnicate", store), "invalid choice")
    assert_one_line_error(run("show", store), "required: NAME")
    # an unknown option of a command points to that command's help (it said 'atlas --help')
    assert_one_line_error(run("ls", store, "--bogus"), "unrecognized arguments: --bogus",
                          "(see 'atlas ls --help')")
    assert_one_line_error(run("ls", store, "--log-file", tmp_path / "no" / "dir" / "x.log"),
                          "cannot open log file")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "manifest.atlas").write_bytes(b"ATLMAN01" + b"\0" * 40)
    assert_one_line_error(run("info", tmp_path / "garbage"), "manifest")


def test_an_interrupt_says_so_and_exits_130(collection, capsys, monkeypatch):
    """A Ctrl-C arrives as a KeyboardInterrupt without a message: the line still says what
    happened (it was "atlas: " alone)."""
    store, _ = collection

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(atlas.Atlas, "open", interrupted)
    assert main(["ls", str(store)]) == 130
    assert capsys.readouterr().err == "atlas: interrupted\n"


def test_a_library_warning_is_one_line_of_ours(collection, capsys, monkeypatch):
    import warnings

    store, _ = collection
    real = atlas.Atlas.open

    def warning_open(*args, **kwargs):
        warnings.warn("s3://b/p: cannot list incomplete multipart uploads\n(no route)",
                      RuntimeWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(atlas.Atlas, "open", warning_open)
    assert main(["ls", str(store)]) == 0
    assert capsys.readouterr().err == ("atlas: warning: s3://b/p: cannot list incomplete "
                                       "multipart uploads (no route)\n")


def test_debug_adds_the_traceback(tmp_path):
    proc = run("ls", tmp_path / "missing", "--debug")
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("atlas: no atlas store")


def test_json_goes_to_stdout_for_every_command_that_prints_data(store_copy, tmp_path, capsys):
    commands = [["ls"], ["ls", "-l"], ["show", "f0"], ["info"], ["verify"], ["compact"],
                ["export", "f0", str(tmp_path / "x.nc")],
                ["plot", "f0", "lat", "-o", str(tmp_path / "x.png")], ["rm", "f0"]]
    for command in commands:
        assert main([command[0], str(store_copy), *command[1:], "--json"]) == 0, command
        captured = capsys.readouterr()
        json.loads(captured.out)  # strict JSON: NaN and timestamps are spelled as strings
        assert captured.err == ""
    assert main(["--json", "ls", str(store_copy)]) == 0  # before the command name works too
    assert json.loads(capsys.readouterr().out) == ["f1", "f2"]
    assert main(["create", str(tmp_path / "new"), "--codec", "none", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["codec"] == "none"
    assert atlas.Atlas.open(tmp_path / "new").codec == "none"
    for extra, shuffle, version in (([], True, 6), (["--no-shuffle"], False, 2)):
        where = tmp_path / f"new{shuffle}"
        assert main(["create", str(where), *extra, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {
            "store": str(where), "codec": "zstd", "shuffle": shuffle, "format": version}
        assert atlas.Atlas.open(where).shuffle is shuffle


def test_create_refuses_a_file_and_a_folder_holding_other_things(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.txt").write_text("mine")
    for where, what in (("file", "is a file; a store is a folder"),
                        ("folder", "is a folder that is not an atlas store and not empty")):
        assert main(["create", str(tmp_path / where)]) == 1
        err = capsys.readouterr().err
        assert what in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["notes.txt"]
    assert (tmp_path / "file").read_text() == "mine"
    (tmp_path / "empty").mkdir()  # an empty folder takes a store, as Atlas.create does
    assert main(["create", str(tmp_path / "empty")]) == 0


def test_log_file_records_the_command_and_the_error(tmp_path, capsys):
    log = tmp_path / "atlas.log"
    assert main(["ls", str(tmp_path / "missing"), "--log-file", str(log)]) == 1
    text = log.read_text()
    assert f"atlas ls {tmp_path / 'missing'}" in text
    assert "ERROR no atlas store" in text and "Traceback" in text  # the log keeps the details
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_help_and_version_exit_0(capsys):
    assert main(["--help"]) == 0
    assert "ingest" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"atlas {atlas.__version__}"


# -- the progress bar and the JSON encoder ------------------------------------------------------

class FakeTerminal(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_redraws_in_place_on_a_terminal_with_rates():
    now = [100.0]
    stream = FakeTerminal(tty=True)
    bar = Progress(4, stream=stream, min_interval=0.0, clock=lambda: now[0])
    now[0] += 1.0
    bar.advance(1, 2_000_000)
    assert stream.getvalue() == ("\r[######------------------] 1/4 files  25% | 1.0 files/s | "
                                 "2.0 MB/s | ETA 0:03\x1b[K")
    bar.note("atlas: warning: something")
    now[0] += 1.0
    bar.advance(3, 6_000_000)
    bar.close()
    text = stream.getvalue()
    assert "atlas: warning: something\n" in text
    assert text.endswith("\r[########################] 4/4 files 100% | 2.0 files/s | "
                         "4.0 MB/s\x1b[K\n")
    assert bar.rates() == (2.0, 4.0)


def test_progress_on_a_pipe_writes_plain_lines_and_nothing_when_disabled():
    now = [0.0]
    pipe = FakeTerminal(tty=False)
    bar = Progress(3, stream=pipe, line_interval=10.0, clock=lambda: now[0])
    now[0] = 4.0
    bar.advance(1, 10)  # too early for a line
    now[0] = 11.0
    bar.advance(1, 10)
    now[0] = 30.0
    bar.advance(1, 10)  # the last one is left to the caller's summary
    bar.close()
    assert pipe.getvalue().splitlines() == [
        "[################--------] 2/3 files  67% | 0.2 files/s | 0.0 MB/s | ETA 0:06"]
    quiet = FakeTerminal(tty=True)
    bar = Progress(3, stream=quiet, enabled=False)
    bar.advance(3, 10)
    bar.close()
    assert quiet.getvalue() == ""


def test_human_bytes_and_strict_json():
    assert [human_bytes(n) for n in (999, 1000, 51_657_914, 2.5e9)] == [
        "999 B", "1.0 kB", "51.7 MB", "2.5 GB"]
    value = {"a": np.float32("nan"), "b": [np.int16(3), float("inf")],
             "t": np.datetime64("2024-01-02T00:00", "ns"), "s": b"x", "raw": b"\x00\xff"}
    assert json.loads(json.dumps(jsonable(value), allow_nan=False)) == {
        "a": "NaN", "b": [3, "Infinity"], "t": "2024-01-02", "s": "x",
        "raw": "b'\\x00\\xff'"}  # not UTF-8: the literal (the 0xff was replaced)


def test_the_console_script_runs_the_same_main():
    script = Path(sys.executable).with_name("atlas")  # installed by pip from pyproject.toml
    proc = subprocess.run([str(script), "--version"], check=False, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == f"atlas {atlas.__version__}"
