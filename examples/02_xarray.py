"""Round-trip an xarray Dataset through an atlas store, both ways of writing it.

Run: python examples/02_xarray.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

import atlas


def make_month(month: int) -> xr.Dataset:
    rng = np.random.default_rng(month)
    time = np.arange(f"2024-{month:02d}-01", f"2024-{month:02d}-04", dtype="datetime64[D]")
    return xr.Dataset(
        data_vars={
            "temperature": (("time", "lat", "lon"),
                            rng.normal(15, 5, (len(time), 8, 16)).astype(np.float32),
                            {"units": "degC", "long_name": "surface temperature",
                             "valid_range": [-60.0, 60.0]}),
            "station_count": (("lat",), rng.integers(0, 20, 8).astype(np.int16)),
        },
        coords={"time": time.astype("datetime64[ns]"),
                "lat": np.linspace(50, 54, 8, dtype=np.float32),
                "lon": np.linspace(3, 7, 16, dtype=np.float32)},
        attrs={"month": month, "station": "KNMI"},
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="atlas-example-") as root:
        path = Path(root) / "store"
        jan, feb = make_month(1), make_month(2)
        jan["temperature"].encoding["_FillValue"] = np.float32(np.nan)

        with atlas.Atlas.create(path) as store:
            store.add_xr_dataset(jan, "jan_2024")  # store-side method
            feb.atlas.write(store, "feb_2024")  # the xr.Dataset.atlas accessor, same effect
        # the with block flushed: both datasets are on disk now

        store = atlas.Atlas.open(path)
        print("datasets:", store.list_datasets())
        back = store.to_xarray("jan_2024")
        xr.testing.assert_identical(jan, back)
        xr.testing.assert_identical(feb, store.to_xarray("feb_2024"))
        print(back)

        # per-variable attributes are per-array attributes in the store
        view = store.open_dataset("jan_2024")
        print("temperature attributes:", view.array_attributes("temperature"))
        print("temperature fill value:", view.array_fill_value("temperature"))

        # many datasets stacked along a new dimension, lazily (dask, one bulk read per stored
        # chunk). The months have different times: join="exact" (the default) refuses to
        # label February with January's times; join="outer" aligns them on all six days
        try:
            store.to_xarray_many(["jan_2024", "feb_2024"], concat_dim="month")
        except ValueError as err:
            print("join='exact':", err)
        both = store.to_xarray_many(["jan_2024", "feb_2024"], concat_dim="month", join="outer")
        print("stacked temperature:", dict(both["temperature"].sizes))
        assert both["temperature"].sel(month="feb_2024", time="2024-01-02").isnull().all()
        xr.testing.assert_equal(both["temperature"].sel(month="feb_2024", drop=True)
                                .dropna("time"),
                                feb["temperature"])

        # the same store through xarray's own entry points
        opened = xr.open_dataset(path, engine="atlas", group="feb_2024")
        xr.testing.assert_identical(opened, feb)
        tree = xr.open_datatree(path, engine="atlas")
        print("groups:", sorted(tree.children))


if __name__ == "__main__":
    main()
