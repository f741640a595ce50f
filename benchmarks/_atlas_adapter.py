"""Every atlas-specific call the benchmarks make, kept in one place.

Written against the public API in ``spec/atlas-python-0.9.1.md`` and ``spec/UPSTREAM.md``. When the
API changes, this module is the only one to touch. Optional methods are feature-detected so the
harness keeps working with older or partial builds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from benchmarks.cases import ArrayLayout, RawArray, Sample, window_start_shape

STORE_NAME = "store.atlas"
FALLBACK_ZSTD_LEVEL = 3


def unavailable_reason() -> str | None:
    """None when ``atlas.Atlas`` imports, otherwise why it cannot be benchmarked."""
    try:
        import atlas

        atlas.Atlas  # noqa: B018 - the attribute access is the check
    except Exception as err:  # any failure means "skip atlas", reported in the results
        return f"{type(err).__name__}: {err}"
    return None


def version() -> str | None:
    """atlas.__version__ (or "unknown"), None when atlas is not usable."""
    if unavailable_reason() is not None:
        return None
    import atlas

    return getattr(atlas, "__version__", "unknown")


def store_path(root: Path) -> Path:
    return root / STORE_NAME


def codec_level(codec: str) -> int:
    """The compression level atlas uses for ``codec`` (for recompressing a stand-in floor)."""
    try:
        from atlas.codecs import DEFAULT_LEVELS

        return int(DEFAULT_LEVELS[codec])
    except Exception:
        return FALLBACK_ZSTD_LEVEL if codec == "zstd" else 0


@lru_cache(maxsize=None)
def _dtype_name(dtype: np.dtype) -> str:
    """``str(dtype)``, cached: numpy's ``dtype.__str__`` costs ~4% of a profile-case write."""
    return str(dtype)


def _set_array_attribute(view, array: str, key: str, value) -> None:
    if hasattr(view, "set_array_attribute"):
        view.set_array_attribute(array, key, value)
    else:  # 0.9.1 behaviour: per-variable attrs flattened into dataset attributes
        view.set_attribute(f"{array}.{key}", value)


def add_dataset(store, sample: Sample) -> None:
    """One dataset through the per-dataset API: create, define and write each array, attributes."""
    view = store.create_dataset(sample.name)
    for name, array in sample.raw.arrays.items():
        view.define_array(
            name,
            dtype=_dtype_name(array.data.dtype),
            dims=list(array.dims),
            shape=list(array.data.shape),
            chunk_shape=list(array.chunk_shape),
            fill_value=array.fill_value,
        )
        view.write_array(name, [0] * array.data.ndim, array.data)
        for key, value in array.attrs.items():
            _set_array_attribute(view, name, key, value)
    for key, value in sample.raw.attrs.items():
        view.set_attribute(key, value)


def write(
    samples: Iterable[Sample], root: Path, n_datasets: int | None = None, codec: str = "zstd"
) -> None:
    """Write every sample through the raw API (define/write per array) and flush once."""
    import atlas

    root.mkdir(parents=True, exist_ok=True)
    store = atlas.Atlas.create(str(store_path(root)), codec=codec)
    for sample in samples:
        add_dataset(store, sample)
    store.flush()


# --- stacked writes, whole-store reads and one-dataset commits (many_small, scale) ------------


def has_stacked_write() -> bool:
    import atlas

    return hasattr(atlas.Atlas, "write_array_across_stacked")


def stacked_write_method() -> str:
    """Which atlas write path :func:`write_stacked` takes (recorded with the results)."""
    if has_stacked_write():
        return "Atlas.write_array_across_stacked"
    return "fallback: per-dataset API (Atlas.write_array_across_stacked is not there yet)"


def write_stacked(
    root: Path, names: list[str], arrays: dict[str, RawArray], codec: str = "zstd"
) -> str:
    """A new store holding, for every array, row i of ``arrays[array].data`` in dataset
    ``names[i]``; one flush. ``RawArray.dims``/``chunk_shape`` describe one dataset's array.

    Uses ``Atlas.write_array_across_stacked`` when the build has it, else the per-dataset API
    (one create, then define + write per array, per dataset). Returns :func:`stacked_write_method`.
    """
    import atlas

    for array, spec in arrays.items():
        if len(spec.data) != len(names):
            raise ValueError(f"{array!r} has {len(spec.data)} rows for {len(names)} names")
    root.mkdir(parents=True, exist_ok=True)
    store = atlas.Atlas.create(str(store_path(root)), codec=codec)
    write_stacked_into(store, names, arrays)
    store.flush()
    return stacked_write_method()


