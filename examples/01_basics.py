"""The seed README's quick start, end to end, in a temporary directory.

Create a store, define arrays (one with a NaN fill, one 0-D string), write, set attributes,
flush by leaving the ``with`` block, reopen, and read everything back.

    python examples/01_basics.py
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

import atlas


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "my_store")

        # The `with` block flushes on exit. Nothing is persisted before that.
        with atlas.Atlas.create(path, codec="zstd") as store:
            ds = store.create_dataset("jan_2024")
            ds.define_array(
                "temperature",
                dtype="float32",
                dims=["lat", "lon"],
                shape=[8, 16],
                chunk_shape=[4, 8],
                fill_value=float("nan"),  # unwritten cells read back as NaN
            )
            # fill the top half only: the bottom half stays unwritten
            ds.write_array("temperature", start=[0, 0],
                           data=np.full((4, 16), 20.0, dtype=np.float32))
            ds.define_array("station_name", dtype="string", dims=[], shape=[])
            ds.write_array("station_name", start=[], data=np.array("De Bilt", dtype=object))
            ds.set_attribute("month", 1)
            ds.set_attribute("station", "KNMI")
            ds.set_array_attribute("temperature", "units", "degC")
            print(f"created {path} with dataset {ds.name!r}, arrays {ds.list_arrays()}")
            print("stats before flush:", ds.array_stats("temperature"))

        # Reopen and read
        store = atlas.Atlas.open(path)
        ds = store.open_dataset("jan_2024")
        arr = ds.read_array("temperature")  # full read -> np.ndarray
        chunk = ds.read_array("temperature", [0, 0], [4, 8])  # partial read
        stats = ds.array_stats("temperature")  # {"row_count", "null_count", "min", "max"}
        month = ds.get_attribute("month")

        print(f"reopened: datasets {store.list_datasets()}, arrays {store.list_arrays()}")
        print(f"temperature {arr.dtype} {arr.shape}: {int(np.isnan(arr).sum())} unwritten (NaN) "
              f"cells, top-left chunk {chunk.shape} mean {float(chunk.mean())}")
        print("stats after flush:", stats)
        print("meta:", ds.array_meta("temperature"))
        print(f"attributes: {ds.attributes()}, month = {month}, "
              f"temperature units = {ds.get_array_attribute('temperature', 'units')!r}")
        print(f"station_name (0-D): {ds.read_array('station_name')[()]!r}")

        assert np.isnan(arr[4:]).all() and (arr[:4] == 20.0).all()
        assert stats == {"row_count": 128, "null_count": 64, "min": 20.0, "max": 20.0}
        assert month == 1


if __name__ == "__main__":
    main()
