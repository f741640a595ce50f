"""catalog() and select() against a brute-force check of every dataset through the
per-dataset API; the collection summaries against folds of the same."""

from __future__ import annotations

import math
import operator

import numpy as np
import pandas as pd
import pytest
from core_helpers import reopen
from hypothesis import given, settings
from hypothesis import strategies as st

import atlas

PLATFORMS = ["float1", "float12", "glider"]
OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
       ">": operator.gt, ">=": operator.ge}


def _collection(store, rng, n=40):
    """Profiles with temp (some NaN), a 0-D lat, sometimes no temp, and attributes."""
    for i in range(n):
        ds = store.create_dataset(f"p{i:03d}")
        if i % 7:
            ds.define_array("temp", "float32", ["z"], [6], fill_value=float("nan"))
            values = (rng.standard_normal(6) * 8 + 15).astype(np.float32)
            values[rng.random(6) < 0.2] = np.nan
            ds.write_array("temp", [0], values)
        ds.define_array("lat", "float64", [], [])
        ds.write_array("lat", [], np.asarray(rng.uniform(-40, 40)))
        ds.set_attribute("platform", PLATFORMS[i % 3])
        if i % 5:
            ds.set_attribute("cycle", int(i))
        ds.set_attribute("time", np.datetime64("2024-01-01", "ns") + np.timedelta64(i, "D"))


def _value(store, name, column):
    """The value of one catalog column of one dataset, through the per-dataset API."""
    view = store.open_dataset(name)
    head, _, stat = column.rpartition(".")
    if stat in ("min", "max", "nulls", "valid"):
        stats = view.array_stats(head)
        if stats is None:
            return None
        return {"min": stats["min"], "max": stats["max"], "nulls": stats["null_count"],
                "valid": stats["row_count"] - stats["null_count"]}[stat]
    return view.get_attribute(column)


def _holds(value, op, literal):
    if value is None or isinstance(value, float) and math.isnan(value):
        return False
    if isinstance(value, np.datetime64) and isinstance(literal, str):
        literal = np.datetime64(literal, "ns")
    return bool(OPS[op](value, literal))


def test_the_catalog_equals_the_per_dataset_api(store, store_path, rng):
    _collection(store, rng)
    store.flush()
    store.delete_dataset("p004")
    ds = store.create_dataset("late")  # not flushed: its statistics are not known yet
    ds.define_array("temp", "float32", ["z"], [6])
    ds.write_array("temp", [0], np.ones(6, np.float32))
    for handle in (store, reopen(store_path)):
        frame = handle.catalog()
        assert list(frame.index) == handle.list_datasets()
        for name in frame.index:
            view = handle.open_dataset(name)
            for key in ("platform", "cycle", "time"):
                got, want = frame.loc[name, key], view.get_attribute(key)
                if want is None:
                    assert pd.isna(got)
                else:
                    assert got == want, (name, key)
            for array in ("temp", "lat"):
                meta, stats = view.array_meta(array), view.array_stats(array)
                got = frame.loc[name, f"{array}.dtype"]
                assert pd.isna(got) if meta is None else got == meta["dtype"]
                if stats is None:
                    assert math.isnan(frame.loc[name, f"{array}.valid"])
                    continue
                assert frame.loc[name, f"{array}.nulls"] == stats["null_count"]
                assert frame.loc[name, f"{array}.min"] == pytest.approx(stats["min"])
                assert frame.loc[name, f"{array}.max"] == pytest.approx(stats["max"])
    assert frame["time"].dtype == np.dtype("M8[ns]") and frame["temp.max"].dtype == np.float64


def test_only_the_requested_columns_are_there(store, rng):
    _collection(store, rng, 10)
    frame = store.catalog(arrays=["lat"], attributes=["platform"])
    assert list(frame.columns) == ["platform", "lat.dtype", "lat.shape", "lat.nulls",
                                   "lat.valid", "lat.min", "lat.max"]
    assert frame["lat.shape"].tolist() == [()] * 10
    with pytest.raises(TypeError, match="names"):
        store.catalog(arrays=[3])
    # a name no dataset has is a typo, not a column of missing values
    with pytest.raises(atlas.QueryError, match=r"arrays=.*no dataset has an array 'lta'; "
                                               r"arrays are 'lat', 'temp'"):
        store.catalog(arrays=["lat", "lta"])
    with pytest.raises(atlas.QueryError, match="attributes=.*no dataset has an attribute "
                                               "'platfrom'"):
        store.catalog(arrays=[], attributes=["platfrom"])


EXPRESSIONS = [
    "temp.max > 25 and platform == 'float12' and -10 < lat.min < 10",
    "platform in ['float1', 'glider'] or cycle >= 30",
    "not (cycle < 20) and temp.nulls == 0",
    "cycle != 10 and lat.max > 0",
    "time >= '2024-01-15' and time < '2024-02-01'",
    "`temp.valid` < 6",
    "10 < cycle",
]


