"""``atlas ls --where``, ``atlas catalog`` and ``atlas info`` over collections whose arrays and
attributes differ in kind between datasets; checked against the per-dataset API."""

from __future__ import annotations

import csv
import io
import json

import cftime
import numpy as np
import pytest
import xarray as xr

import atlas
from atlas.cli import main


def cmip_like(calendar: str, year: int) -> xr.Dataset:
    times = [cftime.datetime(year, m, 1, calendar=calendar) for m in (1, 2, 3)]
    return xr.Dataset({"tas": ("time", np.array([280.0, 281.5, 279.0], np.float32))},
                      coords={"time": ("time", times)})


@pytest.fixture
def mixed(tmp_path):
    """Arrays named alike holding dates, numbers and text in different datasets; attributes
    of one key holding ints and strings; two calendars for one time axis."""
    path = tmp_path / "mixed"
    with atlas.Atlas.create(path) as store:
        a = store.create_dataset("a")
        a.define_array("t", "timestamp_nanoseconds", ["n"], [2])
        a.write_array("t", [0], np.array(["2020-01-01", "2021-06-01"], "M8[ns]"))
        a.set_attribute("run", 3)
        b = store.create_dataset("b")
        b.define_array("t", "int64", ["n"], [2])
        b.write_array("t", [0], np.array([5, -7], np.int64))
        b.set_attribute("run", "r1i1p1f1")
        c = store.create_dataset("c")
        c.define_array("t", "string", ["n"], [1])
        c.write_array("t", [0], np.array(["x"], object))
        store.add_xr_dataset(cmip_like("noleap", 1850), "cesm")
        store.add_xr_dataset(cmip_like("360_day", 1850), "hadgem")
    return path


@pytest.mark.parametrize("as_json", [False, True])
def test_info_folds_statistics_over_mixed_dtypes_instead_of_crashing(mixed, capsys, as_json):
    assert main(["info", str(mixed)] + (["--json"] if as_json else [])) == 0
    out = capsys.readouterr().out
    if not as_json:
        row = next(line.split() for line in out.splitlines() if line.startswith("t "))
        assert row[2] == "int64,string,timestamp_nanoseconds" and row[-2:] == ["-", "-"]
        return
    arrays = json.loads(out)["arrays"]
    t = arrays["t"]
    assert t["datasets"] == 3 and sorted(t["dtypes"]) == ["int64", "string",
                                                           "timestamp_nanoseconds"]
    assert t["cells"] == 5 and t["nulls"] == 0
    assert t["min"] is None and t["max"] is None  # dates, numbers and text do not compare
    tas = arrays["tas"]
    assert tas["datasets"] == 2 and (tas["min"], tas["max"]) == (279.0, 281.5)
    assert arrays["time"]["datasets"] == 2 and arrays["time"]["cells"] == 6
    assert arrays["time"]["min"] is None  # noleap and 360_day dates do not compare


def test_info_shows_dates_when_one_calendar_is_used(tmp_path, capsys):
    path = tmp_path / "one"
    with atlas.Atlas.create(path) as store:
        store.add_xr_dataset(cmip_like("noleap", 1850), "y1850")
        store.add_xr_dataset(cmip_like("noleap", 1900), "y1900")
    assert main(["info", str(path), "--json"]) == 0
    time = json.loads(capsys.readouterr().out)["arrays"]["time"]
    assert (time["min"], time["max"], time["calendar"]) == (
        "1850-01-01T00:00:00", "1900-03-01T00:00:00", "noleap")


def test_ls_where_matches_select_and_a_brute_force_check(mixed, capsys):
    assert main(["ls", str(mixed), "--where", "tas.max > 281"]) == 0
    assert capsys.readouterr().out.split() == ["cesm", "hadgem"]
    assert main(["ls", str(mixed), "--where", "run == 3 or t.dtype == 'int64'"]) == 0
    assert capsys.readouterr().out.split() == ["a", "b"]
    assert main(["ls", str(mixed), "-l", "--json", "--where", "run in ['r1i1p1f1']"]) == 0
    assert json.loads(capsys.readouterr().out) == {"b": ["t"]}


