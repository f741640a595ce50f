"""Compiled statistics loops (private: see the drivers in ``atlas.kernels``).

A partial is (null count, valid count, min, max) over one chunk. Nulls are cells equal to the
fill value, NaN (floats) or NaT (timestamps), and cells the chunk never had written (a
``written`` mask). Folding the partials of every chunk of an array gives its statistics.
"""

from __future__ import annotations

import numpy as np

from atlas.kernels._jit import kernel

NULL_NAN, NULL_NAT = 1, 2  # how a dtype marks missing values besides the fill (0: none)


@kernel
def _run_partial(values, start, count, written, fill, has_fill, null_rule):
    """(nulls, valid, min, max) of ``values[start:start + count]``; min and max are ``fill``
    when no cell is valid."""
    use_mask = written.shape[0] == count
    if not use_mask and not (has_fill and fill == fill):  # no mask, no fill that can match
        if null_rule == NULL_NAN:
            return _plain_partial(values, start, count, fill, True)
        if null_rule == 0:
            return _plain_partial(values, start, count, fill, False)
    nat = np.iinfo(np.int64).min
    nulls = 0
    valid = 0
    lo = fill
    hi = fill
    for j in range(count):
        v = values[start + j]
        if use_mask and written[j] == 0:
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
    return nulls, valid, lo, hi


@kernel
def _plain_partial(values, start, count, fill, nan_nulls):
    """``_run_partial`` where the only nulls are NaN (``nan_nulls``) or there are none: the
    common case (float arrays filled with NaN, integers without a fill) in a loop with no
    other test, three times faster. Same results: the first valid cell starts min and max,
    and a cell replaces them only when strictly beyond (``min``/``max`` keep the first of
    equals, so -0.0 and 0.0 come out as in the general loop)."""
    nulls = 0
    j = 0
    while j < count and nan_nulls and values[start + j] != values[start + j]:
        nulls += 1
        j += 1
    if j == count:
        return nulls, 0, fill, fill
    lo = values[start + j]
    hi = lo
    for k in range(j + 1, count):
        v = values[start + k]
        if nan_nulls and v != v:
            nulls += 1
        else:
            lo = min(lo, v)
            hi = max(hi, v)
    return nulls, count - nulls, lo, hi


@kernel
def _chunk_partial(values, written, fill, has_fill, null_rule, counts, extremes):
    """The partial of one chunk: (nulls, valid) into ``counts``, (min, max) into ``extremes``."""
    nulls, valid, lo, hi = _run_partial(values, 0, values.shape[0], written, fill, has_fill,
                                        null_rule)
    counts[0] = nulls
    counts[1] = valid
    extremes[0] = lo
    extremes[1] = hi


@kernel
def _run_partials(values, starts, counts_in, fills, has_fill, null_rule, counts, extremes):
    """The partials of many runs of one buffer (the chunks of a block): run i is
    ``values[starts[i]:starts[i] + counts_in[i]]`` with fill ``fills[i]``."""
    no_mask = np.zeros(0, np.uint8)
    for i in range(starts.shape[0]):
        fill = fills[i]
        if (null_rule == NULL_NAN or null_rule == 0) and not (has_fill[i] != 0 and fill == fill):
            # _run_partial's common case called straight: through it, 3x slower for runs of a
            # cell (a stacked 0-D array: 47 against 17 ns per run)
            nulls, valid, lo, hi = _plain_partial(values, starts[i], counts_in[i], fill,
                                                  null_rule == NULL_NAN)
        else:
            nulls, valid, lo, hi = _run_partial(values, starts[i], counts_in[i], no_mask, fill,
                                                has_fill[i] != 0, null_rule)
        counts[i, 0] = nulls
        counts[i, 1] = valid
        extremes[i, 0] = lo
        extremes[i, 1] = hi


@kernel
def _fold_partials(nulls, valids, mins, maxs, counts, extremes):
    """Sum the counts, min of mins and max of maxs over partials with valid cells (at least one
    partial is given)."""
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
