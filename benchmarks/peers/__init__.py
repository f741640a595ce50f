"""Peers the atlas store is compared against, one module each.

Every peer module offers ``write(samples, root, n_datasets)`` and one or more readers with the
signature ``(root, names, layout, window) -> dict[variable, ndarray of shape (len(names), ...)]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """Silence notices that are noise in a benchmark (zarr v3 consolidated metadata, ...)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield
