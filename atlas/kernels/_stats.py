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
    when no cell is valid. The general loop: any mask, fill and null rule."""
    use_mask = written.shape[0] == count
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
def _key_extremes(keys, start, count, nan_nulls, mag, inf_bits):
    """(nulls, lowest key, highest key) of ``keys[start:start + count]`` (count > 0).

    Integer min/max loops vectorise where float ones do not (3x here), so a float run comes
    as its values' bits viewed as signed integers: flipping the magnitude bits ``mag`` of the
    negative ones gives keys in the floats' order (-0.0 just below 0.0); a NaN (magnitude
    above +inf's bits) is counted and left out. Integer values are their own keys."""
    run = keys[start : start + count]  # a slice: indexes from range() vectorise
    nulls = 0
    if nan_nulls:
        none = mag ^ mag  # 0 of the keys' type (a literal 0 would unify uint64 to float64)
        lo = mag
        hi = ~mag
        for j in range(run.shape[0]):
            b = run[j]
            nan = (b & mag) > inf_bits
            nulls += nan
            k = b ^ (mag if b < 0 else none)
            lo = min(lo, mag if nan else k)
            hi = max(hi, ~mag if nan else k)
        return nulls, lo, hi
    lo = run[0]
    hi = run[0]
    for j in range(1, run.shape[0]):
        lo = min(lo, run[j])
        hi = max(hi, run[j])
    return nulls, lo, hi


@kernel
def _float_bits(keys, start, count, lo, hi, mag):
    """The bits of a float run's extremes from their keys (see ``_key_extremes``). Where a
    zero is the min or max the general loop keeps the first zero it meets, of either sign:
    so does this."""
    none = mag ^ mag
    if lo == -1 or hi == 0:
        for j in range(start, start + count):
            b = keys[j]
            if b & mag == 0:
                zero = b ^ (mag if b < 0 else none)
                if lo == -1:
                    lo = zero
                if hi == 0:
                    hi = zero
                break
    return lo ^ (mag if lo < 0 else none), hi ^ (mag if hi < 0 else none)


@kernel
def _run_partials(values, keys, starts, counts_in, fills, has_fill, null_rule, mag, inf_bits,
                  counts, extremes, extreme_keys):
    """The partials of many runs of one buffer (the chunks of a block): run i is
    ``values[starts[i]:starts[i] + counts_in[i]]`` with fill ``fills[i]``. A run whose only
    nulls are NaN (or that has none: no fill that can match) takes ``_key_extremes``, with
    the general loop's results bit for bit; ``keys``, ``mag``, ``inf_bits`` are what it
    takes, ``extreme_keys`` is ``extremes`` viewed as ``keys`` are."""
    nan_nulls = null_rule == NULL_NAN
    plain_rule = nan_nulls or null_rule == 0
    no_mask = np.zeros(0, np.uint8)
    for i in range(starts.shape[0]):
        fill = fills[i]
        start = starts[i]
        count = counts_in[i]
        if plain_rule and count and not (has_fill[i] != 0 and fill == fill):
            nulls, lo, hi = _key_extremes(keys, start, count, nan_nulls, mag, inf_bits)
            counts[i, 0] = nulls
            counts[i, 1] = count - nulls
            if nulls == count:
                extremes[i, 0] = fill
                extremes[i, 1] = fill
            elif nan_nulls:
                extreme_keys[i, 0], extreme_keys[i, 1] = _float_bits(keys, start, count, lo, hi,
                                                                     mag)
            else:
                extreme_keys[i, 0] = lo
                extreme_keys[i, 1] = hi
            continue
        nulls, valid, lo_value, hi_value = _run_partial(values, start, count, no_mask, fill,
                                                        has_fill[i] != 0, null_rule)
        counts[i, 0] = nulls
        counts[i, 1] = valid
        extremes[i, 0] = lo_value
        extremes[i, 1] = hi_value


@kernel
def _chunk_partial(values, keys, written, fill, has_fill, null_rule, mag, inf_bits, counts,
                   extremes, extreme_keys):
    """The partial of one chunk into row 0 of ``counts`` and ``extremes``: cells where
    ``written`` (when not empty) is 0 are nulls. See ``_run_partials``."""
    n = values.shape[0]
    if written.shape[0] == n:
        nulls, valid, lo, hi = _run_partial(values, 0, n, written, fill, has_fill, null_rule)
        counts[0, 0] = nulls
        counts[0, 1] = valid
        extremes[0, 0] = lo
        extremes[0, 1] = hi
        return
    starts = np.zeros(1, np.int64)
    sizes = np.full(1, n, np.int64)
    _run_partials(values, keys, starts, sizes, np.full(1, fill, values.dtype),
                  np.full(1, has_fill, np.uint8), null_rule, mag, inf_bits, counts, extremes,
                  extreme_keys)


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
