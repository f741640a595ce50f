"""Storage backends: bytes by key. ``open_storage`` turns a user location into a backend."""

from __future__ import annotations

import os
from typing import Any

from atlas.storage._base import Storage
from atlas.storage._keys import check_key
from atlas.storage._local import LocalStorage
from atlas.storage._wrappers import (
    CountingStorage,
    FaultyStorage,
    InjectedFault,
    LatencyStorage,
    StorageWrapper,
)

__all__ = [
    "CountingStorage",
    "FaultyStorage",
    "InjectedFault",
    "LatencyStorage",
    "LocalStorage",
    "Storage",
    "StorageWrapper",
    "check_key",
    "from_description",
    "open_storage",
]


def open_storage(location: Any, read_only: bool = False, **options: Any) -> Storage:
    """A backend for a local path, a URL, an obstore store, or an existing Storage."""
    if isinstance(location, Storage):
        return location
    if isinstance(location, (str, os.PathLike)):
        text = os.fspath(location)
        if "://" in text and not text.startswith("file://"):
            from atlas.storage._obstore import ObjectStorage

            return ObjectStorage.from_url(text, read_only=read_only, **options)
        if text.startswith("file://"):
            text = text[len("file://") :]
        if options:
            raise TypeError(f"local paths take no store options, got {sorted(options)}")
        return LocalStorage(text, read_only=read_only)
    if type(location).__module__.startswith("obstore"):
        from atlas.storage._obstore import ObjectStorage

        return ObjectStorage(location, read_only=read_only, **options)
    raise TypeError(
        "expected a local path, a URL, an obstore store or an atlas Storage, "
        f"got {type(location).__name__}"
    )


def from_description(description: tuple) -> Storage:
    """Reopen a backend from :meth:`Storage.describe`."""
    kind = description[0]
    if kind == "local":
        return LocalStorage(description[1], read_only=description[2])
    if kind == "object":
        from atlas.storage._obstore import ObjectStorage

        return ObjectStorage.from_description(description)
    if kind == "wrapped":
        return description[1](from_description(description[2]), *description[3:])
    raise ValueError(f"unknown storage description {description!r}")
