"""``atlas ingest`` run as a command (``python -m atlas``) on netCDF files written by netCDF4,
checked against what netCDF4 reads back from the same files."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import netCDF4
import numpy as np
import pytest

import atlas
from atlas.cli import main

NLAT, NLON = 6, 8


def write_day(path: Path, day: int, seed: int | None = None) -> Path:
    """A small daily field like the demo's: sst(time=1, lat, lon) float32, NaN land, CF."""
    rng = np.random.default_rng(day if seed is None else seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 1)
        nc.createDimension("lat", NLAT)
        nc.createDimension("lon", NLON)
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "days since 2024-01-01"
        t.calendar = "standard"
        t[:] = [day]
        lat = nc.createVariable("lat", "f4", ("lat",))
        lat.units = "degrees_north"
        lat[:] = np.linspace(-75, 75, NLAT)
        lon = nc.createVariable("lon", "f4", ("lon",))
        lon.units = "degrees_east"
        lon[:] = np.linspace(-157.5, 157.5, NLON)
        sst = nc.createVariable("sst", "f4", ("time", "lat", "lon"),
                                fill_value=np.float32(np.nan))
        sst.units = "K"
        sst.long_name = "sea surface temperature"
        values = rng.normal(290, 5, (1, NLAT, NLON)).astype(np.float32)
        values[0, rng.random((NLAT, NLON)) < 0.3] = np.nan
        sst.set_auto_mask(False)
        sst[:] = values
        nc.title = f"day {day}"
    return path


def write_unstorable_file(path: Path) -> Path:
    """A variable named with a leading '_', which atlas reserves for itself."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("x", 3)
        flag = nc.createVariable("_ice_flag", "i1", ("x",))
        flag[:] = [0, 1, 1]
    return path


def write_broken(path: Path) -> Path:
    path.write_bytes(b"CDF\x01 this is not really a netCDF file")
    return path


def nc_values(path: Path, var: str = "sst") -> np.ndarray:
    with netCDF4.Dataset(path) as nc:
        v = nc[var]
        v.set_auto_mask(False)
        return v[:]


def run(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atlas", *map(str, args)], check=False,
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("atlas: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Four daily files, one of them in a subfolder."""
    src = tmp_path / "src"
    for day in (0, 1, 2):
        write_day(src / f"day{day}.nc", day)
    write_day(src / "later" / "day3.nc", 3)
    return src


