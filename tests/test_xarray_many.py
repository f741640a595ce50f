"""``Atlas.to_xarray_many``: lazy stacking, coordinates that differ between datasets, and
``join="outer"`` for ragged datasets, checked against ``xr.concat``."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import atlas
from atlas.xarray import _many


def year(y: int, n_time: int = 3) -> xr.Dataset:
    """A CESM-like yearly file: its own times, the same grid, a per-file scalar."""
    rng = np.random.default_rng(y)
    time = pd.date_range(f"{y}-01-01", periods=n_time, freq="MS").values
    return xr.Dataset(
        {"temp": (("time", "lat"), rng.normal(10, 2, (n_time, 4)).astype(np.float32),
                  {"units": "degC"}),
         "count": (("time",), np.arange(n_time, dtype=np.int16) + y),
         "label": (("lat",), np.array([f"{y}-{i}" for i in range(4)], dtype=object))},
        coords={"time": time, "lat": np.linspace(-3, 3, 4),
                "run": ((), f"run-{y}"), "lon": (("lat",), np.arange(4.0) + 100)},
        attrs={"year": y})


def concat(datasets: list[xr.Dataset], names: list[str], **kwargs) -> xr.Dataset:
    """The reference: xarray's own concat, coordinates compared ("different")."""
    out = xr.concat(datasets, dim="dataset", data_vars="all", coords="different",
                    compat="equals", combine_attrs="override", **kwargs)
    return out.assign_coords(dataset=np.array(names, dtype=object))


def store_of(tmp_path, datasets: dict[str, xr.Dataset], **chunks) -> atlas.Atlas:
    with atlas.Atlas.create(tmp_path / "store") as store:
        for name, ds in datasets.items():
            store.add_xr_dataset(ds, name, chunks=chunks or None)
    return atlas.Atlas.open(tmp_path / "store")


def test_differing_indexed_coordinates_are_refused_by_exact_and_aligned_by_outer(tmp_path):
    datasets = {"y2000": year(2000), "y2001": year(2001), "y2002": year(2002)}
    store = store_of(tmp_path, datasets)
    with pytest.raises(ValueError, match="'time' of dataset 'y2001' differs.*'y2000'"):
        store.to_xarray_many(list(datasets))
    outer = store.to_xarray_many(list(datasets), join="outer")
    expected = concat(list(datasets.values()), list(datasets), join="outer")
    xr.testing.assert_identical(outer.compute(), expected)
    assert outer["count"].dtype == expected["count"].dtype == np.float32  # int16 + NaN padding


def test_coordinates_that_differ_gain_the_stacking_dimension(tmp_path):
    datasets = {f"m{i}": year(2000).assign_coords(run=f"run-{i}", lon=("lat", np.arange(4.0) + i))
                for i in range(3)}
    datasets["m1"]["temp"] += 1
    store = store_of(tmp_path, datasets)
    many = store.to_xarray_many(list(datasets))
    assert many["run"].dims == ("dataset",) and many["lon"].dims == ("dataset", "lat")
    assert many["lat"].dims == ("lat",)  # the same everywhere: shared
    xr.testing.assert_identical(many.compute(), concat(list(datasets.values()), list(datasets)))
    # identical coordinates stay shared
    same = store_of(tmp_path / "same", {"a": year(2000), "b": year(2000)})
    assert same.to_xarray_many(["a", "b"])["lon"].dims == ("lat",)


@pytest.mark.parametrize("chunked", [False, True])
def test_ragged_profiles_with_a_depth_coordinate_are_padded_like_xr_concat(tmp_path, chunked):
    def profile(n: int, seed: int) -> xr.Dataset:
        rng = np.random.default_rng(seed)
        return xr.Dataset(
            {"temp": ("depth", rng.normal(5, 1, n)),
             "flag": ("depth", rng.integers(0, 9, n).astype(np.int32)),
             "qc": ("depth", np.array(["A", "B", "C", "D", "E"][:n])),
             "when": ("depth", np.arange(n).astype("datetime64[D]").astype("datetime64[ns]"))},
            coords={"depth": np.arange(n) * 10.0})
    datasets = {"p0": profile(5, 0), "p1": profile(3, 1), "p2": profile(4, 2)}
    store = store_of(tmp_path, datasets, **({"temp": [2]} if chunked else {}))
    with pytest.raises(ValueError, match="'depth' of dataset 'p1'"):
        store.to_xarray_many(list(datasets))
    outer = store.to_xarray_many(list(datasets), join="outer").compute()
    expected = concat(list(datasets.values()), list(datasets), join="outer")
    xr.testing.assert_identical(outer, expected)
    for name in ("temp", "flag", "qc", "when"):
        assert outer[name].dtype == expected[name].dtype, name


