"""xarray's own backend checks (``CFEncodedBase`` from ``xarray/tests/test_backends.py``, shipped
in the xarray wheel) run against both read paths: ``Atlas.to_xarray`` and ``engine="atlas"``.

A round trip writes the Dataset with ``Atlas.add_xr_dataset`` (``to_netcdf``'s ``encoding=`` and
``unlimited_dims=`` keywords applied to the Dataset first, as ``to_netcdf`` does) and reads it
back. Tests that cannot apply to a store of this kind are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import xarray as xr
from xarray.testing import assert_identical

pytest.importorskip("netCDF4")  # the xarray test module imports its netCDF helpers
backends = pytest.importorskip("xarray.tests.test_backends")
# fixtures the inherited tests ask for, defined in xarray's tests/conftest.py
from xarray.tests.conftest import time_unit, use_dask  # noqa: E402,F401

import atlas  # noqa: E402

NAME = "ds"

# why an inherited test cannot apply to an atlas store
NO_DUMP_TO_STORE = ("writes through xarray's AbstractWritableDataStore.dump_to_store; atlas "
                    "ingests with Atlas.add_xr_dataset, not a netCDF-style data store")
NO_APPEND = ("appends variables to an existing file (mode='a'); atlas appends along a "
             "dimension (add_xr_dataset(append_dim=...), tests/test_xarray_append.py), it "
             "adds no variables to an existing dataset")
NO_NETCDF_ENCODING_CHECKS = ("checks to_netcdf's validation of its encoding= keyword; atlas "
                             "takes the encoding from each variable's .encoding, where "
                             "unknown keys are advice, not errors")
NO_ASYNC = "atlas backend arrays have no async loading (xarray's netCDF backends neither)"
NO_IRIS = "needs iris, which is not installed"
ENCODING_AS_GIVEN = ("checks what xarray's netCDF writer fills into .encoding (a default "
                     "_FillValue, unlimited_dims as a set, to_netcdf's keyword checks); atlas "
                     "gives .encoding back as it went in (test_encoding_comes_back_as_given)")
COORDS_KEPT = ("atlas stores which variables are coordinates (a JSON list), so a name with a "
               "space stays a coordinate; netCDF's space-separated 'coordinates' attribute cannot "
               "hold it")
TO_XARRAY_EAGER = ("checks xarray's lazy backend-array protocol (_in_memory, caching, chunks=); "
                   "to_xarray reads variables stored as one chunk at once and gives the others "
                   "as dask arrays (docs/xarray.md), engine='atlas' is the lazy path")


def _apply_save_kwargs(ds: xr.Dataset, kwargs: dict) -> xr.Dataset:
    """What ``to_netcdf(encoding=..., unlimited_dims=...)`` does to the Dataset it writes."""
    kwargs = dict(kwargs)
    encoding = kwargs.pop("encoding", None)
    unlimited = kwargs.pop("unlimited_dims", None)
    if kwargs.pop("mode", "w") != "w":
        pytest.skip(NO_APPEND)
    if kwargs:
        raise TypeError(f"save keywords this harness does not translate: {sorted(kwargs)}")
    if encoding is None and unlimited is None:
        return ds
    ds = ds.copy()
    for var_name, var_encoding in (encoding or {}).items():
        ds[var_name].encoding = {**ds[var_name].encoding, **var_encoding}
    if unlimited is not None:
        ds.encoding = {**ds.encoding, "unlimited_dims": unlimited}
    return ds


class AtlasRoundtrip(backends.CFEncodedBase):
    """The parts both read paths share: writing, and the tests that cannot apply."""

    engine = "atlas"

    def create_store(self):
        pytest.skip(NO_DUMP_TO_STORE)

    def save(self, dataset, path, **kwargs):
        ds = _apply_save_kwargs(dataset, kwargs)
        with atlas.Atlas.create(path) as store:
            store.add_xr_dataset(ds, NAME)

    @contextlib.contextmanager
    def roundtrip(self, data, save_kwargs=None, open_kwargs=None,
                  allow_cleanup_failure=False):
        with backends.create_tmp_file(allow_cleanup_failure=allow_cleanup_failure) as path:
            os.remove(path) if os.path.exists(path) else None
            self.save(data, path, **(save_kwargs or {}))
            with self.open(path, **(open_kwargs or {})) as ds:
                yield ds

    def test_write_store(self):
        pytest.skip(NO_DUMP_TO_STORE)

    def test_append_write(self):
        pytest.skip(NO_APPEND)

    def test_append_overwrite_values(self):
        pytest.skip(NO_APPEND)

    def test_append_with_invalid_dim_raises(self):
        pytest.skip(NO_APPEND)

    def test_encoding_kwarg(self):
        pytest.skip(NO_NETCDF_ENCODING_CHECKS)

    def test_load_async(self):
        pytest.skip(NO_ASYNC)

    def test_coordinate_variables_after_iris_roundtrip(self):
        pytest.skip(NO_IRIS)

    def test_roundtrip_coordinates_with_space(self):
        pytest.skip(COORDS_KEPT)

    def test_default_fill_value(self):
        pytest.skip(ENCODING_AS_GIVEN)

    def test_explicitly_omit_fill_value(self):
        pytest.skip(ENCODING_AS_GIVEN)

    def test_explicitly_omit_fill_value_via_encoding_kwarg(self):
        pytest.skip(ENCODING_AS_GIVEN)

    def test_explicitly_omit_fill_value_in_coord(self):
        pytest.skip(ENCODING_AS_GIVEN)

    def test_explicitly_omit_fill_value_in_coord_via_encoding_kwarg(self):
        pytest.skip(ENCODING_AS_GIVEN)

    def test_encoding_unlimited_dims(self):
        pytest.skip(ENCODING_AS_GIVEN)

    def test_roundtrip_unsigned(self, fill_value, exp_fill_warning):
        if exp_fill_warning:  # xarray's writer replaces the uint8 fill by its int8 bit pattern
            pytest.skip(ENCODING_AS_GIVEN)
        super().test_roundtrip_unsigned(fill_value, exp_fill_warning)

    test_roundtrip_unsigned.pytestmark = backends.CFEncodedBase.test_roundtrip_unsigned.pytestmark

    def test_roundtrip_example_1_netcdf(self):
        """xarray's version is marked requires_netcdf, a module name no package provides; the
        file opens with netCDF4 here."""
        with backends.open_example_dataset("example_1.nc") as expected:
            with self.roundtrip(expected) as actual:
                assert_identical(expected, actual)

    # -- xarray's tests where atlas does more, restated with atlas's behaviour ------------------

    def test_encoding_comes_back_as_given(self):
        """Without decode keywords ``.encoding`` comes back as it went in (no default fill is
        added, an explicit ``_FillValue: None`` stays); with them, as netCDF4 reports it."""
        ds = xr.Dataset({"x": ("y", np.arange(4.0)), "i": ("y", np.arange(4, dtype="i2")),
                         "o": ("y", [np.pi, 1.0, 2.0, 3.0])}, {"y": [0.0, 1.0, 2.0, 3.0]})
        ds["x"].encoding = {"dtype": np.dtype("f4")}
        ds["o"].encoding = {"_FillValue": None}
        ds["y"].encoding = {"_FillValue": None}
        with self.roundtrip(ds) as actual:
            for name in ds.variables:
                assert actual[name].encoding.get("dtype") == ds[name].encoding.get("dtype")
                assert ("_FillValue" in actual[name].encoding) == (
                    "_FillValue" in ds[name].encoding)
            assert actual["o"].encoding["_FillValue"] is None
        with self.roundtrip(ds, open_kwargs={"mask_and_scale": True}) as actual:
            assert np.isnan(actual["x"].encoding["_FillValue"])  # netCDF's default float fill
            assert "_FillValue" not in actual["i"].encoding
            assert "_FillValue" not in actual["o"].encoding
            xr.testing.assert_allclose(actual, ds)

    def test_roundtrip_string_with_fill_value_nchar(self):
        """xarray's netCDF writer refuses a _FillValue on strings written as characters
        (NotImplementedError); atlas stores the fill and gives the missing cell back."""
        values = np.array(["ab", "cdef", np.nan], dtype=object)
        original = xr.Dataset({"x": ("t", values, {}, {"dtype": "S1", "_FillValue": b"X"})})
        with self.roundtrip(original) as actual:
            assert_identical(xr.Dataset({"x": ("t", values)}), actual)

    def test_coordinate_variables_after_dataset_roundtrip(self):
        """decode_coords="all" as in netCDF4. Without keywords every coordinate stays one:
        atlas stores the coordinate names, netCDF only its 'coordinates' attribute (which
        leaves bounds and grid mappings as data variables)."""
        original = self._create_cf_dataset()
        with self.roundtrip(original, open_kwargs={"decode_coords": "all"}) as actual:
            assert_identical(actual, original)
        with self.roundtrip(original) as actual:
            assert_identical(actual, original)

    @pytest.mark.parametrize("decoded_fn, encoded_fn", backends.MASK_AND_SCALE_DATA)
    @pytest.mark.parametrize("dtype", [np.dtype("float64"), np.dtype("float32")])
    def test_roundtrip_mask_and_scale(self, decoded_fn, encoded_fn, dtype):
        """As xarray's test, except that an encoded Dataset (packed integers with their CF
        attributes) comes back as it went in unless decode keywords ask to decode it."""
        decoded, encoded = decoded_fn(dtype), encoded_fn(dtype)
        with self.roundtrip(decoded) as actual:
            assert_identical(actual, decoded)
            for name in decoded.variables:
                assert actual[name].encoding["_FillValue"] == decoded[name].encoding["_FillValue"]
        for source in (decoded, encoded):
            with self.roundtrip(source, open_kwargs={"decode_cf": False}) as actual:
                for name in encoded.variables:
                    assert actual[name].dtype == encoded[name].dtype
                    assert actual[name].attrs["_FillValue"] == encoded[name].attrs["_FillValue"]
                backends.assert_allclose(encoded, actual, decode_bytes=False)
        with self.roundtrip(encoded) as actual:
            assert_identical(actual, encoded)
        with self.roundtrip(encoded, open_kwargs={"mask_and_scale": True}) as actual:
            for name in decoded.variables:
                assert actual[name].dtype == decoded[name].dtype
            backends.assert_allclose(decoded, actual, decode_bytes=False)

    def test_roundtrip_cftime_datetime_data(self):
        """Every cftime calendar comes back as the same objects, with the encoding it had;
        netCDF4 instead reports the time units its writer chose."""
        from xarray.tests.test_coding_times import _all_cftime_date_types

        for date_type in _all_cftime_date_types().values():
            times = [date_type(1, 1, 1), date_type(1, 1, 2)]
            expected = xr.Dataset({"t": ("t", times), "t0": times[0]})
            expected["t0"].encoding = {"units": "days since 0001-01-01"}
            with self.roundtrip(expected) as actual:
                assert_identical(actual, expected)
                assert [type(v) for v in actual.t.values] == [date_type, date_type]
                assert actual.t0.encoding["units"] == "days since 0001-01-01"
                assert "units" not in actual.t.encoding


class TestAtlasEngine(AtlasRoundtrip):
    """Read back with ``xr.open_dataset(path, engine="atlas", group=...)``."""

    @contextlib.contextmanager
    def open(self, path, **kwargs):
        with xr.open_dataset(path, engine="atlas", group=NAME, **kwargs) as ds:
            yield ds


class TestAtlasToXarray(AtlasRoundtrip):
    """Read back with ``Atlas.open(path).to_xarray(name, ...)``."""

    def test_load(self):
        pytest.skip(TO_XARRAY_EAGER)

    def test_dataset_compute(self):
        pytest.skip(TO_XARRAY_EAGER)

    def test_dataset_caching(self):
        pytest.skip(TO_XARRAY_EAGER)

    def test_orthogonal_indexing(self):
        pytest.skip(TO_XARRAY_EAGER)

    def test_vectorized_indexing(self):
        pytest.skip(TO_XARRAY_EAGER)

    def test_vectorized_indexing_negative_step(self, use_dask):
        pytest.skip(TO_XARRAY_EAGER)

    def test_ondisk_after_print(self):
        pytest.skip(TO_XARRAY_EAGER)

    @contextlib.contextmanager
    def open(self, path, **kwargs):
        yield atlas.Atlas.open(path).to_xarray(NAME, **kwargs)
