"""Every atlas-specific call the benchmarks make, kept in one place.

Written against the public API in ``spec/atlas-python-0.9.1.md`` and ``spec/UPSTREAM.md``. When the
API changes, this module is the only one to touch. Optional methods are feature-detected so the
harness keeps working with older or partial builds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from benchmarks.cases import ArrayLayout, Sample, window_start_shape

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


def _set_array_attribute(view, array: str, key: str, value) -> None:
    if hasattr(view, "set_array_attribute"):
        view.set_array_attribute(array, key, value)
    else:  # 0.9.1 behaviour: per-variable attrs flattened into dataset attributes
        view.set_attribute(f"{array}.{key}", value)


def write(
    samples: Iterable[Sample], root: Path, n_datasets: int | None = None, codec: str = "zstd"
) -> None:
    """Write every sample through the raw API (define/write per array) and flush once."""
    import atlas

    root.mkdir(parents=True, exist_ok=True)
    store = atlas.Atlas.create(str(store_path(root)), codec=codec)
    for sample in samples:
        view = store.create_dataset(sample.name)
        for name, array in sample.raw.arrays.items():
            view.define_array(
                name,
                dtype=str(array.data.dtype),
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
    store.flush()


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


def stored_chunks(
    root: Path, layout: dict[str, ArrayLayout], names: list[str], window: dict[str, slice]
) -> tuple[list[bytes], list[int], str] | None:
    """The exact compressed chunk bytes atlas stored for a window read, with decoded sizes.

    Returns ``(chunks, decoded_sizes, codec)`` or None while atlas exposes no such API; the
    harness then recompresses the same chunks itself and says so in the results.
    """
    return None
