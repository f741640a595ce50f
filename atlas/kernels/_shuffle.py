"""Compiled byte shuffle loops (private: see ``shuffle_bytes``/``unshuffle_bytes`` in
``atlas.kernels``).

A shuffled buffer of n values ``width`` bytes wide holds byte k of every value at ``k * n + i``.
Each loop handles one width with whole little-endian words, so the compiler vectorises it: about
0.04 ms per MiB either way against 0.18-0.29 ms for numpy's column copies on these machines.
The driver checks every bound first; the loops index without checks.
"""

from __future__ import annotations

import numpy as np

from atlas.kernels._jit import kernel


@kernel
def _unshuffle_values(src, dst, width, lo, hi):
    """Values ``lo:hi`` of the shuffled ``src`` (n = len(src) // width values) into
    ``dst[lo * width : hi * width]``."""
    n = src.shape[0] // width
    # byte k of value lo + j is planes[k, j] (as a 2-D view: 1-D offsets like src[k * n + i]
    # keep the loops from vectorising, 8-14x slower)
    planes = src[: width * n].reshape(width, n)[:, lo:hi]
    if width == 2:
        words2 = dst[lo * 2 : hi * 2].view(np.uint16)
        for j in range(hi - lo):
            words2[j] = np.uint16(planes[0, j]) | (np.uint16(planes[1, j]) << np.uint16(8))
    elif width == 4:
        words4 = dst[lo * 4 : hi * 4].view(np.uint32)
        for j in range(hi - lo):
            words4[j] = (np.uint32(planes[0, j]) | (np.uint32(planes[1, j]) << np.uint32(8))
                         | (np.uint32(planes[2, j]) << np.uint32(16))
                         | (np.uint32(planes[3, j]) << np.uint32(24)))
    else:
        words8 = dst[lo * 8 : hi * 8].view(np.uint64)
        for j in range(hi - lo):
            word = np.uint64(0)
            for k in range(8):
                word |= np.uint64(planes[k, j]) << np.uint64(8 * k)
            words8[j] = word


@kernel
def _shuffle_values(src, dst, width):
    """The n = len(src) // width whole values of ``src`` shuffled into ``dst[: n * width]``."""
    n = src.shape[0] // width
    if width == 2:
        words2 = src[: n * 2].view(np.uint16)
        for i in range(n):
            word = words2[i]
            dst[i] = np.uint8(word & 0xFF)
            dst[n + i] = np.uint8(word >> 8)
    elif width == 4:
        words4 = src[: n * 4].view(np.uint32)
        for i in range(n):
            word = words4[i]
            dst[i] = np.uint8(word & 0xFF)
            dst[n + i] = np.uint8((word >> 8) & 0xFF)
            dst[2 * n + i] = np.uint8((word >> 16) & 0xFF)
            dst[3 * n + i] = np.uint8(word >> 24)
    else:
        words8 = src[: n * 8].view(np.uint64)
        for i in range(n):
            word = words8[i]
            for k in range(8):
                dst[k * n + i] = np.uint8((word >> np.uint64(8 * k)) & np.uint64(0xFF))