def write_stacked_into(store, names: list[str], arrays: dict[str, RawArray]) -> None:
    """Row i of every array into dataset ``names[i]`` of an open store (created when absent),
    as :func:`write_stacked` does; no flush."""
    if has_stacked_write():
        for array, spec in arrays.items():
            store.write_array_across_stacked(
                array, names, spec.data, dims=list(spec.dims),
                chunk_shape=list(spec.chunk_shape), fill_value=spec.fill_value,
            )
        return
    definitions = [
        (array, _dtype_name(spec.data.dtype), list(spec.dims), list(spec.data.shape[1:]),
         list(spec.chunk_shape), spec.fill_value, spec.data)
        for array, spec in arrays.items()
    ]
    for row, name in enumerate(names):
        view = store.open_dataset(name) if store.dataset_exists(name) else \
            store.create_dataset(name)
        for array, dtype, dims, shape, chunks, fill, data in definitions:
            view.define_array(array, dtype=dtype, dims=dims, shape=shape, chunk_shape=chunks,
                              fill_value=fill)
            view.write_array(array, [0] * len(shape), data[row])


def open_store(root: Path, read_only: bool = False):
    """A handle on the store under ``root`` (what :func:`write` and :func:`write_stacked` made)."""
    import atlas

    return atlas.Atlas.open(str(store_path(root)), read_only=read_only)


def list_datasets(store) -> list[str]:
    """Every live dataset name, in creation order."""
    return store.list_datasets()


def read_stacked_all(store, array: str) -> np.ndarray:
    """``array`` of every dataset of the store as one ``(N, ...)`` array: no names given (the
    API's every-dataset form); a build that needs names gets ``list_datasets()``."""
    try:
        return store.read_array_across_stacked(array)
    except TypeError:
        return read_stacked_listed(store, array)


def read_stacked_listed(store, array: str) -> np.ndarray:
    """:func:`read_stacked_all` naming every dataset, as ``list_datasets()`` lists them (a
    fresh handle turns every name into a string first)."""
    return store.read_array_across_stacked(array, store.list_datasets())


def delete_dataset(store, name: str) -> None:
    store.delete_dataset(name)


def flush(store) -> None:
    store.flush()


def compact(store) -> None:
    """Merge the store's segments (a full compaction), committed."""
    store.compact()


def is_data_file(relative_path: str) -> bool:
    """True for a file of the store that holds chunk data (a segment), False for metadata.

    Format version 2 (``docs/format.md``): data lives in ``segments/<gen>-<uuid>.seg`` (blocks
    of chunks, with their chunk index at the end); the catalog parts (``catalog/*.cat``), the
    root (``manifest.atlas``) and the lock file are metadata. A new layout updates this rule."""
    return relative_path.startswith("segments/") and relative_path.endswith(".seg")


def has_stacked_read() -> bool:
    import atlas

    return hasattr(atlas.Atlas, "read_array_across_stacked")


def read_method() -> str:
    """Which atlas read path :func:`read_window` takes (recorded with the results)."""
    if has_stacked_read():
        return "Atlas.read_array_across_stacked"
    return "loop of open_dataset(name).read_array into a preallocated array"


def read_window(
    root: Path, names: list[str], layout: dict[str, ArrayLayout], window: dict[str, slice]
) -> dict[str, np.ndarray]:
    """``window`` of every variable across ``names``, one ``(len(names), ...)`` array each."""
    import atlas

    store = atlas.Atlas.open(str(store_path(root)))
    windows = {name: window_start_shape(spec, window) for name, spec in layout.items()}
    if hasattr(store, "read_array_across_stacked"):
        return {
            name: store.read_array_across_stacked(name, names, start, shape)
            for name, (start, shape) in windows.items()
        }
    out = {
        name: np.empty((len(names), *windows[name][1]), dtype=spec.dtype)
        for name, spec in layout.items()
    }
    for row, dataset in enumerate(names):
        view = store.open_dataset(dataset)
        for name, (start, shape) in windows.items():
            out[name][row] = view.read_array(name, start, shape)
    return out