def test_ragged_dimensions_without_a_coordinate_are_padded_at_the_end(tmp_path):
    """xr.concat cannot align dimensions that have no coordinate; to_xarray_many pads them at
    the end with the same fill (checked against numpy)."""
    lengths = {"a": 4, "b": 2, "c": 3}
    datasets = {k: xr.Dataset({"v": ("level", np.arange(n, dtype=np.int64) + 10 * i),
                               "s": ("level", np.array(["x"] * n))})
                for i, (k, n) in enumerate(lengths.items())}
    store = store_of(tmp_path, datasets)
    with pytest.raises(ValueError, match="dimension 'level' has size 2 in dataset 'b'"):
        store.to_xarray_many(list(lengths))
    outer = store.to_xarray_many(list(lengths), join="outer").compute()
    expected = np.full((3, 4), np.nan)
    for row, (k, n) in enumerate(lengths.items()):
        expected[row, :n] = datasets[k]["v"].values
    np.testing.assert_array_equal(outer["v"].values, expected)  # int64 -> float64 with NaN
    strings = outer["s"].values
    assert strings.dtype == object  # <U1 -> object with NaN, as xr.concat(join="outer")
    assert pd.isnull(strings).tolist() == [[False] * 4, [False, False, True, True],
                                           [False, False, False, True]]
    assert set(strings[~pd.isnull(strings)]) == {"x"}


def test_stacking_is_lazy_and_reads_each_stored_chunk_once(tmp_path, monkeypatch):
    datasets = {f"d{i}": year(2000) for i in range(5)}
    store = store_of(tmp_path, datasets, temp=[2, 2])
    calls = []
    original = atlas.Atlas.read_array_across_stacked

    def spy(self, array, names, start=None, shape=None, out=None):
        calls.append((array, tuple(names), tuple(start or ()), tuple(shape or ())))
        return original(self, array, names, start, shape, out)

    monkeypatch.setattr(atlas.Atlas, "read_array_across_stacked", spy)
    many = store.to_xarray_many(list(datasets))
    assert not [c for c in calls if c[0] == "temp"]  # nothing read yet
    assert many["temp"].chunks == ((5,), (2, 1), (2, 2))  # stored chunks, datasets together
    many["temp"].compute()
    temp = [c for c in calls if c[0] == "temp"]
    assert len(temp) == 4 and len(set(temp)) == 4  # one stacked read per stored chunk
    # a small task budget: fewer datasets per task, still every chunk read once
    calls.clear()
    monkeypatch.setattr(_many, "TASK_BYTES", 2 * 2 * 4 * 2)
    many = store.to_xarray_many(list(datasets))
    assert many["temp"].chunks[0] == (2, 2, 1)
    xr.testing.assert_identical(many.compute(), concat(list(datasets.values()), list(datasets)))
    assert len([c for c in calls if c[0] == "temp"]) == 3 * 4


def test_the_graph_runs_on_processes(tmp_path):
    """Tasks pickle as the store's description and reopen it in the worker."""
    import dask

    datasets = {"y2000": year(2000), "y2001": year(2001)}
    store = store_of(tmp_path, datasets)
    many = store.to_xarray_many(list(datasets), join="outer")
    with dask.config.set(scheduler="processes", num_workers=2):
        computed = many.compute()
    xr.testing.assert_identical(computed, concat(list(datasets.values()), list(datasets),
                                                 join="outer"))


def test_bad_arguments_are_refused(tmp_path):
    store = store_of(tmp_path, {"a": year(2000), "b": year(2000).drop_vars("label")})
    with pytest.raises(ValueError, match="join must be one of"):
        store.to_xarray_many(["a"], join="inner")
    with pytest.raises(KeyError, match="'b' has no variable 'label'"):
        store.to_xarray_many(["a", "b"])
    with pytest.raises(TypeError):
        store.to_xarray_many("a")


