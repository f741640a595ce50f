"""Compiled loops that move bytes between flat C-ordered buffers (private: see the drivers in
``atlas.kernels``).

Buffers are ``uint8``; the element size is folded into the last axis by the driver, so one
compiled specialisation serves every dtype. Row ``i`` of the 2-D int64 tables describes one
copy: a region's byte offset inside its buffer, the region's shape, where the box starts inside
the region, and the box shape. Every row is bounds-checked against its buffer, so a bad table
raises instead of corrupting memory.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from atlas.kernels._jit import kernel


@intrinsic
def _memmove(typingctx, dst, dst_offset, src, src_offset, nbytes):
    """memmove(dst + dst_offset, src + src_offset, nbytes) on two uint8 arrays."""
    sig = types.void(dst, types.intp, src, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        dst_array = context.make_array(signature.args[0])(context, builder, args[0])
        src_array = context.make_array(signature.args[2])(context, builder, args[2])
        dst_ptr = builder.gep(dst_array.data, [args[1]])
        src_ptr = builder.gep(src_array.data, [args[3]])
        cgutils.raw_memmove(builder, dst_ptr, src_ptr, args[4], 1)

    return sig, codegen


@kernel
def _move_runs(src, src_offsets, dst, dst_offsets, lengths):
    """Copy run i: ``lengths[i]`` bytes from ``src[src_offsets[i]:]`` to ``dst[dst_offsets[i]:]``."""
    for i in range(lengths.shape[0]):
        n = lengths[i]
        s = src_offsets[i]
        d = dst_offsets[i]
        if n < 0 or s < 0 or d < 0 or s + n > src.shape[0] or d + n > dst.shape[0]:
            raise IndexError("run outside its buffer")
        _memmove(dst, d, src, s, n)


@kernel
def _region_strides(shape, start, box, offset, size, strides):
    """Fill C strides for a region; return False if the box is empty, raise if out of bounds."""
    ndim = shape.shape[0]
    acc = 1
    nonempty = True
    for axis in range(ndim - 1, -1, -1):
        strides[axis] = acc
        acc *= shape[axis]
        if box[axis] <= 0:
            nonempty = False
        elif start[axis] < 0 or start[axis] + box[axis] > shape[axis]:
            raise IndexError("box outside its region")
    if offset < 0 or offset + acc > size:
        raise IndexError("region outside its buffer")
    return nonempty


@kernel
def _advance(counter, box):
    """Advance an odometer over every axis but the last; False when it wraps around."""
    axis = box.shape[0] - 2
    while axis >= 0:
        counter[axis] += 1
        if counter[axis] < box[axis]:
            return True
        counter[axis] = 0
        axis -= 1
    return False


@kernel
def _move_boxes(src, src_offsets, src_shapes, src_starts, dst, dst_offsets, dst_shapes,
                dst_starts, boxes):
    """For each row i, copy box i from src region i into dst region i."""
    n, ndim = boxes.shape
    src_strides = np.empty(ndim, np.int64)
    dst_strides = np.empty(ndim, np.int64)
    counter = np.empty(ndim, np.int64)
    for i in range(n):
        box = boxes[i]
        ok_src = _region_strides(src_shapes[i], src_starts[i], box, src_offsets[i],
                                 src.shape[0], src_strides)
        ok_dst = _region_strides(dst_shapes[i], dst_starts[i], box, dst_offsets[i],
                                 dst.shape[0], dst_strides)
        if not (ok_src and ok_dst):
            continue
        run = box[ndim - 1]
        counter[:] = 0
        while True:
            s = src_offsets[i]
            d = dst_offsets[i]
            for axis in range(ndim):
                s += (src_starts[i, axis] + counter[axis]) * src_strides[axis]
                d += (dst_starts[i, axis] + counter[axis]) * dst_strides[axis]
            _memmove(dst, d, src, s, run)
            if not _advance(counter, box):
                break


@kernel
def _fill_boxes(dst, dst_offsets, dst_shapes, dst_starts, boxes, pattern):
    """For each row i, fill box i of dst region i with the repeated byte ``pattern``."""
    n, ndim = boxes.shape
    width = pattern.shape[0]
    dst_strides = np.empty(ndim, np.int64)
    counter = np.empty(ndim, np.int64)
    for i in range(n):
        box = boxes[i]
        if not _region_strides(dst_shapes[i], dst_starts[i], box, dst_offsets[i],
                               dst.shape[0], dst_strides):
            continue
        run = box[ndim - 1]
        counter[:] = 0
        while True:
            d = dst_offsets[i]
            for axis in range(ndim):
                d += (dst_starts[i, axis] + counter[axis]) * dst_strides[axis]
            # write the pattern once, then double the filled prefix until the run is full
            first = min(width, run)
            _memmove(dst, d, pattern, 0, first)
            filled = first
            while filled < run:
                step = min(filled, run - filled)
                _memmove(dst, d + filled, dst, d, step)
                filled += step
            if not _advance(counter, box):
                break