def test_timestamps_in_a_list_are_iso_text_as_in_comparisons(store, rng):
    _collection(store, rng, 10)
    store.flush()
    days = ["2024-01-03", "2024-01-05T00:00"]
    assert store.select(f"time in {days}") == store.select(
        f"time == '{days[0]}' or time == '{days[1]}'") == ["p002", "p004"]
    assert store.select(f"time not in {days}") == [
        n for n in store.list_datasets() if n not in ("p002", "p004")]


@pytest.mark.parametrize("where", EXPRESSIONS)
def test_select_matches_a_brute_force_check(store, rng, where):
    _collection(store, rng)
    store.flush()
    got = store.select(where)
    want = [name for name in store.list_datasets() if _brute(store, name, where)]
    assert got == want


def _brute(store, name, where):
    """Evaluate the expression in Python on one dataset's values."""
    import ast

    def ev(node):
        if isinstance(node, ast.BoolOp):
            results = [ev(v) for v in node.values]
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.UnaryOp):
            return not ev(node.operand)
        if isinstance(node, ast.Compare):
            left, ok = node.left, True
            for op, right in zip(node.ops, node.comparators):
                symbol = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=",
                          ast.Gt: ">", ast.GtE: ">=", ast.In: "in"}[type(op)]
                lv, rv = value(left), value(right)
                if symbol == "in":
                    ok &= lv is not None and lv in rv
                elif isinstance(left, ast.Constant):  # literal on the left
                    mirror = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(symbol, symbol)
                    ok &= _holds(rv, mirror, lv)
                else:
                    ok &= _holds(lv, symbol, rv)
                left = right
            return ok
        raise AssertionError(node)

    def value(node):
        if isinstance(node, (ast.Constant, ast.List, ast.UnaryOp)):
            return ast.literal_eval(node)
        return _value(store, name, ast.unparse(node).replace("`", ""))

    return ev(ast.parse(where.replace("`", ""), mode="eval").body)


@settings(deadline=None, max_examples=25)
@given(st.data())
def test_random_collections_and_predicates_select_what_brute_force_selects(tmp_path_factory,
                                                                            data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), "seed"))
    path = tmp_path_factory.mktemp("q") / "s"
    store = atlas.Atlas.create(path)
    n = data.draw(st.integers(2, 25), "n")
    _collection(store, rng, n)  # p001 has every column and is never deleted
    if data.draw(st.booleans(), "flush"):
        store.flush()
    for name in data.draw(st.lists(st.sampled_from(store.list_datasets()[2:] or ["p000"]),
                                   max_size=3, unique=True), "deleted"):
        store.delete_dataset(name)
        if data.draw(st.booleans(), "again"):
            ds = store.create_dataset(name)  # the same name, a new dataset
            ds.set_attribute("platform", "glider")
            ds.set_attribute("cycle", 99)
    store.flush()
    column = st.sampled_from(["temp.max", "temp.min", "lat.max", "cycle", "temp.nulls"])
    comparison = st.builds(lambda c, op, x: f"{c} {op} {x}", column, st.sampled_from(list(OPS)),
                           st.integers(-40, 60))
    platform = st.sampled_from(PLATFORMS).map(lambda p: f"platform == {p!r}")
    atom = st.one_of(comparison, platform)
    expr = st.recursive(atom, lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        inner.map(lambda a: f"not ({a})")), max_leaves=4)
    where = data.draw(expr, "where")
    for handle in (store, atlas.Atlas.open(path)):
        assert handle.select(where) == [n for n in handle.list_datasets()
                                        if _brute(handle, n, where)], where


def test_a_callable_gets_the_catalog_and_picks_rows(store, rng):
    _collection(store, rng, 12)
    got = store.select(lambda df: (df["platform"] == "glider") & (df["lat.max"] > 0))
    want = [n for n in store.list_datasets()
            if store.open_dataset(n).get_attribute("platform") == "glider"
            and store.open_dataset(n).array_stats("lat") is None] or got  # stats unflushed
    store.flush()
    got = store.select(lambda df: (df["platform"] == "glider") & (df["lat.max"] > 0))
    want = [n for n in store.list_datasets()
            if store.open_dataset(n).get_attribute("platform") == "glider"
            and store.open_dataset(n).read_array("lat") > 0]
    assert got == want
    with pytest.raises(ValueError, match="booleans"):
        store.select(lambda df: [True])


def test_selections_feed_stacked_reads_and_batches(store, rng):
    _collection(store, rng, 30)
    store.flush()
    chosen = store.select("lat.max > 0 and temp.valid > 0")
    stacked = store.read_array_across_stacked("temp", chosen)
    for name, row in zip(chosen, stacked):
        np.testing.assert_array_equal(row, store.open_dataset(name).read_array("temp"))
    seen = [n for names, _ in store.batches("temp", batch_size=4, where="lat.max > 0 and "
                                            "temp.valid > 0", shuffle=False) for n in names]
    assert seen == chosen


