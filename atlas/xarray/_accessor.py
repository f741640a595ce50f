"""The ``xr.Dataset.atlas`` accessor: ``ds.atlas.write(store, name, chunks=None,
append_dim=None)``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import xarray as xr

if TYPE_CHECKING:
    from atlas.core import Atlas, DatasetView


class AtlasAccessor:
    """Writes the Dataset it hangs off into an atlas store."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def write(self, store: Atlas, name: str,
              chunks: Mapping[str, Sequence[int]] | None = None,
              append_dim: str | None = None) -> DatasetView:
        """Same as ``store.add_xr_dataset(ds, name, chunks, append_dim)``: a new dataset, or
        with ``append_dim`` an existing one grown along that dimension; not flushed."""
        from atlas.core import Atlas
        from atlas.xarray._ingest import add_xr_dataset

        if not isinstance(store, Atlas):
            raise TypeError(f"ds.atlas.write needs an atlas.Atlas store, got "
                            f"{type(store).__name__} (open one with atlas.Atlas.open/create)")
        return add_xr_dataset(store, self._ds, name, chunks, append_dim)


def register() -> None:
    """Register the accessor once (a second registration would warn about overriding)."""
    if getattr(xr.Dataset, "atlas", None) is AtlasAccessor:  # the class-level lookup gives it
        return
    xr.register_dataset_accessor("atlas")(AtlasAccessor)
