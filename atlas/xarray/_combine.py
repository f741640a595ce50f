"""``Atlas.open_mfdataset``: datasets of the store combined along real dimensions, with the
semantics of ``xr.open_mfdataset`` (``combine="by_coords"`` orders them by their coordinate
values, ``combine="nested"`` concatenates them in the order given along ``concat_dim``).

Each dataset is opened lazily (every variable but the dimension coordinates, which xarray reads
to combine, is a dask array with one task per stored chunk) and the combining itself is
xarray's: ``xr.combine_by_coords`` / ``xr.combine_nested`` with ``xr.open_mfdataset``'s own
defaults, so the result is what ``xr.open_mfdataset`` gives for the same datasets as files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from atlas.xarray._decode import DECODERS
from atlas.xarray._read import to_xarray

if TYPE_CHECKING:
    import xarray as xr

    from atlas.core import Atlas

COMBINES = ("by_coords", "nested")
COMBINE_KEYWORDS = ("compat", "data_vars", "coords", "join", "fill_value")
OPEN_KEYWORDS = ("decode_cf", "drop_variables", *DECODERS)


def open_mfdataset(store: Atlas, names: Sequence, concat_dim: Any = None,
                   combine: str = "by_coords", preprocess: Callable | None = None,
                   combine_attrs: str = "override", **kwargs: Any) -> xr.Dataset:
    """The datasets ``names`` combined into one ``xr.Dataset`` (see the module docstring).

    ``names`` is a list of dataset names, or for ``combine="nested"`` a nested list with one
    level per entry of ``concat_dim``. ``kwargs`` are ``xr.open_mfdataset``'s combining options
    (``compat``, ``data_vars``, ``coords``, ``join``, ``fill_value``) and ``to_xarray``'s
    opening options (``decode_cf``, ``mask_and_scale``, ..., ``drop_variables``).
    """
    import xarray as xr

    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"names must be a list of dataset names, got {type(names).__name__}")
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {list(COMBINES)}, got {combine!r}")
    unknown = sorted(set(kwargs) - set(COMBINE_KEYWORDS) - set(OPEN_KEYWORDS))
    if unknown:
        raise TypeError(f"unknown keywords {unknown}; open_mfdataset takes "
                        f"{list(COMBINE_KEYWORDS)} and {list(OPEN_KEYWORDS)}")
    if combine == "by_coords" and concat_dim is not None:
        raise ValueError("combine='by_coords' orders the datasets by their coordinates and "
                         "takes no concat_dim; use combine='nested' with concat_dim to "
                         "concatenate them in the order given")
    opening = {k: v for k, v in kwargs.items() if k in OPEN_KEYWORDS}
    combining = {k: v for k, v in kwargs.items() if k in COMBINE_KEYWORDS}

    def one(name: str) -> xr.Dataset:
        ds = to_xarray(store, name, _all_lazy=True, **opening)
        return ds if preprocess is None else preprocess(ds)

    if combine == "nested":
        datasets = _nested(names, one)
        if not datasets:
            raise ValueError("names is empty; nothing to combine")
        return xr.combine_nested(datasets, concat_dim=concat_dim, combine_attrs=combine_attrs,
                                 **combining)
    flat = list(names)
    if not flat:
        raise ValueError("names is empty; nothing to combine")
    return xr.combine_by_coords([one(name) for name in flat], combine_attrs=combine_attrs,
                                **combining)


def _nested(names: Any, one: Callable[[str], Any]) -> Any:
    if isinstance(names, str):
        return one(names)
    return [_nested(item, one) for item in names]
