"""``import atlas`` stays light: under a second, without the compiler or the optional stacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import atlas

_PROBE = """
import json, sys, time
start = time.perf_counter()
import atlas
elapsed = time.perf_counter() - start
heavy = ["numba", "llvmlite", "xarray", "dask", "pandas", "obstore", "netCDF4", "matplotlib",
         "distributed", "scipy", "zarr"]
print(json.dumps({"seconds": elapsed, "loaded": [m for m in heavy if m in sys.modules]}))
"""


@pytest.fixture(scope="module")
def probe():
    """Import atlas in fresh interpreters; keep the fastest of three (the machine is shared)."""
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                             timeout=60, check=True)
        runs.append(json.loads(out.stdout))
    return min(runs, key=lambda r: r["seconds"])


def test_import_atlas_takes_under_a_second(probe):
    assert probe["seconds"] < 1.0, probe


def test_import_atlas_does_not_import_numba_or_the_optional_stacks(probe):
    assert probe["loaded"] == [], probe


def test_the_public_names_are_exported():
    import atlas

    for name in ("Atlas", "DatasetView", "AtlasError", "ConflictError", "CorruptionError",
                 "OutOfBoundsError", "StoreNotFoundError"):
        assert name in atlas.__all__ and hasattr(atlas, name)
    assert isinstance(atlas.__version__, str)


_READER = """
import json, sys
import numpy as np
import atlas

store = atlas.Atlas.open(sys.argv[1], read_only=True)
seen = ["numba" in sys.modules]
names = store.list_datasets()
store.open_dataset(names[0]).array_meta("v")
seen.append("numba" in sys.modules)
model = np.arange(40 * 30, dtype=np.float64).reshape(40, 30)
got = store.open_dataset("d1").read_array("v", [1, 2], [3, 4])  # inside one chunk: one box
assert np.array_equal(got, model[1:4, 2:6] + 1)
seen.append("numba" in sys.modules)
got = store.open_dataset("d1").read_array("v", [1, 2], [20, 20])  # boxes of 9 chunks
assert np.array_equal(got, model[1:21, 2:22] + 1)
seen.append("numba" in sys.modules)
print(json.dumps(seen))
"""


def test_opening_and_listing_never_load_numba_and_a_read_does(tmp_path):
    """The kernels are the one implementation of scatter: a read of many boxes pays for
    loading them; opening and listing a store never do, nor does a read of one box (a copy
    numpy makes in one call: a new process's first small read)."""
    path = tmp_path / "s"
    model = np.arange(40 * 30, dtype=np.float64).reshape(40, 30)
    with atlas.Atlas.create(path) as store:
        for i in range(2):
            ds = store.create_dataset(f"d{i}")
            ds.define_array("v", "float64", ["y", "x"], [40, 30], chunk_shape=[8, 8])
            ds.write_array("v", [0, 0], model + i)
    out = subprocess.run([sys.executable, "-c", _READER, str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [False, False, False, True]


_STACKED_READER = """
import json, sys
import numpy as np
import atlas

store = atlas.Atlas.open(sys.argv[1], read_only=True)
want = np.arange(500, dtype=np.float64) / 7
first = store.read_array_across_stacked("lat")
second = store.read_array_across_stacked("lat")  # the block from the handle's cache
assert np.array_equal(first, want) and np.array_equal(second, want)
print(json.dumps(["numba" in sys.modules, len(store._blocks._blocks)]))
"""


def test_a_stacked_read_of_one_chunk_arrays_decodes_into_place_without_numba(tmp_path):
    """A block whose chunks are one stretch of the output is decoded straight into it, also
    when the read keeps blocks in the handle's cache: no scatter kernel, so a new process's
    first stacked read of 0-D values does not load Numba (~1 s here)."""
    path = tmp_path / "s"
    with atlas.Atlas.create(path) as store:
        store.write_array_across_stacked("lat", [f"p{i}" for i in range(500)],
                                         np.arange(500, dtype=np.float64) / 7)
    out = subprocess.run([sys.executable, "-c", _STACKED_READER, str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [False, 1]