@pytest.mark.parametrize(("where", "match"), [
    ("nope > 1", "no column 'nope'"), ("temp.max >", "cannot parse"),
    ("cycle + 1", "a column name or a literal"), ("3", "not a condition"), ("cycle and 3", "conditions"),
    ("temp.max > cycle.min", "no column"), ("`temp.max > 1", "unbalanced"),
    # a list is a set of values for `in`, never compared row by row (5 datasets, 5 items)
    ("cycle == [0, 1, 2, 3, 4]", r"== compares with one value.*'in \[\.\.\.\]'"),
    ("cycle != [1, 2]", r"!= compares with one value.*'in \[\.\.\.\]'"),
    ("[1, 2] < cycle", r"< compares with one value"),
    ("time < 'garbage'", r"column 'time' holds timestamps: expected ISO 8601.*'garbage'"),
    # a literal of another kind than a typed column's: == would quietly match nothing
    ("time == 5", r"column 'time' holds timestamps: expected ISO 8601.*the number 5"),
    ("1.5 < time", r"column 'time' holds timestamps: expected ISO 8601.*the number 1.5"),
    ("cycle == '3'", r"column 'cycle' holds numbers \(\w+\): expected a number, got '3'"),
    ("temp.max != 'warm'", r"column 'temp.max' holds numbers .*got 'warm'"),
    ("platform == 6900000", r"column 'platform' holds text: expected text.*the number 6900000"),
    ("cycle == True", r"column 'cycle' holds numbers .*got True"),  # pandas: True == 1
    ("time != False", r"column 'time' holds timestamps: .*got False"),
    ("cycle in [1, 'a']", r"column 'cycle' holds numbers .*got 'a'"),
    ("time in ['2024-01-02', 'soon']", r"column 'time' holds timestamps: .*got 'soon'"),
    # literals no column holds (complex compared as nothing, None as missing)
    ("cycle < 1j", r"literals are numbers, text, True/False and lists of them; got '1j'"),
    ("cycle == None", r"literals are .*got 'None'"),
    ("cycle in [1, None]", r"literals are .*got '\[1, None\]'"),
    ("cycle == {1: 2}", r"literals are .*got '\{1: 2\}'"),
])
def test_bad_expressions_raise_value_errors_saying_what(store, rng, where, match):
    _collection(store, rng, 5)
    store.flush()
    with pytest.raises(ValueError, match=match):
        store.select(where)


def test_collection_summaries_fold_the_datasets(store, store_path, rng):
    _collection(store, rng, 30)
    odd = store.create_dataset("odd")
    odd.define_array("temp", "float64", ["z"], [2])
    odd.write_array("temp", [0], np.array([-100.0, 99.5]))
    odd.set_attribute("cycle", "not a number")
    store.flush()
    names = store.list_datasets()
    per = {n: store.open_dataset(n).array_stats("temp") for n in names}
    per = {n: s for n, s in per.items() if s is not None}
    folded = store.array_stats("temp")
    assert folded["datasets"] == len(per)
    assert folded["row_count"] == sum(s["row_count"] for s in per.values())
    assert folded["null_count"] == sum(s["null_count"] for s in per.values())
    assert folded["min"] == min(s["min"] for s in per.values() if s["min"] is not None)
    assert folded["max"] == max(s["max"] for s in per.values() if s["max"] is not None)
    assert folded["dtypes"] == ["float32", "float64"]
    assert store.array_stats_by_dataset("temp") == per
    assert store.attributes_by_dataset("cycle") == {
        n: store.open_dataset(n).get_attribute("cycle") for n in names
        if store.open_dataset(n).get_attribute("cycle") is not None}
    schema = store.merged_schema()
    assert schema["arrays"]["temp"]["dtype"] == "float64"  # float32 and float64 widen
    assert schema["arrays"]["temp"]["dtypes"] == {"float32": len(per) - 1, "float64": 1}
    assert schema["attributes"]["cycle"]["type"] is None  # int64 and string do not
    assert {"attribute": "cycle", "types": {"int64": 24, "string": 1}} in schema["conflicts"]
    assert store.array_stats("missing") is None


@pytest.mark.parametrize("dtype, big", [("int64", 2**53 + 1), ("int64", -(2**62) - 3),
                                        ("uint64", 2**64 - 1), ("int32", 7)])
def test_integer_statistics_stay_exact_where_a_dataset_lacks_the_array(tmp_path, dtype, big):
    """A catalog column with missing rows holds floats (NaN for the missing) only where every
    value is exact as a float; beyond 2**53 its values are Python ints. Summaries fold ints."""
    with atlas.Atlas.create(tmp_path / "s") as store:
        view = store.create_dataset("a")
        view.define_array("id", dtype, ["n"], [2])
        view.write_array("id", [0], np.array([1, big], dtype))
        store.create_dataset("b").set_attribute("k", 1)  # no "id"
    store = atlas.Atlas.open(tmp_path / "s")
    low, high = sorted([1, big])
    summary = store.array_stats("id")
    assert (summary["min"], summary["max"]) == (low, high)
    assert type(summary["max"]) is int
    column = store.catalog(arrays=["id"])["id.max"]
    assert column["a"] == high
    assert math.isnan(column["b"]) if abs(high) <= 2**53 else column["b"] is None
    assert store.select(f"id.max == {high}") == ["a"]