def test_a_variable_that_is_a_coordinate_in_one_dataset_only_is_refused_either_way(tmp_path):
    """The first dataset decided: 'w' came back a coordinate or a data variable by the order
    of the names (xr.concat raises)."""
    data = xr.Dataset({"v": ("z", [1, 2]), "w": ("z", [1, 2])})
    coord = xr.Dataset({"v": ("z", [1, 2])}, coords={"w": ("z", [7, 8])})
    with pytest.raises(ValueError, match="coordinate in some datasets but not others"):
        xr.concat([data, coord], dim="k")
    store = store_of(tmp_path, {"c": data, "e": coord})
    for names in (["c", "e"], ["e", "c"]):
        with pytest.raises(ValueError, match="cannot stack 'w': it is a"):
            store.to_xarray_many(names)


def each_alone(store: atlas.Atlas, names: list[str]) -> xr.Dataset:
    """The reference for datasets that decode differently: each as its own ``to_xarray``
    gives it, stacked by ``xr.concat``."""
    return concat([store.to_xarray(name) for name in names], names)


def test_datetime_and_timedelta_units_that_differ_stack_in_the_finest_unit(tmp_path):
    """Every dataset's times as its own unit gives them, none truncated to the first's."""
    a = xr.Dataset({"t": ("x", np.array(["2000-01-01", "2000-01-02"], "datetime64[D]")),
                    "dt": ("x", np.array([1, 2], "timedelta64[s]"))})
    b = xr.Dataset({"t": ("x", np.array(["2000-01-01T06:30:00.123456789",
                                         "2000-01-02T18:00:00.5"], "datetime64[ns]")),
                    "dt": ("x", np.array([1500, 2], "timedelta64[ms]"))})
    store = store_of(tmp_path, {"a": a, "b": b})
    many = store.to_xarray_many(["a", "b"])
    expected = each_alone(store, ["a", "b"])
    xr.testing.assert_identical(many.compute(), expected)
    assert many["t"].dtype == expected["t"].dtype == np.dtype("datetime64[ns]")
    assert many["dt"].dtype == expected["dt"].dtype == np.dtype("timedelta64[ms]")


@pytest.mark.parametrize("first, second", [
    (np.array([True, False, True]), np.array([7, 0, 200], "uint8")),
    (np.array([1, 2, 3], "timedelta64[s]"), np.array([1, 2, 3], "int64")),
    (np.array([1, 2, 3], "int64"), np.array([1, 2, 3], "timedelta64[s]")),
], ids=["bool-uint8", "timedelta-int64", "int64-timedelta"])
def test_restored_dtypes_that_would_change_values_are_refused(tmp_path, first, second):
    """The same stored numbers mean other values (bool, timedelta units, plain integers)."""
    store = store_of(tmp_path, {"a": xr.Dataset({"v": ("x", first)}),
                                "b": xr.Dataset({"v": ("x", second)})})
    message = (f"cannot stack 'v': dataset 'b' gives it as {second.dtype}, "
               f"dataset 'a' as {first.dtype}")
    with pytest.raises(ValueError, match=re.escape(message)):
        store.to_xarray_many(["a", "b"])


@pytest.mark.parametrize("chunked", [False, True])
def test_each_dataset_masks_strings_with_its_own_fill_value(tmp_path, chunked):
    """A later dataset's own fill is masked; a real value equal to another's fill is kept."""
    a = xr.Dataset({"s": ("x", np.array(["a", None, "c"], object))})
    a["s"].encoding["_FillValue"] = "NA"
    b = xr.Dataset({"s": ("x", np.array(["a", None, "c"], object))})
    b["s"].encoding["_FillValue"] = "XX"
    c = xr.Dataset({"s": ("x", np.array(["NA", "b", "c"], object))})  # no fill: "NA" is text
    store = store_of(tmp_path, {"a": a, "b": b, "c": c}, **({"s": [2]} if chunked else {}))
    many = store.to_xarray_many(["a", "b", "c"]).compute()
    xr.testing.assert_identical(many, each_alone(store, ["a", "b", "c"]))
    assert pd.isnull(many["s"].values).tolist() == [[False, True, False]] * 2 + [[False] * 3]


def packed_v() -> xr.Dataset:
    ds = xr.Dataset({"v": ("x", np.array([1.5, np.nan]))})
    ds["v"].encoding.update({"dtype": "int16", "scale_factor": 0.5, "_FillValue": np.int16(-1)})
    return ds


def cftime_v() -> xr.Dataset:
    import cftime

    return xr.Dataset({"v": ("x", np.array([cftime.DatetimeNoLeap(2000, 1, 1),
                                            cftime.DatetimeNoLeap(2000, 1, 2)]))})


