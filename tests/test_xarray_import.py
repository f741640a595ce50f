"""``import atlas`` stays light (no xarray, no dask) and still gives ``xr.Dataset.atlas`` in
either import order. Each check runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_atlas_imports_neither_xarray_nor_dask():
    out = run("import atlas, sys\n"
              "assert 'xarray' not in sys.modules, 'xarray was imported'\n"
              "assert 'dask' not in sys.modules, 'dask was imported'\n"
              "print('ok')")
    assert out.strip() == "ok"


@pytest.mark.parametrize("first", ["atlas", "xarray"])
def test_accessor_is_registered_in_either_import_order(first):
    second = "xarray" if first == "atlas" else "atlas"
    out = run(f"import warnings\nwarnings.simplefilter('error')\n"
              f"import {first}\nimport {second}\nimport xarray as xr\n"
              "from atlas.xarray import AtlasAccessor\n"
              "acc = xr.Dataset().atlas\n"
              "assert isinstance(acc, AtlasAccessor), type(acc)\n"
              "from atlas.xarray._accessor import register\n"
              "register()  # a second registration is a no-op, not a warning\n"
              "import importlib.machinery as m\n"
              "assert isinstance(xr.__spec__.loader, m.SourceFileLoader), xr.__spec__.loader\n"
              "assert xr.__loader__ is xr.__spec__.loader\n"
              "import sys\n"
              "assert not [f for f in sys.meta_path if 'Xarray' in type(f).__name__]\n"
              "print('ok')")
    assert out.strip() == "ok"