@pytest.mark.parametrize("big", [2**53 + 1, -(2**62) - 3, 2**63 - 1, 7])
@pytest.mark.parametrize("other", [None, 0.5])
def test_integer_attributes_stay_exact_where_a_dataset_lacks_them(tmp_path, big, other):
    """As for array statistics: an attribute column with missing rows (or floats) holds floats
    only where every integer is exact as a float; beyond 2**53 its values are Python ints."""
    values = {"a": big, "b": other, "c": 1}
    with atlas.Atlas.create(tmp_path / "s") as store:
        for name, value in values.items():
            view = store.create_dataset(name)
            if value is not None:
                view.set_attribute("id", value)
    store = atlas.Atlas.open(tmp_path / "s")
    column = store.catalog(attributes=["id"], arrays=[])["id"]
    assert column["a"] == big and column["c"] == 1
    if other is None:
        assert math.isnan(column["b"]) if abs(big) <= 2**53 else column["b"] is None
    for literal in (big - 1, big, big + 1):
        for op in OPS:
            want = [n for n, v in values.items() if v is not None and OPS[op](v, literal)]
            assert store.select(f"id {op} {literal}") == want, (op, literal)


@pytest.mark.parametrize("kind", ["int", "float"])
def test_numbers_compare_exactly_as_python_compares_them(tmp_path, kind):
    """An integer column against a float literal, and a float column against an integer
    literal no float equals: compared exactly, as Python compares int and float (numpy
    compares two floats: 2**53 + 1 equalled 9007199254740992.0)."""
    if kind == "int":
        values = [2**53, 2**53 + 1, 2**53 + 2, -(2**53) - 1, 2**63 - 1, -(2**63), 0, 3]
        literals = [9007199254740992.0, 9007199254740994.0, -9007199254740992.0, 2.5, -2.5,
                    3.0, 9.3e18, -9.3e18, 9223372036854775807.0, float("inf"), float("-inf")]
    else:
        values = [9007199254740992.0, 9007199254740994.0, -9007199254740992.0, 1e300, 0.5,
                  float("nan")]
        literals = [2**53 + 1, 2**53 - 1, 2**53, -(2**53) - 1, 2**63 - 1, -(2**63), 7]
    names = [f"d{i}" for i in range(len(values))]
    with atlas.Atlas.create(tmp_path / "s") as store:
        for name, value in zip(names, values):
            store.create_dataset(name).set_attribute("v", value)
    store = atlas.Atlas.open(tmp_path / "s")
    for literal in literals:
        text = {"inf": "1e400", "-inf": "-1e400"}.get(str(literal), repr(literal))
        for op in OPS:
            # a missing value (NaN) satisfies no comparison, != included
            want = [n for n, v in zip(names, values)
                    if not (isinstance(v, float) and math.isnan(v)) and OPS[op](v, literal)]
            assert store.select(f"v {op} {text}") == want, (op, literal)


def test_a_missing_value_on_either_side_never_satisfies_a_comparison(store):
    pairs = {"both_equal": (1, 1), "both_differ": (1, 2), "no_y": (1, None),
             "no_x": (None, 1), "neither": (None, None), "big_y": (3, 2**53 + 1)}
    for name, (x, y) in pairs.items():
        view = store.create_dataset(name)
        if x is not None:
            view.set_attribute("x", x)
        if y is not None:
            view.set_attribute("y", y)
    store.flush()
    for op, holds in OPS.items():
        want = [n for n, (x, y) in pairs.items() if x is not None and y is not None
                and holds(x, y)]
        assert store.select(f"x {op} y") == want, op
        mirrored = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
        assert store.select(f"y {mirrored} x") == want, op


def test_an_attribute_named_like_an_array_statistic_is_refused_not_hidden(store):
    """`temp.max` names the statistic of array temp; an attribute of that key cannot share the
    name: asking for the name raises, and the attribute stays readable on its own."""
    a = store.create_dataset("A")
    a.set_attribute("temp.max", 99)
    a.define_array("temp", "float64", ["x"], [2])
    a.write_array("temp", [0], np.array([1.0, 2.0]))
    store.create_dataset("B").set_attribute("temp.max", 5)
    store.flush()
    for ask in (lambda: store.catalog(), lambda: store.catalog(columns=["temp.max"]),
                lambda: store.catalog(arrays=["temp"], attributes=["temp.max"]),
                lambda: store.select("`temp.max` == 5"), lambda: store.select("temp.max > 0")):
        with pytest.raises(atlas.QueryError, match="'temp.max' is both an attribute key and "
                                                   "the max of array 'temp'"):
            ask()
    want = {n: store.open_dataset(n).get_attribute("temp.max") for n in ("A", "B")}
    frame = store.catalog(attributes=["temp.max"], arrays=[])
    assert frame["temp.max"].to_dict() == want == store.attributes_by_dataset("temp.max")
    # the other statistics of temp do not clash
    assert store.select("temp.min >= 1") == ["A"]
    assert store.catalog(columns=["temp.min"])["temp.min"]["A"] == 1.0


