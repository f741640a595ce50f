"""Checks on user input that the core shares: names and read/write windows."""

from __future__ import annotations

from typing import Any, Sequence

from atlas.errors import InvalidNameError, OutOfBoundsError

# Names are never file names (format version 2 names files by generation and a random id), but
# they go into netCDF files (at most 256 bytes a name) and the catalog: one limit for every
# backend and every use.
MAX_NAME_BYTES = 255


def check_name(name: Any, what: str) -> str:
    """Dataset and array names: non-empty str, no '/', no leading '_', not '.' or '..', valid
    Unicode text, at most MAX_NAME_BYTES of UTF-8."""
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a str, got {type(name).__name__}")
    problem = None
    if not name:
        problem = "is empty"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif name.startswith("_"):
        problem = "starts with '_' (reserved)"
    elif name in (".", ".."):
        problem = "is '.' or '..'"
    elif any(ord(c) < 32 for c in name):
        problem = "contains a control character"
    elif not name.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        problem = "contains a lone surrogate (not valid Unicode text)"
    elif len(name) > MAX_NAME_BYTES // 4 and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = (f"is {len(name.encode('utf-8'))} bytes of UTF-8, more than the limit of "
                   f"{MAX_NAME_BYTES}")
    if problem:
        raise InvalidNameError(f"invalid {what} name {name!r}: it {problem}")
    return name


def as_index_tuple(values: Any, what: str, ndim: int, where: str) -> tuple[int, ...]:
    """A start/shape argument as a tuple of ints of the array's rank."""
    if values is None:
        raise TypeError(f"{where}: {what} is required")
    try:
        items = list(values)
    except TypeError:
        raise TypeError(f"{where}: {what} must be a sequence of ints, got {values!r}") from None
    out = []
    for v in items:
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise TypeError(f"{where}: {what} must hold ints, got {v!r}")
        out.append(v.__index__())
    if len(out) != ndim:
        raise ValueError(f"{where}: {what} {out} has rank {len(out)}, the array has rank {ndim}")
    return tuple(out)


def check_window(start: Sequence[int], shape: Sequence[int], array_shape: Sequence[int],
                 where: str) -> None:
    """Raise OutOfBoundsError naming the axis when the window leaves the array."""
    for axis, (s, n, size) in enumerate(zip(start, shape, array_shape)):
        if n < 0:
            raise ValueError(f"{where}: shape {list(shape)} has a negative extent on axis {axis}")
        if s < 0 or s + n > size:
            raise OutOfBoundsError(
                f"{where}: start {list(start)} + shape {list(shape)} exceeds shape "
                f"{list(array_shape)} on axis {axis}"
            )