@pytest.mark.parametrize("where, fragment", [
    ("tas.max >", "cannot parse"),
    ("nothing > 1", "no column 'nothing'"),
    ("len(run) > 1", "len"),
    ("", "cannot parse"),  # as select("") says (it listed every dataset)
    ("not " * 1000 + "run > 1", "nests more than"),
])
def test_a_bad_where_is_one_clear_line(mixed, capsys, where, fragment):
    assert main(["ls", str(mixed), "--where", where]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("atlas: ") and fragment in err and "\n" not in err


def test_catalog_as_text_csv_and_json_holds_what_the_api_holds(mixed, capsys):
    store = atlas.Atlas.open(mixed, read_only=True)
    assert main(["catalog", str(mixed), "--arrays", "tas", "--attributes", "run",
                 "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["dataset"] for r in records] == store.list_datasets()
    by_name = {r["dataset"]: r for r in records}
    for name in store.list_datasets():
        view = store.open_dataset(name)
        assert by_name[name]["run"] == view.get_attribute("run")
        stats = view.array_stats("tas")
        if stats is None:
            assert by_name[name]["tas.max"] is None and by_name[name]["tas.dtype"] is None
        else:
            assert by_name[name]["tas.max"] == stats["max"]
            assert by_name[name]["tas.nulls"] == stats["null_count"]
            # counts are integers (pandas held them as floats: some dataset lacks tas)
            assert type(by_name[name]["tas.nulls"]) is int
    assert main(["catalog", str(mixed), "--arrays", "tas", "--attributes", "run",
                 "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["dataset"] for r in rows] == store.list_datasets()
    assert rows[0]["run"] == "3" and rows[1]["run"] == "r1i1p1f1"
    assert float(rows[3]["tas.min"]) == 279.0
    assert main(["catalog", str(mixed), "--where", "tas.valid == 3"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split()[0] == "dataset" and [line.split()[0] for line in text[1:]] == [
        "cesm", "hadgem"]
    assert main(["catalog", str(mixed), "--arrays", "a,,b"]) == 1
    assert "expected comma-separated names, got 'a,,b'" in capsys.readouterr().err


def test_catalog_json_and_csv_print_integers_where_some_datasets_lack_them(tmp_path, capsys):
    """An int attribute (and an int array's min and max) that some dataset lacks printed as
    1.0 in --json and --csv: pandas holds such a column as floats."""
    with atlas.Atlas.create(tmp_path / "s") as store:
        a = store.create_dataset("a")
        a.set_attribute("k", 1)
        a.set_attribute("f", 2.0)
        a.define_array("n", "int32", ["x"], [2])
        a.write_array("n", [0], np.array([3, 7], np.int32))
        b = store.create_dataset("b")
        b.set_attribute("f", 0.5)
    assert main(["catalog", str(tmp_path / "s"), "--json"]) == 0
    rows = {r["dataset"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["a"]["k"] == 1 and type(rows["a"]["k"]) is int and rows["b"]["k"] is None
    assert type(rows["a"]["f"]) is float  # a float stays one
    assert (rows["a"]["n.min"], rows["a"]["n.max"]) == (3, 7)
    assert type(rows["a"]["n.min"]) is int and rows["b"]["n.min"] is None
    assert main(["catalog", str(tmp_path / "s"), "--csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert (table[0]["k"], table[1]["k"], table[0]["n.max"]) == ("1", "", "7")
    assert table[0]["f"] == "2.0"
    # --where picking only datasets that have them: the same
    assert main(["catalog", str(tmp_path / "s"), "--json", "--where", "k == 1"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["k"] == 1 and type(row["k"]) is int and type(row["n.max"]) is int
