"""atlas: a store for many similarly-shaped N-dimensional datasets."""

from atlas.core import Atlas, DatasetView, VerifyReport, Version
from atlas.errors import (
    AlreadyExistsError,
    ArrayNotFoundError,
    AtlasError,
    ConflictError,
    CorruptionError,
    DatasetNotFoundError,
    FormatError,
    InvalidKeyError,
    InvalidNameError,
    OutOfBoundsError,
    QueryError,
    ReadOnlyError,
    StaleHandleError,
    StoreNotFoundError,
    VersionExpiredError,
    VersionNotFoundError,
)

__version__ = "0.1.0"

# xr.Dataset.atlas: registered now if xarray is imported, else right after it is (no import here)
from atlas.xarray._hook import install as _install_xarray_accessor  # noqa: E402

_install_xarray_accessor()

__all__ = [
    "AlreadyExistsError",
    "ArrayNotFoundError",
    "Atlas",
    "AtlasError",
    "ConflictError",
    "CorruptionError",
    "DatasetNotFoundError",
    "DatasetView",
    "FormatError",
    "InvalidKeyError",
    "InvalidNameError",
    "OutOfBoundsError",
    "QueryError",
    "ReadOnlyError",
    "StaleHandleError",
    "StoreNotFoundError",
    "VerifyReport",
    "Version",
    "VersionExpiredError",
    "VersionNotFoundError",
]