def test_timestamp_text_beyond_the_ns_range_compares_as_before_or_after_every_value(tmp_path):
    # np.datetime64(text, "ns") wraps: '9999-01-01' was 1815 and '2554-07-21T23:34:33.709551616'
    # 1970; the ends of datetime64[ns] themselves (within a microsecond of them too) exactly
    ends = {"first": np.datetime64(-(2**63) + 1, "ns"), "mid": np.datetime64("2024-03-01", "ns"),
            "last": np.datetime64(2**63 - 1, "ns")}
    with atlas.Atlas.create(tmp_path / "s") as store:
        for name, when in ends.items():
            store.create_dataset(name).set_attribute("t", when)
            view = store.open_dataset(name)
            view.define_array("obs", "timestamp_nanoseconds", ["i"], [1])
            view.write_array("obs", [0], np.array([when]))
    store = atlas.Atlas.open(tmp_path / "s")
    literals = ["9999-01-01", "1500-01-01", "-300000-01-01", "300000-01-01T00",
                "2554-07-21T23:34:33.709551616", "1677-09-21T00:12:43.145224",
                "1677-09-21T00:12:43.1452241", "1677-09-21T00:12:43.145224193",
                "1677-09-21T00:12:43.1452245", "2262-04-11T23:47:16.854775807",
                "2262-04-11T23:47:16.8547759", "2024-03-01 00:00", "2024-03-01T02:00+02:00"]
    for text in literals:
        # Python's exact answer: the text as nanoseconds since 1970 in arbitrary precision
        exact = _nanoseconds(text)
        for column in ("t", "obs.min"):
            for op in OPS:
                want = [n for n, when in ends.items() if OPS[op](int(when.astype(np.int64)), exact)]
                assert store.select(f"{column} {op} '{text}'") == want, (column, op, text)
        assert store.select(f"t in ['{text}']") == [
            n for n, when in ends.items() if int(when.astype(np.int64)) == exact]
    for text in ("", "NaT", "soon"):
        with pytest.raises(atlas.QueryError, match="ISO 8601"):
            store.select(f"t > '{text}'")


