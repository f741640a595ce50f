"""Every exception atlas raises.

Each class also derives from the builtin a caller would naturally catch, so ``except KeyError``
or ``except ValueError`` keeps working without importing atlas.
"""

from __future__ import annotations


class AtlasError(Exception):
    """Base class of every atlas error."""


class DatasetNotFoundError(AtlasError, KeyError):
    """A dataset name that is not in the store."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ArrayNotFoundError(AtlasError, KeyError):
    """An array name that is not in the dataset."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class AlreadyExistsError(AtlasError, FileExistsError):
    """A dataset or array that already exists (live) under that name."""


class InvalidNameError(AtlasError, ValueError):
    """A dataset or array name that breaks the naming rules."""


class OutOfBoundsError(AtlasError, IndexError):
    """A read or write window that reaches outside the array."""


class StoreNotFoundError(AtlasError, FileNotFoundError):
    """A location that holds no atlas store."""


class ReadOnlyError(AtlasError, PermissionError):
    """A write to a store opened (or only reachable) read-only."""


class ConflictError(AtlasError, RuntimeError):
    """Another writer committed since this handle read the manifest; nothing was overwritten."""


class CorruptionError(AtlasError, OSError):
    """Stored bytes fail their checksum or cannot be decoded."""


class FormatError(AtlasError, ValueError):
    """A file that is not in a format version this package understands."""


class InvalidKeyError(AtlasError, ValueError):
    """A storage key outside the key grammar (``atlas.storage.check_key``)."""


class StaleHandleError(CorruptionError, FileNotFoundError):
    """A file the handle's manifest references is gone: a compaction removed it after its grace
    period (reopen the store), or the store lost it (then ``verify()`` reports it too)."""


class VersionNotFoundError(AtlasError, KeyError):
    """No such version of the store: a generation it never reached, or an unknown tag."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class VersionExpiredError(VersionNotFoundError):
    """The version existed but the retention policy (or ``expire``) removed it."""


class QueryError(AtlasError, ValueError):
    """A ``where`` expression that atlas does not evaluate (says what it found and where)."""


class UnflushedChangesError(AtlasError, ValueError):
    """A lazy array made from changes its handle had not flushed, sent to another process (a
    dask worker), which reads the store only as committed."""


__all__ = [
    "AlreadyExistsError",
    "ArrayNotFoundError",
    "AtlasError",
    "ConflictError",
    "CorruptionError",
    "DatasetNotFoundError",
    "FormatError",
    "InvalidKeyError",
    "InvalidNameError",
    "OutOfBoundsError",
    "QueryError",
    "VersionExpiredError",
    "VersionNotFoundError",
    "ReadOnlyError",
    "StaleHandleError",
    "StoreNotFoundError",
    "UnflushedChangesError",
]
