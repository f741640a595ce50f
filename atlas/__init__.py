"""atlas: a store for many similarly-shaped N-dimensional datasets."""

from atlas._memory import tune_allocator as _tune_allocator

_tune_allocator()  # before the first large array (see atlas._memory)

from atlas.core import Atlas, DatasetView, VerifyReport, Version  # noqa: E402
from atlas.errors import (  # noqa: E402
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
    UnflushedChangesError,
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
    "UnflushedChangesError",
    "VerifyReport",
    "Version",
    "VersionExpiredError",
    "VersionNotFoundError",
]
