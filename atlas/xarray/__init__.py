"""xarray and dask integration: ``add_xr_dataset``, ``to_xarray``, ``to_xarray_many``,
``open_mfdataset``, the ``xr.Dataset.atlas`` accessor and the ``engine="atlas"`` backend.

Importing this package does not import xarray or dask; the names below load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AtlasAccessor", "AtlasBackendEntrypoint", "add_xr_dataset", "open_mfdataset",
           "to_xarray", "to_xarray_many"]

_WHERE = {
    "AtlasAccessor": "atlas.xarray._accessor",
    "AtlasBackendEntrypoint": "atlas.xarray.backend",
    "add_xr_dataset": "atlas.xarray._ingest",
    "open_mfdataset": "atlas.xarray._combine",
    "to_xarray": "atlas.xarray._read",
    "to_xarray_many": "atlas.xarray._many",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'atlas.xarray' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
