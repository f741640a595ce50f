"""Per-chunk statistics partials and their merge.

A partial is (null count, valid count, min, max) over one chunk. Nulls are cells equal to the
fill value, NaN (floats) or NaT (timestamps), and cells the chunk never had written (``written``
mask, empty when every cell was written). The merge of the partials of every chunk of an array
gives its stats; a chunk that was never stored adds its cells to the null count in the driver.
"""

from __future__ import annotations

import numpy as np

from atlas.kernels import NULL_NAN, NULL_NAT
from atlas.kernels._jit import kernel


@kernel
def chunk_stats(values, written, fill, has_fill, null_rule, counts, extremes):
    """Write (nulls, valid) into ``counts`` and (min, max) of valid cells into ``extremes``."""
    n = values.shape[0]
    use_mask = written.shape[0] == n
    nat = np.iinfo(np.int64).min
    nulls = 0
    valid = 0
    lo = fill  # the driver passes fill as a scalar of the values' dtype
    hi = fill
    for k in range(n):
        v = values[k]
        if use_mask and written[k] == 0:
            nulls += 1
            continue
        if null_rule == NULL_NAN and v != v:
            nulls += 1
            continue
        if null_rule == NULL_NAT and v == nat:
            nulls += 1
            continue
        if has_fill and v == fill:
            nulls += 1
            continue
        if valid == 0 or v < lo:
            lo = v
        if valid == 0 or v > hi:
            hi = v
        valid += 1
    counts[0] = nulls
    counts[1] = valid
    extremes[0] = lo
    extremes[1] = hi


@kernel
def merge_stats(nulls, valids, mins, maxs, counts, extremes):
    """Fold partials: sum the counts, min of mins and max of maxs over chunks with valid cells.

    The driver passes at least one partial.
    """
    total_nulls = 0
    total_valid = 0
    lo = mins[0]
    hi = maxs[0]
    for k in range(nulls.shape[0]):
        total_nulls += nulls[k]
        if valids[k] == 0:
            continue
        if total_valid == 0 or mins[k] < lo:
            lo = mins[k]
        if total_valid == 0 or maxs[k] > hi:
            hi = maxs[k]
        total_valid += valids[k]
    counts[0] = total_nulls
    counts[1] = total_valid
    extremes[0] = lo
    extremes[1] = hi