def window_reader_into() -> Callable[[Path, list[str], dict[str, ArrayLayout], dict], dict]:
    """:func:`read_window` into output buffers kept from one call to the next
    (``read_array_across_stacked(..., out=buffer)``), as ``tensorstore_zarr.window_reader``
    reads: a read then allocates no output memory."""
    import atlas

    buffers: dict[tuple, np.ndarray] = {}

    def read_window_into(root: Path, names: list[str], layout: dict[str, ArrayLayout],
                         window: dict[str, slice]) -> dict[str, np.ndarray]:
        store = atlas.Atlas.open(str(store_path(root)))
        out = {}
        for name, spec in layout.items():
            start, shape = window_start_shape(spec, window)
            key = (name, len(names), tuple(shape), spec.dtype.str)
            if key not in buffers:
                buffers[key] = np.empty((len(names), *shape), spec.dtype)
            out[name] = store.read_array_across_stacked(name, names, start, shape,
                                                        out=buffers[key])
        return out

    return read_window_into


def stored_chunks(
    store, array: str, names: list[str], start=None, shape=None
) -> tuple[list[bytes], list[int], list[str]]:
    """The exact compressed bytes atlas stored for the blocks a read of ``array`` decodes.

    Through ``Atlas.read_plan`` (the plan the read itself runs): every block the stacked read
    of ``names`` over the window ``start``/``shape`` fetches, its decoded size, and its codec
    as the floor names it ("zstd", or "zstd+shuffle4" for a block of 4-byte values shuffled;
    builds before the shuffle give no width). Returns ``(blocks, decoded_sizes, codecs)``.
    """
    plan = store.read_plan(array, names, start, shape)
    blocks = plan.blocks()
    codecs = [codec if not rest or rest[0] == 1 else f"{codec}+shuffle{rest[0]}"
              for _data, _size, codec, *rest in blocks]
    return [b[0] for b in blocks], [b[1] for b in blocks], codecs


def stored_window_chunks(
    root: Path, layout: dict[str, ArrayLayout], names: list[str], window: dict[str, slice]
) -> tuple[list[bytes], list[int], list[str]]:
    """:func:`stored_chunks` of every variable of ``layout`` for a window keyed by dimension."""
    import atlas

    store = atlas.Atlas.open(str(store_path(root)), read_only=True)
    chunks: list[bytes] = []
    sizes: list[int] = []
    codecs: list[str] = []
    for array, spec in layout.items():
        start, shape = window_start_shape(spec, window)
        got, got_sizes, got_codecs = stored_chunks(store, array, names, start, shape)
        chunks.extend(got)
        sizes.extend(got_sizes)
        codecs.extend(got_codecs)
    return chunks, sizes, codecs


# --- the catalog and queries over it (query) ----------------------------------------------------


def create_store(root: Path, codec: str = "zstd"):
    """A new, empty store under ``root``."""
    import atlas

    root.mkdir(parents=True, exist_ok=True)
    return atlas.Atlas.create(str(store_path(root)), codec=codec)


def create_with_attributes(store, names: list[str], attributes: dict[str, list]) -> None:
    """Datasets ``names`` created, each with ``attributes[key][i]`` for every key. There is no
    bulk attribute write: one ``create_dataset`` and a ``set_attribute`` per value."""
    columns = list(attributes.items())
    for i, name in enumerate(names):
        view = store.create_dataset(name)
        for key, values in columns:
            view.set_attribute(key, values[i])


def has_queries() -> bool:
    import atlas

    return hasattr(atlas.Atlas, "select") and hasattr(atlas.Atlas, "catalog")


def select(store, where: str) -> list[str]:
    """Names of the datasets matching the expression ``where``, in creation order."""
    return store.select(where)


def catalog(store, arrays: list[str] | None = None, attributes: list[str] | None = None):
    """The catalog DataFrame (a row per dataset) of ``arrays`` and ``attributes`` (None: all)."""
    return store.catalog(arrays=arrays, attributes=attributes)


def catalog_columns(store, columns: list[str]):
    """The catalog DataFrame of just these columns (``<array>.<stat>`` or attribute keys)."""
    return store.catalog(columns=columns)
