"""Array schemas: dtype, dimension names, shape, chunk shape and fill value of an array.

Arrays defined alike share one schema, so a collection of a million profiles of one shape
stores its definition once. In the catalog a schema is the structured value
``[dtype name, dims, shape, chunk_shape, fill]`` (``atlas.format.values``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from atlas.dtypes import DType, resolve_dtype


def fill_key(fill: Any) -> tuple:
    """Hashable and equal for equal fill values: a NaN equals a NaN; 0, 0.0 and -0.0 differ
    (== holds the last two equal, but they read back apart)."""
    if isinstance(fill, (float, np.floating)):
        return ("nan",) if fill != fill else (type(fill).__name__, float(fill).hex())
    return (type(fill).__name__, fill)


class Schema(NamedTuple):
    """The shape of one array; shared by every array defined the same way."""

    dtype: DType
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    fill: Any  # the parsed fill (a number, a str, ns for timestamps) or None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def grid(self) -> tuple[int, ...]:
        """Chunks per axis."""
        return tuple(-(-s // c) if s else 0 for s, c in zip(self.shape, self.chunk_shape))

    @property
    def n_chunks(self) -> int:
        return math.prod(self.grid)

    @property
    def cells(self) -> int:
        return math.prod(self.shape)

    def key(self) -> tuple:
        """Hashable and equal for equal schemas (a NaN fill equals a NaN fill; 0 and 0.0
        differ, as they do once stored, and so do -0.0 and 0.0, which == holds equal)."""
        return (self.dtype.name, self.dims, self.shape, self.chunk_shape, fill_key(self.fill))

    def to_value(self) -> list:
        return [self.dtype.name, list(self.dims), list(self.shape), list(self.chunk_shape),
                self.fill]

    @classmethod
    def from_value(cls, raw: Any) -> "Schema":
        dtype, dims, shape, chunk_shape, fill = raw
        if not (len(dims) == len(shape) == len(chunk_shape)) or not all(
                isinstance(d, str) for d in dims):
            raise ValueError(f"schema {raw!r} has mismatched ranks")
        for n in (*shape, *chunk_shape):
            if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n >= 2**63:
                raise ValueError(f"schema {raw!r} has an impossible extent")
        if any(c < 1 for c in chunk_shape) or math.prod(shape) >= 2**63:
            raise ValueError(f"schema {raw!r} has an impossible chunk shape")
        if fill is not None and not isinstance(fill, (int, float, str)) or isinstance(fill, bool):
            raise ValueError(f"schema {raw!r} has an impossible fill value")
        return cls(resolve_dtype(dtype), tuple(dims), tuple(shape), tuple(chunk_shape), fill)
