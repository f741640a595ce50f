"""The compiled loop of the names filter (private: see ``atlas.kernels.bloom_bits``)."""

from __future__ import annotations

import numpy as np

from atlas.kernels._jit import kernel


@kernel
def _set_bloom_bits(hashes, probes, out):
    """Set in ``out`` (8 m bits, bit p the (7 - p % 8)th of byte p // 8) the bits
    (h1 + i h2) mod 8m, i < ``probes``, of every hash (h1 its low 32 bits, h2 its high 32 bits
    made odd): one name at a time, its bits set in a buffer that stays in cache, instead of a
    pass over every name per probe."""
    m = np.uint64(out.shape[0]) * np.uint64(8)
    low = np.uint64(0xFFFFFFFF)
    for k in range(hashes.shape[0]):
        h = hashes[k]
        at = (h & low) % m
        step = ((h >> np.uint64(32)) | np.uint64(1)) % m
        for i in range(probes):
            if i:
                at += step  # both below m: the sum cannot wrap
                if at >= m:
                    at -= m
            out[at >> np.uint64(3)] |= np.uint8(128) >> np.uint8(at & np.uint64(7))
