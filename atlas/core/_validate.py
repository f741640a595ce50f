"""Checks on user input that the core shares: read/write windows (and names, from atlas.names)."""

from __future__ import annotations

from typing import Any, Sequence

from atlas.errors import OutOfBoundsError
from atlas.names import check_name  # noqa: F401  (the core's callers import it from here)


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
        if s < 0:
            raise OutOfBoundsError(f"{where}: start {list(start)} is negative on axis {axis}; "
                                   f"starts count from 0 in an array of shape "
                                   f"{list(array_shape)}")
        if s + n > size:
            raise OutOfBoundsError(
                f"{where}: start {list(start)} + shape {list(shape)} exceeds shape "
                f"{list(array_shape)} on axis {axis}"
            )