@pytest.mark.parametrize("plain, decoded, how", [
    (np.array([1, 2], "int16"), packed_v, "packed"),
    (np.array([1, 2], "int64"), cftime_v, "cftime"),
], ids=["packed", "cftime"])
def test_decoded_variables_after_a_plain_first_dataset_are_refused(tmp_path, plain, decoded,
                                                                  how):
    """Packed and cftime variables must decode alike in every dataset, whichever comes first."""
    store = store_of(tmp_path, {"a": xr.Dataset({"v": ("x", plain)}), "b": decoded()})
    with pytest.raises(ValueError, match=f"'v': dataset 'b' stores it as .*{how}.*, "
                                         "dataset 'a' as plain values; .*not decode alike"):
        store.to_xarray_many(["a", "b"])
    with pytest.raises(ValueError, match=f"'v': dataset 'a' stores it as plain values, "
                                         f"dataset 'b' as .*{how}"):
        store.to_xarray_many(["b", "a"])


def test_non_index_coordinates_of_other_dtypes_stack_in_the_promoted_dtype(tmp_path):
    """As xr.concat: values of every dataset kept (float lat after int lat), and coordinates
    that are equal once promoted stay shared, in the first dataset's dtype."""
    def grid(lat, when) -> xr.Dataset:
        return xr.Dataset({"v": ("x", [1.0, 2.0])},
                          coords={"lat": ("x", lat), "when": ((), np.datetime64(when))})
    datasets = {"a": grid(np.array([10, 20], "int64"), "2000-01-01"),
                "b": grid(np.array([10.7, 20.2]), "2000-01-01T00:00:00.5")}
    store = store_of(tmp_path, datasets)
    many = store.to_xarray_many(list(datasets))
    expected = each_alone(store, list(datasets))
    xr.testing.assert_identical(many.compute(), expected)
    assert many["lat"].dims == ("dataset", "x") and many["lat"].dtype == np.float64
    same = {"a": grid(np.array([10, 20], "int64"), "2000-01-01"),
            "b": grid(np.array([10.0, 20.0]), "2000-01-01")}
    store = store_of(tmp_path / "same", same)
    many = store.to_xarray_many(list(same))
    xr.testing.assert_identical(many.compute(), each_alone(store, list(same)))
    assert many["lat"].dims == ("x",) and many["lat"].dtype == np.int64


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("first, second", [("int32", "int64"), ("float64", "float32"),
                                           ("int16", "float32"), ("uint8", "int64")])
def test_data_variables_of_other_numeric_dtypes_stack_in_the_promoted_dtype(
        tmp_path, chunked, first, second):
    """As xr.concat: each dataset's values kept exactly in the promoted dtype (one stacked read
    cannot mix stored dtypes: each dtype is read apart)."""
    rng = np.random.default_rng(5)
    values = {name: rng.integers(0, 100, 6).astype(dtype) + (2**40 if dtype == "int64" else 0)
              for name, dtype in (("a", first), ("b", second), ("c", first))}
    datasets = {name: xr.Dataset({"v": ("x", v)}) for name, v in values.items()}
    store = store_of(tmp_path, datasets, **({"v": (2,)} if chunked else {}))
    many = store.to_xarray_many(list(datasets))
    expected = each_alone(store, list(datasets))
    xr.testing.assert_identical(many.compute(), expected)
    assert many["v"].dtype == expected["v"].dtype == np.result_type(first, second)


@pytest.mark.parametrize("join", ["exact", "outer"])
def test_a_text_index_coordinate_keeps_its_fixed_width_dtype(tmp_path, join):
    """It came back object (the pandas index's values); xr.concat gives <U of the widest."""
    a = xr.Dataset({"v": ("z", [1, 2])}, coords={"z": ["a", "bb"]})
    b = a if join == "exact" else xr.Dataset({"v": ("z", [4, 5])}, coords={"z": ["ccc", "a"]})
    store = store_of(tmp_path, {"a": a, "b": b})
    got = store.to_xarray_many(["a", "b"], concat_dim="k", join=join)
    expected = xr.concat([a, b], dim="k", join=join)
    assert got["z"].dtype == expected["z"].dtype
    np.testing.assert_array_equal(got["z"].values, expected["z"].values)
    np.testing.assert_array_equal(got["v"].values, expected["v"].values)
