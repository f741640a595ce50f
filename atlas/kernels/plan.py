"""Read planning: which chunks a window touches, and where each lives in the chunk index."""

from __future__ import annotations

from atlas.kernels._jit import kernel


@kernel
def plan_window(shape, chunk_shape, start, window, chunk_ids, origins, extents, src_starts,
                dst_starts, boxes):
    """Enumerate the chunks that window ``[start, start + window)`` overlaps, in C order.

    For chunk k: its linear id in the array's chunk grid, its origin and clipped extent in the
    array, and the overlap box (start inside the chunk, start inside the window, shape).
    The driver sizes the outputs to the number of overlapped chunks.
    """
    ndim = shape.shape[0]
    m = chunk_ids.shape[0]
    for k in range(m):
        rem = k
        linear = 0
        grid_stride = 1
        # decode k into per-axis chunk coordinates, last axis fastest
        for axis in range(ndim - 1, -1, -1):
            first = start[axis] // chunk_shape[axis]
            last = (start[axis] + window[axis] - 1) // chunk_shape[axis]
            count = last - first + 1
            coord = first + rem % count
            rem //= count
            origin = coord * chunk_shape[axis]
            extent = min(chunk_shape[axis], shape[axis] - origin)
            lo = max(start[axis], origin)
            hi = min(start[axis] + window[axis], origin + extent)
            origins[k, axis] = origin
            extents[k, axis] = extent
            src_starts[k, axis] = lo - origin
            dst_starts[k, axis] = lo - start[axis]
            boxes[k, axis] = hi - lo
            linear += coord * grid_stride
            grid_stride *= (shape[axis] + chunk_shape[axis] - 1) // chunk_shape[axis]
        chunk_ids[k] = linear


@kernel
def find_chunks(index_slots, index_chunks, want_slots, want_chunks, out):
    """Binary-search each wanted (slot, chunk) in an index sorted by (slot, chunk); -1 if absent."""
    n = index_slots.shape[0]
    for k in range(want_slots.shape[0]):
        slot = want_slots[k]
        chunk = want_chunks[k]
        lo = 0
        hi = n
        while lo < hi:
            mid = (lo + hi) // 2
            s = index_slots[mid]
            if s < slot or (s == slot and index_chunks[mid] < chunk):
                lo = mid + 1
            else:
                hi = mid
        if lo < n and index_slots[lo] == slot and index_chunks[lo] == chunk:
            out[k] = lo
        else:
            out[k] = -1
