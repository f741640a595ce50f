"""xarray's decode keywords (``decode_cf``, ``mask_and_scale``, ``decode_times``, ...) on both read
paths, ``xr.open_dataset(..., engine="atlas")`` and ``Atlas.to_xarray``.

Without keywords the store gives back each Dataset as it went in. With keywords, the result is
what xarray gives when it opens a netCDF4 file written from that Dataset with the same keywords:
the Dataset is CF-encoded the way ``to_netcdf`` encodes it (xarray's own coders, driven by each
variable's kept ``.encoding``: units, calendar, on-disk dtype, packing, fill) and decoded again
by ``xarray.decode_cf`` with the keywords. Numeric and time variables stay lazy (dask, one task
per stored chunk); strings, object arrays and times whose encoding does not name both
``units`` and ``dtype`` (whose encoding depends on the values) are read when opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xarray as xr

# the encoding keys a netCDF4 file keeps besides attributes (storage settings)
FILE_ENCODING_KEYS = frozenset({
    "zlib", "complevel", "fletcher32", "contiguous", "chunksizes", "shuffle", "compression",
    "significant_digits", "quantize_mode", "blosc_shuffle", "szip_coding",
    "szip_pixels_per_block", "endian", "least_significant_digit"})
DECODERS = ("mask_and_scale", "decode_times", "decode_timedelta", "decode_coords",
            "use_cftime", "concat_characters")


def resolve(decode_cf: bool | None, decoders: Mapping[str, Any]) -> dict[str, Any]:
    """The decode keywords that were given, as ``xr.open_dataset`` hands them to a backend:
    ``decode_cf=False`` turns every decoder off, keywords left at None are dropped."""
    if decode_cf is not None and not isinstance(decode_cf, bool):
        raise TypeError(f"decode_cf must be True, False or None, got {decode_cf!r}")
    unknown = sorted(set(decoders) - set(DECODERS))
    if unknown:
        raise TypeError(f"unknown decode keywords {unknown}; expected decode_cf, "
                        f"drop_variables or some of {list(DECODERS)}")
    given = {}
    for key in DECODERS:
        value = False if decode_cf is False else decoders.get(key)
        if value is not None:
            given[key] = value
    return given


def redecode(ds: xr.Dataset, keywords: Mapping[str, Any],
             chunk_shapes: Mapping[Any, tuple[int, ...]]) -> xr.Dataset:
    """``ds`` as xarray decodes a netCDF4 file written from it, with ``keywords``.

    ``chunk_shapes`` gives the stored chunk shape of each variable; lazily indexed variables
    become dask arrays of those chunks so that encoding them reads nothing.
    """
    import numpy as np
    import xarray as xr
    from xarray.backends.common import ensure_dtype_not_object
    from xarray.coding.strings import (
        CharacterArrayCoder,
        EncodedStringCoder,
        is_unicode_dtype,
    )

    variables = {name: _lazy_or_loaded(var, chunk_shapes.get(name))
                 for name, var in ds.variables.items()}
    source = xr.Dataset({k: v for k, v in variables.items() if k not in ds.coords},
                        {k: v for k, v in variables.items() if k in ds.coords}, ds.attrs)
    encoded, attrs = xr.conventions.encode_dataset_coordinates(source)
    encoded, attrs = xr.conventions.cf_encoder(encoded, attrs)
    for name, var in encoded.items():
        # what xarray's netCDF4 writer does after the CF coders: object arrays get a dtype
        # (strings a variable-length one), strings written as characters become char arrays
        var = ensure_dtype_not_object(var, name=name)
        for coder in (EncodedStringCoder(allows_unicode=True), CharacterArrayCoder()):
            var = coder.encode(var, name=name)
        # text the netCDF4 writer stores as variable-length strings (its _nc4_dtype), which
        # its reader gives as str objects marked dtype=str (decoded to fixed width, <U)
        vlen = var.encoding.get("dtype") is str or is_unicode_dtype(var.dtype)
        # a file keeps only its storage settings; decoding rebuilds the rest from attributes
        var.encoding = {k: v for k, v in var.encoding.items() if k in FILE_ENCODING_KEYS}
        if vlen:
            texts = np.array([v.decode("utf-8") if isinstance(v, bytes) else v
                              for v in np.asarray(var.values, dtype=object).reshape(-1)],
                             dtype=object).reshape(var.shape)
            var = xr.Variable(var.dims, texts, var.attrs, {**var.encoding, "dtype": str})
        encoded[name] = var
    out = xr.decode_cf(xr.Dataset(encoded, attrs=attrs), **keywords)
    out.encoding = dict(ds.encoding)
    return out


def _lazy_or_loaded(var: xr.Variable, chunk_shape: tuple[int, ...] | None) -> xr.Variable:
    """``var`` with data xarray's coders can encode without reading it (dask), or loaded."""
    import numpy as np

    from atlas.xarray._ingest import _is_dask

    data = var._data
    if isinstance(data, np.ndarray) or type(data).__name__ == "PandasIndexingAdapter":
        return var
    kind = var.dtype.kind
    # times are encoded as to_netcdf encodes them: loaded (xarray's lazy encoder differs
    # even with units and dtype given: float64 arithmetic for a float32 encoding, a coarser
    # unit, and an error for times its int units cannot hold, which the eager one
    # serializes in a finer unit)
    lazy = kind in "iufbc"
    if not lazy:
        return var.load() if not _is_dask(data) else var.compute()
    if _is_dask(data) or chunk_shape is None:
        return var
    return var.chunk(dict(zip(var.dims, chunk_shape)))