def _nanoseconds(text: str) -> int:
    """ISO text as integer nanoseconds since 1970 (UTC), without numpy's ranges."""
    import datetime as dt
    import re

    match = re.fullmatch(r"(-?\d+)-(\d\d)-(\d\d)(?:[T ](\d\d)(?::(\d\d)(?::(\d\d)(?:\.(\d+))?)?)?)?"
                         r"([+-]\d\d:\d\d)?", text)
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    days = _days_from_civil(int(year), int(month), int(day))
    seconds = days * 86400 + int(hour or 0) * 3600 + int(minute or 0) * 60 + int(second or 0)
    if zone:
        sign = -1 if zone[0] == "-" else 1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 10**9 + int(((fraction or "") + "0" * 9)[:9])


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (any year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def test_int_and_float_arrays_keep_integer_extremes_exact(tmp_path):
    # an array int64 in one dataset and float64 in another: its min/max went through float64
    with atlas.Atlas.create(tmp_path / "s") as store:
        store.create_dataset("A").define_array("v", "int64", ["i"], [1])
        store.open_dataset("A").write_array("v", [0], np.array([2**62 + 1]))
        store.create_dataset("B").define_array("v", "float64", ["i"], [1])
        store.open_dataset("B").write_array("v", [0], np.array([1.5]))
    store = atlas.Atlas.open(tmp_path / "s")
    assert store.catalog(arrays=["v"], attributes=[])["v.max"].tolist() == [2**62 + 1, 1.5]
    assert store.select(f"v.max == {2**62 + 1}") == ["A"]
    assert store.select(f"v.max > {2**62}") == ["A"]
    assert store.select(f"v.max == {float(2**62)}") == []
    assert store.select("v.min < 2") == ["B"]


def test_numbers_beyond_every_int64_and_float_compare_without_overflow(store):
    store.create_dataset("a").set_attribute("f", 1.5)
    store.create_dataset("b").set_attribute("f", float("inf"))
    store.create_dataset("c").set_attribute("m", "x")
    store.create_dataset("d").set_attribute("m", np.bool_(True))
    store.flush()
    huge = 10**400
    assert store.select(f"f < {huge}") == ["a"] and store.select(f"f > -{huge}") == ["a", "b"]
    assert store.select(f"f > {huge}") == ["b"] and store.select(f"f == {huge}") == []
    assert store.select(f"m == {2**70}") == [] and store.select(f"m != {2**64 - 1}") == ["c", "d"]


@pytest.mark.parametrize("where", ["not " * 1500 + "x > 0", "x == " + "-" * 2000 + "1"])
def test_expressions_nested_too_deep_raise_query_errors(store, where):
    store.create_dataset("a").set_attribute("x", 1)
    with pytest.raises(atlas.QueryError, match="nests more than"):
        store.select(where)


def test_a_column_with_missing_values_still_refuses_literals_of_another_kind(store):
    store.create_dataset("a").set_attribute("flag", True)
    store.open_dataset("a").set_attribute("big", 2**60 + 1)
    store.create_dataset("b")  # neither: the columns hold None there
    store.flush()
    for where in ("flag == 1", "flag > 0", "big == 'abc'", "big < 'abc'"):
        with pytest.raises(atlas.QueryError, match="expected"):
            store.select(where)
    assert store.select("flag == True") == ["a"] and store.select(f"big > {2**60}") == ["a"]


def test_back_quotes_inside_text_literals_are_text(store):
    store.create_dataset("a").set_attribute("note", "it`s")
    store.create_dataset("b").set_attribute("note", "a`b`c")
    store.flush()
    assert store.select("note == 'it`s'") == ["a"]
    assert store.select('note == "a`b`c"') == ["b"]
    assert store.select("`note` != 'a`b`c'") == ["a"]
    assert store.select("note in ['it`s', 'x']") == ["a"]
    with pytest.raises(atlas.QueryError, match="cannot parse"):
        store.select("x`note` == 'ok'")


def test_a_where_callable_must_return_booleans(store):
    store.create_dataset("a").set_attribute("x", float("nan"))
    store.create_dataset("b").set_attribute("x", 0.0)
    store.flush()
    with pytest.raises(TypeError, match="booleans.*float64"):
        store.select(lambda table: table["x"])
    assert store.select(lambda table: table["x"] == 0) == ["b"]


def test_merged_schema_of_datasets_with_keys_of_their_own_is_linear(store, store_path):
    """Each attribute key searched every live dataset and kept the result (a position per
    live dataset) with its table: time and memory grew with keys x datasets (20,000 datasets
    with a key each: 9 s, 3.5 GB)."""
    import tracemalloc

    n = 2000
    for i in range(n):
        view = store.create_dataset(f"d{i}")
        view.set_attribute(f"k{i}", i if i % 3 else float(i))
        view.set_attribute("shared", "x" if i % 2 else 1)
    store.delete_dataset("d7")  # a dead row: not counted
    store.flush()
    handle = reopen(store_path)
    tracemalloc.start()
    try:
        merged = handle.merged_schema()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, peak  # ~54 MB when it held a row map per key
    attrs = merged["attributes"]
    assert "k7" not in attrs and len(attrs) == n - 1 + 1
    assert attrs["k3"] == {"type": "float64", "types": {"float64": 1}, "datasets": 1}
    assert attrs["k4"]["type"] == "int64"
    assert attrs["shared"]["datasets"] == n - 1 and attrs["shared"]["type"] is None


# -- a hostile user's queries (each once gave a wrong answer, or an untyped error) ------------

def _exactly(store, expression: str, column: str, symbol: str, literal) -> None:
    """select(expression) against Python's own comparison of each dataset's value."""
    values = store.catalog(columns=[column])[column]
    expected = [name for name, value in values.items()
                if not pd.isna(value) and OPS[symbol](_plain(value), literal)]
    assert store.select(expression) == expected, expression


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def test_numbers_of_every_width_compare_exactly(tmp_path):
    """float32 columns were compared after rounding the literal to float32 (f32 == 0.1 held),
    uint64 ones with a float after rounding (2**64 - 1 >= 2.0**64 held), an int64 column
    with a float64 one as two floats (2**53 + 1 == 2.0**53 held)."""
    store = atlas.Atlas.create(tmp_path / "s")
    for name, f32, u64, i, f in [("a", 0.1, 2**64 - 1, 2**53 + 1, 2.0**53),
                                 ("b", 0.5, 7, 3, 3.0), ("c", -2.0, 2**63, -(2**62) - 1,
                                                         float(-(2**62)))]:
        ds = store.create_dataset(name)
        ds.set_attribute("f32", np.float32(f32))
        ds.set_attribute("u64", np.uint64(u64))
        ds.set_attribute("i", i)
        ds.set_attribute("f", f)
        ds.define_array("y", "uint64", ["n"], [1])
        ds.write_array("y", [0], np.array([u64], np.uint64))
    store.flush()
    assert str(store.catalog()["f32"].dtype) == "float32"
    for symbol in OPS:
        for literal in (0.1, 0.5, 1.8446744073709552e19, 2**64 - 1, 2**63, 7, 7.5, -2):
            for column in ("f32", "u64", "y.max"):
                _exactly(store, f"{column} {symbol} {literal!r}", column, symbol, literal)
    for symbol in OPS:  # column against column, row by row
        rows = store.catalog(columns=["i", "f"])
        expected = [n for n, a, b in zip(rows.index, rows["i"], rows["f"])
                    if OPS[symbol](int(a), float(b))]
        assert store.select(f"i {symbol} f") == expected
        assert store.select(f"f {symbol} i") == [
            n for n, a, b in zip(rows.index, rows["i"], rows["f"])
            if OPS[symbol](float(b), int(a))]
    assert store.select("f32 in [0.1, 0.5]") == ["b"]
    assert store.select("u64 in [1.8446744073709552e19, 7.0]") == ["b"]
    assert store.select(f"u64 in [{2**64 - 1}]") == ["a"]


def test_timestamps_of_any_unit_compare_with_text_exactly(tmp_path):
    """A datetime64[s] column (a date's attribute) matched no text outside 1677..2262; text
    finer than a nanosecond was cut to it (equal to midnight); '20240101' was the year
    20,240,101."""
    store = atlas.Atlas.create(tmp_path / "s")
    for year in (1500, 2024, 3000):
        store.create_dataset(f"y{year}").set_attribute("day", np.datetime64(f"{year}-06-01"))
    store.create_dataset("t").set_attribute("t", np.datetime64("2024-01-01T00:00", "ns"))
    store.flush()
    assert store.select("day == '3000-06-01'") == ["y3000"]
    assert store.select("day > '2500-01-01'") == ["y3000"]
    assert store.select("day < '1600-01-01'") == ["y1500"]
    assert store.select("day >= '1500-06-01T00:00:00.5'") == ["y2024", "y3000"]
    assert store.select("day <= '1500-06-01T00:00:00.5'") == ["y1500"]
    assert store.select("day == '3000-06-01T00:00:00.000001'") == []
    assert store.select("day in ['1500-06-01', '3000-06-01', '9999-01-01']") == ["y1500",
                                                                                 "y3000"]
    assert store.select("day != '2024-06-01'") == ["y1500", "y3000"]
    finer = "'2024-01-01T00:00:00.000000000999'"
    assert store.select(f"t == {finer}") == [] and store.select(f"t < {finer}") == ["t"]
    assert store.select(f"t != {finer}") == ["t"] and store.select(f"t >= {finer}") == []
    assert store.select("t == '2024-01-01T00:00:00.000000000000'") == ["t"]
    with pytest.raises(atlas.QueryError, match="ISO 8601 text .* got '20240101'"):
        store.select("t == '20240101'")


def test_a_callable_where_series_is_read_by_its_labels(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    for name, v in [("a", 3), ("b", 1), ("c", 2)]:
        store.create_dataset(name).set_attribute("v", v)
    store.flush()
    assert store.select(lambda t: t.sort_values("v")["v"] >= 2) == ["a", "c"]
    assert store.select(lambda t: (t["v"] >= 2).to_numpy()) == ["a", "c"]
    with pytest.raises(ValueError, match="index is not the catalog's"):
        store.select(lambda t: t["v"].iloc[:2] >= 2)


def test_bytes_literals_match_bytes_not_text(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    for name, k, raw in [("a", "v1", b"v1"), ("b", "v2", b"\x00\xff")]:
        ds = store.create_dataset(name)
        ds.set_attribute("k", k)
        ds.set_attribute("raw", raw)
    store.flush()
    for expression in ("k == b'v1'", "k in [b'v1']", "k > b'v0'"):
        with pytest.raises(atlas.QueryError, match="holds text: expected text"):
            store.select(expression)
    assert store.select("raw == b'v1'") == ["a"] and store.select("raw != b'v1'") == ["b"]
    assert store.select("raw in [b'\\x00\\xff']") == ["b"]
    with pytest.raises(atlas.QueryError, match="holds bytes"):
        store.select("raw == 'v1'")


def test_keys_and_arrays_no_live_dataset_has_are_no_columns_before_compact_too(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    store.create_dataset("keep").set_attribute("k", 1)
    gone = store.create_dataset("gone")
    gone.set_attribute("only_gone", 1)
    gone.define_array("x", "float64", ["n"], [1])
    store.create_dataset("lost").set_attribute("removed", 1)
    store.flush()
    store.delete_dataset("gone")
    store.open_dataset("lost").delete_attribute("removed")
    store.flush()

    def answers():
        out = [list(store.catalog().columns)]
        for call in (lambda: store.catalog(attributes=["only_gone"]),
                     lambda: store.select("removed == 1"),
                     lambda: store.catalog(arrays=["x"], attributes=[]),
                     lambda: store.select("x.max > 0")):
            with pytest.raises(atlas.QueryError) as raised:
                call()
            out.append(str(raised.value))
        return out

    before = answers()
    assert before[0] == ["k"]
    store.compact()
    assert answers() == before


def test_odd_expressions_give_the_answer_or_a_query_error(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    ds = store.create_dataset("a")
    for key, value in [("a b", 1), ("_atlas_q0", 5), ("\u00b5", 1), ("\ufb01le", 10),
                       ("file", 20), ("s", "x'`y`'z"), ("i", 1)]:
        ds.set_attribute(key, value)
    ds.define_array("x", "float64", ["n"], [1])
    ds.write_array("x", [0], np.ones(1))
    store.flush()
    # placeholders of back-quoted names are no names of the expression
    assert store.select("`a b` == 1 and _atlas_q0 == 5") == ["a"]
    assert store.select("`a b` == 1 and _atlas_q0 == 1") == []
    assert store.select("x.`max` > 0") == ["a"] and store.select("`x`.`max` > 0") == ["a"]
    # names Python's parser would read as others (NFKC) must be back-quoted
    for expression in ("\u00b5 == 1", "\ufb01le == 10", "cafe\u0301 == 1"):
        with pytest.raises(atlas.QueryError, match="back quotes"):
            store.select(expression)
    assert store.select("s == 'cafe\u0301' or i == 1") == ["a"]  # in a literal: text
    assert store.select("`\u00b5` == 1") == ["a"] and store.select("`\ufb01le` == 10") == ["a"]
    # back quotes inside any string literal are text
    assert store.select("s == '''x'`y`'z'''") == ["a"]
    assert store.select('s == """x\'`y`\'z"""') == ["a"]
    # nesting the parser itself cannot take
    for expression in ("not " * 10_000 + "i > 0", "-" * 10_000 + "1 < i"):
        with pytest.raises(atlas.QueryError, match="nests more than"):
            store.select(expression)
    long = "i in [" + ", ".join(["1"] * 50_000) + "] and nothing > 1"
    with pytest.raises(atlas.QueryError) as raised:
        store.select(long)
    assert len(str(raised.value)) < 1000
    # a statistic that does not exist, or a statistic asked for as an attribute
    with pytest.raises(atlas.QueryError, match="array 'x' has no statistic 'mean'"):
        store.select("x.mean > 0")
    with pytest.raises(atlas.QueryError, match="the max of array 'x': pick it with columns"):
        store.catalog(attributes=["x.max"])
    with pytest.raises(TypeError, match="arrays must be a list of names"):
        store.catalog(arrays=5)


def test_select_callable_on_a_clash_of_column_names_says_why(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    ds = store.create_dataset("a")
    ds.set_attribute("x.max", 1)
    ds.set_attribute("k", 1)
    ds.define_array("x", "float64", ["n"], [1])
    store.flush()
    assert store.select("k == 1") == ["a"]
    with pytest.raises(atlas.QueryError, match="select\\(callable\\) .* 'x.max' is both"):
        store.select(lambda t: t["k"] == 1)


def test_stats_by_dataset_keep_integer_types_where_some_datasets_lack_the_array(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    ds = store.create_dataset("a")
    ds.define_array("z", "int32", ["n"], [2])
    ds.write_array("z", [0], np.array([1, 5], np.int32))
    store.create_dataset("b")
    store.flush()
    got = store.array_stats_by_dataset("z")["a"]
    assert (got["min"], got["max"]) == (1, 5)
    assert type(got["min"]) is int and type(got["max"]) is int


def test_timestamps_held_as_objects_compare_with_text_too(tmp_path):
    """A column of Python dates, or of timestamps of different units across datasets (both
    object columns), matched no text at all; ordering raised numpy's own TypeError."""
    import datetime

    store = atlas.Atlas.create(tmp_path / "s")
    store.create_dataset("d0").set_attribute("day", datetime.date(2024, 1, 1))
    store.create_dataset("d1").set_attribute("day", datetime.date(1999, 12, 31))
    store.create_dataset("d2")
    store.create_dataset("m0").set_attribute("t", np.datetime64("2024-01-01T00:00", "ns"))
    store.create_dataset("m1").set_attribute("t", np.datetime64("3000-01-01T00:00", "s"))
    store.flush()
    assert store.catalog(attributes=["day", "t"], arrays=[]).dtypes.tolist() == [object] * 2
    assert store.select("day == '2024-01-01'") == ["d0"]
    assert store.select("day in ['1999-12-31', '2000-01-01']") == ["d1"]
    assert store.select("day >= '2000-01-01'") == ["d0"]
    assert store.select("day != '2024-01-01'") == ["d1"]  # (d2 has none)
    assert store.select("t == '2024-01-01'") == ["m0"]
    assert store.select("t > '2500-01-01'") == ["m1"]
    assert store.select("t >= '2023-01-01T00:00:00.000000001'") == ["m0", "m1"]
    store.create_dataset("m2").set_attribute("t", np.datetime64("2024-01-01T00:00:00.5",
                                                                "ns"))
    store.flush()  # milliseconds hold all three exactly
    assert store.select("t > '2024-01-01T00:00:00.4'") == ["m1", "m2"]
    store.create_dataset("m3").set_attribute("t", np.datetime64("2024-01-01T00:00:00.000000001",
                                                                "ns"))
    store.flush()  # nanoseconds do not reach 3000
    with pytest.raises(atlas.QueryError, match="no one unit of datetime64 holds exactly"):
        store.select("t > '2000-01-01'")
