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
from atlas import kernels

store = atlas.Atlas.open(sys.argv[1], read_only=True)
model = np.arange(40 * 30, dtype=np.float64).reshape(40, 30)
seen = []
def read(name, start, shape):
    got = store.open_dataset(name).read_array("v", start, shape)
    window = tuple(slice(a, a + b) for a, b in zip(start, shape))
    assert np.array_equal(got, model[window] + int(name[1:])), name
    seen.append("numba" in sys.modules)
read("d0", [3, 4], [20, 9])
read("d1", [0, 0], [40, 30])
kernels.NUMPY_BUDGET = kernels._numpy_spent + 20  # the next read of >20 chunks loads the kernels
read("d2", [1, 2], [38, 27])
read("d3", [5, 5], [2, 2])
print(json.dumps(seen))
"""


def test_reads_load_numba_only_once_numpy_has_spent_its_budget(tmp_path):
    path = str(tmp_path / "s")
    store = atlas.Atlas.create(path)
    model = np.arange(40 * 30, dtype=np.float64).reshape(40, 30)
    for i in range(4):
        ds = store.create_dataset(f"d{i}")
        ds.define_array("v", "float64", ["y", "x"], [40, 30], [8, 8])  # 5 x 4 chunks
        ds.write_array("v", [0, 0], model + i)
    store.flush()
    out = subprocess.run([sys.executable, "-c", _READER, path], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    # small reads stay in numpy; once over budget the kernels load and are used from then on
    assert json.loads(out.stdout) == [False, False, True, True]