def test_ingest_makes_one_dataset_per_file_holding_the_files_values(folder, tmp_path):
    store_path = tmp_path / "store"
    proc = run("ingest", folder, store_path, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ingested"] == ["day0", "day1", "day2", "day3"]
    assert summary["created"] is True and summary["skipped"] == []
    files = sorted(folder.rglob("*.nc"))
    assert summary["bytes"] == sum(f.stat().st_size for f in files)

    store = atlas.Atlas.open(store_path)
    assert store.list_datasets() == ["day0", "day1", "day2", "day3"]
    for name, path in zip(store.list_datasets(), [folder / "day0.nc", folder / "day1.nc",
                                                  folder / "day2.nc", folder / "later/day3.nc"], strict=True):
        view = store.open_dataset(name)
        np.testing.assert_array_equal(view.read_array("sst"), nc_values(path))
        np.testing.assert_array_equal(view.read_array("lat"), nc_values(path, "lat"))
        assert view.array_attributes("sst")["units"] == "K"
        with netCDF4.Dataset(path) as nc:
            when = netCDF4.num2date(nc["time"][0], nc["time"].units)
        assert view.read_array("time")[0] == np.datetime64(dt.datetime(when.year, when.month,
                                                                       when.day), "ns")
        back = store.to_xarray(name)
        assert back.attrs["title"] == f"day {name[3:]}"


def test_no_recursive_leaves_subfolders_out_and_the_summary_goes_to_stdout(folder, tmp_path,
                                                                           capsys):
    assert main(["ingest", str(folder), str(tmp_path / "store"), "--no-recursive"]) == 0
    assert atlas.Atlas.open(tmp_path / "store").list_datasets() == ["day0", "day1", "day2"]
    out, err = capsys.readouterr()
    assert out.startswith("ingested 3 files") and "files/s" in out and "MB/s" in out
    assert err == ""  # a short run on a pipe draws no bar


def test_two_files_with_one_name_are_an_error_naming_both(folder, tmp_path):
    write_day(folder / "other" / "day1.nc", 7)
    proc = run("ingest", folder, tmp_path / "store")
    line = assert_one_line_error(proc, "day1")
    assert str(folder / "day1.nc") in line and str(folder / "other" / "day1.nc") in line
    assert not (tmp_path / "store").exists()


def test_a_broken_file_stops_the_ingest_and_nothing_is_kept(folder, tmp_path):
    write_broken(folder / "day1b.nc")
    proc = run("ingest", folder, tmp_path / "store")
    assert_one_line_error(proc, str(folder / "day1b.nc"), "nothing was written")
    assert not (tmp_path / "store").exists()  # the store it created, removed again


def test_an_unsupported_variable_stops_the_ingest_naming_file_and_variable(folder, tmp_path,
                                                                           capsys):
    write_unstorable_file(folder / "day1c.nc")
    assert main(["ingest", str(folder), str(tmp_path / "store")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"atlas: {folder / 'day1c.nc'}: ")
    assert "'_ice_flag'" in err and "reserved" in err
    assert not (tmp_path / "store").exists()


def test_a_failed_ingest_leaves_the_store_it_created_to_a_writer_using_it(folder, tmp_path,
                                                                           monkeypatch, capsys):
    """Another writer (a second ingest into the same new store) opened the store and holds
    pending files when this ingest fails: the store stays, and that writer's flush lands."""
    from atlas.cli import _ingest

    others = []

    def another_writer_then_a_failure(args, store, *rest):
        other = atlas.Atlas.open(args.store)
        view = other.create_dataset("theirs")
        view.define_array("x", "float32", ["i"], [3], [3])
        view.write_array("x", [0], np.arange(3, dtype=np.float32))  # a pending segment file
        others.append(other)
        raise RuntimeError("this ingest fails")

    monkeypatch.setattr(_ingest, "_ingest_into", another_writer_then_a_failure)
    assert main(["ingest", str(folder), str(tmp_path / "store")]) == 1
    assert "this ingest fails" in capsys.readouterr().err
    others[0].flush()
    store = atlas.Atlas.open(tmp_path / "store")
    assert store.list_datasets() == ["theirs"] and store.verify().ok


def test_two_ingests_into_one_new_store_both_land(folder, tmp_path, monkeypatch, capsys):
    """Another ingest creates the store between this one's look and its create (which then
    loses the race to commit the first root): this one ingests into that store. And a folder
    holding only what a store being created holds is not refused as a foreign folder."""
    real_create = atlas.Atlas.create

    def created_by_another_first(location, *args, **kwargs):
        real_create(location).close()  # the other ingest's first root lands first
        return real_create(location, *args, **kwargs)

    monkeypatch.setattr(atlas.Atlas, "create", created_by_another_first)
    assert main(["ingest", str(folder), str(tmp_path / "store"), "-q"]) == 0, \
        capsys.readouterr().err
    monkeypatch.undo()
    assert main(["ingest", str(folder), str(tmp_path / "plain"), "-q"]) == 0
    assert atlas.Atlas.open(tmp_path / "store").list_datasets() == atlas.Atlas.open(
        tmp_path / "plain").list_datasets()
    begun = tmp_path / "begun"  # another writer's create under way: a lock, a version record
    (begun / "versions").mkdir(parents=True)
    (begun / ".atlas.lock").touch()
    assert main(["ingest", str(folder), str(begun), "-q"]) == 0, capsys.readouterr().err
    foreign = tmp_path / "foreign"
    (foreign / "versions").mkdir(parents=True)
    (foreign / "notes.txt").touch()
    assert main(["ingest", str(folder), str(foreign), "-q"]) == 1
    assert "not an atlas store and not empty" in capsys.readouterr().err


def test_a_warning_about_a_file_name_holding_a_newline_stays_one_line(folder, tmp_path,
                                                                        capsys):
    write_day(folder / "odd\nday.nc", 9)  # its dataset name is refused: skipped, with a warning
    assert main(["ingest", str(folder), str(tmp_path / "store"), "--skip-errors", "-q"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line]
    assert warnings == [f"atlas: warning: skipped {folder}/odd\\nday.nc: invalid dataset name "
                        "'odd\\nday': it contains a control character"]


def test_a_skipped_invalid_name_is_listed_with_its_file_like_any_skipped_file(folder,
                                                                               tmp_path):
    write_day(folder / "_x.nc", 7)
    write_broken(folder / "day1b.nc")
    proc = run("ingest", folder, tmp_path / "store", "--skip-errors", "--json")
    assert proc.returncode == 0, proc.stderr
    errors = {s["dataset"]: s["error"] for s in json.loads(proc.stdout)["skipped"]}
    assert errors["_x"].startswith(f"{folder}/_x.nc: invalid dataset name '_x'")
    assert errors["day1b"].startswith(f"{folder}/day1b.nc: cannot read it")


def test_skip_errors_reports_what_was_skipped_and_ingests_the_rest(folder, tmp_path):
    write_broken(folder / "day1b.nc")
    write_unstorable_file(folder / "day1c.nc")
    proc = run("ingest", folder, tmp_path / "store", "--skip-errors", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert [s["dataset"] for s in summary["skipped"]] == ["day1b", "day1c"]
    assert "ice_flag" in summary["skipped"][1]["error"]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("atlas: warning")]
    assert len(warnings) == 2 and "day1b.nc" in warnings[0] and "day1c.nc" in warnings[1]
    store = atlas.Atlas.open(tmp_path / "store")
    assert store.list_datasets() == ["day0", "day1", "day2", "day3"]
    np.testing.assert_array_equal(store.open_dataset("day2").read_array("sst"),
                                  nc_values(folder / "day2.nc"))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_file_removed_after_the_listing_is_skipped_like_any_unreadable_file(
        folder, tmp_path, monkeypatch, capsys, jobs):
    """Another program removes a listed file before it is read: with --skip-errors it is
    skipped with a warning, without it the ingest stops saying what was kept (it raised the
    bare errno before, even with --skip-errors)."""
    from atlas.cli import _ingest

    real = _ingest.find_files

    def listed_then_removed(src, recursive):
        files = real(src, recursive)
        (folder / "day1.nc").unlink()
        return files

    monkeypatch.setattr(_ingest, "find_files", listed_then_removed)
    store_path = tmp_path / "store"
    assert main(["ingest", str(folder), str(store_path), "--skip-errors", "-q", "-j", jobs]) == 0
    # (with -j 2 a package another test imported may warn about the fork: not ours)
    assert ours(capsys.readouterr().err) == [
        f"atlas: warning: skipped {folder}/day1.nc: cannot read it as netCDF: No such file or "
        "directory"]
    assert atlas.Atlas.open(store_path).list_datasets() == ["day0", "day2", "day3"]
    write_day(folder / "day1.nc", 1)
    assert main(["ingest", str(folder), str(tmp_path / "other"), "--flush-every", "1", "-q",
                 "-j", jobs]) == 1
    assert ours(capsys.readouterr().err) == [
        f"atlas: {folder}/day1.nc: cannot read it as netCDF: No such file or directory; the 1 "
        "dataset flushed before was kept (rerun with --skip-existing to resume)"]


def ours(stderr: str) -> list[str]:
    """The lines of stderr about the files (warnings of other packages left out)."""
    return [line for line in stderr.splitlines() if "day" in line]


def test_a_link_to_nothing_is_an_unreadable_file_not_ignored(folder, tmp_path):
    (folder / "day4.nc").symlink_to(tmp_path / "unmounted" / "day4.nc")
    proc = run("ingest", folder, tmp_path / "store")
    assert_one_line_error(proc, f"{folder}/day4.nc: cannot read it as netCDF: No such file",
                          "nothing was written")
    proc = run("ingest", folder, tmp_path / "store", "--skip-errors", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [s["dataset"] for s in json.loads(proc.stdout)["skipped"]] == ["day4"]
    assert atlas.Atlas.open(tmp_path / "store").list_datasets() == ["day0", "day1", "day2",
                                                                     "day3"]


def test_flush_every_keeps_what_was_flushed_and_skip_existing_resumes(folder, tmp_path):
    store_path = tmp_path / "store"
    broken = write_broken(folder / "day2.nc")  # replaces day 2: the third file is damaged
    proc = run("ingest", folder, store_path, "--flush-every", "1")
    assert_one_line_error(proc, str(broken), "2 datasets flushed before were kept")
    assert atlas.Atlas.open(store_path).list_datasets() == ["day0", "day1"]

    write_day(broken, 2)  # the file is repaired
    assert_one_line_error(run("ingest", folder, store_path), "'day0'", "--skip-existing")
    proc = run("ingest", folder, store_path, "--skip-existing", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ingested"] == ["day2", "day3"]
    assert summary["existing"] == ["day0", "day1"]
    store = atlas.Atlas.open(store_path)
    assert store.list_datasets() == ["day0", "day1", "day2", "day3"]
    np.testing.assert_array_equal(store.open_dataset("day2").read_array("sst"),
                                  nc_values(broken))


def test_parallel_readers_give_the_same_store_as_one_reader(folder, tmp_path):
    for day in range(4, 9):
        write_day(folder / f"day{day}.nc", day)
    proc = run("ingest", folder, tmp_path / "store", "-j", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    # files go in sorted by their path under the source folder: later/day3.nc comes last
    paths = sorted(folder.rglob("*.nc"), key=lambda p: p.relative_to(folder).as_posix())
    names = [p.stem for p in paths]
    assert names[-1] == "day3"
    assert json.loads(proc.stdout)["ingested"] == names
    store = atlas.Atlas.open(tmp_path / "store")
    assert store.list_datasets() == names
    stacked = store.read_array_across_stacked("sst", names)
    expected = np.stack([nc_values(p) for p in paths])
    np.testing.assert_array_equal(stacked, expected)

    write_broken(folder / "day5.nc")
    proc = run("ingest", folder, tmp_path / "store2", "-j", "2")
    assert_one_line_error(proc, str(folder / "day5.nc"))


def test_codec_and_chunks_options_shape_the_new_store(folder, tmp_path):
    store_path = tmp_path / "store"
    proc = run("ingest", folder, store_path, "--codec", "lz4", "--chunks",
               '{"lat": 4, "lon": 5}')
    assert proc.returncode == 0, proc.stderr
    store = atlas.Atlas.open(store_path)
    assert store.codec == "lz4"
    view = store.open_dataset("day1")
    assert view.array_meta("sst")["chunk_shape"] == [1, 4, 5]
    assert view.array_meta("lat")["chunk_shape"] == [4]
    np.testing.assert_array_equal(view.read_array("sst"), nc_values(folder / "day1.nc"))

    assert main(["ingest", str(folder / "day0.nc"), str(tmp_path / "s2"), "--chunks",
                 '{"sst": [1, 3, 8]}']) == 0
    assert atlas.Atlas.open(tmp_path / "s2").open_dataset("day0").array_meta("sst")[
        "chunk_shape"] == [1, 3, 8]

    # an existing store keeps its codec; asking for another one is an error
    assert_one_line_error(run("ingest", folder, store_path, "--codec", "zstd",
                              "--skip-existing"), "lz4", "--codec zstd")

    # --no-shuffle: a new store of format 2 with the same values; not for one that shuffles
    assert store.shuffle and store.format_version == 6
    assert main(["ingest", str(folder), str(tmp_path / "plain"), "--no-shuffle"]) == 0
    plain = atlas.Atlas.open(tmp_path / "plain")
    assert not plain.shuffle and plain.format_version == 2
    np.testing.assert_array_equal(plain.open_dataset("day1").read_array("sst"),
                                  nc_values(folder / "day1.nc"))
    assert main(["ingest", str(folder), str(tmp_path / "plain"), "--skip-existing"]) == 0
    assert_one_line_error(run("ingest", folder, store_path, "--no-shuffle",
                              "--skip-existing"), "shuffles", "--no-shuffle")


@pytest.mark.parametrize("extra, fragments", [
    (["--chunks", "{lat: 4}"], ["--chunks is not valid JSON"]),
    (["--chunks", '{"lat": 0}'], ["--chunks['lat']"]),
    (["--chunks", '{"latitude": 4}'], ["'latitude'", "not a dimension or variable"]),
    (["--chunks", '{"sst": [1, 2]}'], ["rank 3"]),
    (["--flush-every", "-1"], ["--flush-every"]),
    (["--codec", "gzip"], ["invalid choice", "gzip"]),
])
def test_bad_options_are_one_line_errors(folder, tmp_path, capsys, extra, fragments):
    status = main(["ingest", str(folder), str(tmp_path / "store"), *extra])
    err = capsys.readouterr().err
    assert status == 1 and len(err.splitlines()) == 1 and err.startswith("atlas: ")
    for fragment in fragments:
        assert fragment in err
    assert not (tmp_path / "store").exists()  # no empty store left to trip up the rerun


def test_a_failed_ingest_removes_only_the_store_it_created_unused(folder, tmp_path, capsys):
    bad = ["--chunks", '{"sst": [1, 2]}']  # found at the first file, after the store exists
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["ingest", str(folder), str(empty), *bad]) == 1
    assert empty.is_dir() and list(empty.iterdir()) == []  # the user's folder stays
    assert main(["ingest", str(folder), str(empty)]) == 0  # the corrected rerun just works
    assert len(atlas.Atlas.open(empty)) == len(list(folder.rglob("*.nc")))

    # a store that existed, even an empty one, is never removed
    atlas.Atlas.create(tmp_path / "mine")
    assert main(["ingest", str(folder), str(tmp_path / "mine"), *bad]) == 1
    assert len(atlas.Atlas.open(tmp_path / "mine")) == 0

    # nor is one this ingest created and committed to before failing
    write_unstorable_file(folder / "zz_last.nc")
    assert main(["ingest", str(folder), str(tmp_path / "partial2"), "--flush-every", "1"]) == 1
    assert len(atlas.Atlas.open(tmp_path / "partial2")) == len(list(folder.rglob("*.nc"))) - 1
    capsys.readouterr()


def test_a_missing_or_empty_source_is_an_error(tmp_path):
    assert_one_line_error(run("ingest", tmp_path / "nowhere", tmp_path / "store"),
                          "does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run("ingest", tmp_path / "empty", tmp_path / "store"),
                          "no netCDF files")


def test_ingest_will_not_create_a_store_in_a_folder_holding_other_things(folder, tmp_path):
    proc = run("ingest", folder, folder)  # the source folder given as the store, by mistake
    assert_one_line_error(proc, "not an atlas store")
    assert not (folder / "manifest.atlas").exists()


def test_an_interrupt_keeps_only_what_was_flushed(folder, tmp_path, capsys, monkeypatch):
    calls = []
    real = atlas.Atlas.add_xr_dataset

    def add_then_interrupt(self, ds, name, chunks=None):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, ds, name, chunks)

    monkeypatch.setattr(atlas.Atlas, "add_xr_dataset", add_then_interrupt)
    status = main(["ingest", str(folder), str(tmp_path / "store"), "--flush-every", "2"])
    err = capsys.readouterr().err
    assert status == 130
    assert err.splitlines() == [("atlas: interrupted; the 2 datasets flushed before were kept "
                                 "(rerun with --skip-existing to resume)")]
    assert atlas.Atlas.open(tmp_path / "store").list_datasets() == ["day0", "day1"]


def test_a_store_that_refuses_writes_is_not_blamed_on_the_files(folder, tmp_path, capsys,
                                                                  monkeypatch):
    """A permission error while writing the store stops the ingest with that error, even with
    --skip-errors: it is not the netCDF file's fault (the file was read already)."""
    def refused(self, ds, name, chunks=None):
        raise PermissionError(13, "Permission denied", "segments")

    monkeypatch.setattr(atlas.Atlas, "add_xr_dataset", refused)
    status = main(["ingest", str(folder), str(tmp_path / "store"), "--skip-errors"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.splitlines() == ["atlas: [Errno 13] Permission denied: 'segments'"]
    assert ".nc" not in err


BLOCKING_DRIVER = """
import sys, time
from atlas.cli import _ingest, main

real = _ingest.read_file

def read_file(path):  # the fourth file hangs, like a read from a dead network mount
    if path.endswith("day3.nc"):
        time.sleep(3600)
    return real(path)

_ingest.read_file = read_file  # forked reader processes inherit the patch
if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_with_reader_processes_stops_at_once_and_keeps_what_was_flushed(tmp_path):
    src = tmp_path / "src"
    for day in range(5):
        write_day(src / f"day{day}.nc", day)
    driver = tmp_path / "driver.py"
    driver.write_text(BLOCKING_DRIVER)
    store_path = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, str(driver), "ingest", str(src), str(store_path),
                             "-j", "2", "--flush-every", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until day0..day2 are committed
            if (store_path / "manifest.atlas").exists() and len(
                    atlas.Atlas.open(store_path).list_datasets()) == 3:
                break
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=30)  # the hung reader must not hold up the exit
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.splitlines() == [("atlas: interrupted; the 3 datasets flushed before were kept "
                                 "(rerun with --skip-existing to resume)")]
    assert out == ""
    assert atlas.Atlas.open(store_path).list_datasets() == ["day0", "day1", "day2"]


def test_log_file_records_each_file_and_the_outcome(folder, tmp_path, capsys):
    log = tmp_path / "ingest.log"
    assert main(["ingest", str(folder), str(tmp_path / "store"), "--log-file", str(log)]) == 0
    text = log.read_text()
    assert "ingest 4 files" in text and text.count("ingested ") == 5  # 4 files + the total
    assert "exit 0" in text
    assert main(["ingest", str(folder), str(tmp_path / "store"), "--log-file", str(log)]) == 1
    text = log.read_text()
    assert "already in" in text and text.splitlines()[-1].endswith("exit 1")


def test_an_empty_store_or_source_argument_is_an_error_not_the_current_folder(folder,
                                                                              tmp_path):
    """`atlas ingest SRC ""` made a store in the current folder, non-empty or not, and a
    failed one then removed the user's files there."""
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    (work / "sub" / "more.txt").write_text("mine too")
    write_broken(folder / "zz.nc")
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    for args in (("ingest", folder, ""), ("create", ""), ("ls", ""), ("ingest", "", "s"),
                 ("create", "file://"), ("ingest", folder, "file://")):
        assert_one_line_error(run(*args, cwd=work), "must be a path, got '")
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before


def test_a_failed_ingest_removes_only_atlas_files_from_the_store_it_created(folder, tmp_path,
                                                                           monkeypatch, capsys):
    """Files a user put in the new store's folder while the ingest ran were deleted with the
    store when it failed."""
    from atlas.cli import _ingest

    store = tmp_path / "store"

    def the_user_adds_files_then_a_failure(args, opened, *rest):
        (store / "notes.txt").write_text("mine")
        (store / "mydir").mkdir()
        (store / "mydir" / "keep.txt").write_text("mine too")
        view = opened.create_dataset("x")  # and the ingest's own pending file
        view.define_array("v", "float32", ["i"], [3], [3])
        view.write_array("v", [0], np.arange(3, dtype=np.float32))
        raise RuntimeError("this ingest fails")

    monkeypatch.setattr(_ingest, "_ingest_into", the_user_adds_files_then_a_failure)
    assert main(["ingest", str(folder), str(store)]) == 1
    assert "this ingest fails" in capsys.readouterr().err
    left = sorted(str(p.relative_to(store)) for p in store.rglob("*"))
    assert left == ["mydir", "mydir/keep.txt", "notes.txt"]  # no store, the user's files
    assert (store / "notes.txt").read_text() == "mine"


def test_a_file_url_store_is_checked_and_cleaned_up_as_its_path(folder, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    assert_one_line_error(run("ingest", folder, f"file://{work}"), "not an atlas store")
    assert [p.name for p in work.iterdir()] == ["notes.txt"]
    write_broken(folder / "zz.nc")
    assert_one_line_error(run("ingest", folder, f"file://{tmp_path / 'fresh'}"),
                          "nothing was written")
    assert not (tmp_path / "fresh").exists()


def test_the_log_file_holds_the_traceback_and_the_exit_status_of_an_error(folder, tmp_path):
    write_broken(folder / "zz.nc")
    log = tmp_path / "log.txt"
    assert_one_line_error(run("ingest", folder, tmp_path / "s", "--log-file", log))
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and text.rstrip().endswith("exit 1")


def test_linked_folders_are_followed_once(folder, tmp_path):
    """A linked subfolder's files were left out without a word (rglob does not follow)."""
    elsewhere = tmp_path / "elsewhere"
    write_day(elsewhere / "day7.nc", 7)
    (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    (folder / "later" / "up").symlink_to(folder, target_is_directory=True)  # a loop
    assert main(["ingest", str(folder), str(tmp_path / "s"), "-q"]) == 0
    store = atlas.Atlas.open(tmp_path / "s")
    assert sorted(store.list_datasets()) == ["day0", "day1", "day2", "day3", "day7"]
    np.testing.assert_array_equal(store.open_dataset("day7").read_array("sst"),
                                  nc_values(elsewhere / "day7.nc"))
