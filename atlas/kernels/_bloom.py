"""The compiled loop of the Bloom filter build (private: see ``atlas.kernels.bloom_bits`` and
``atlas.format.bloom`` for the filter's definition)."""

from __future__ import annotations

import numpy as np

from atlas.kernels._jit import kernel


@kernel
def _set_probe_bits(hashes, n_bits, probes, out):
    """Set in ``out`` (packed, most significant bit first) bits ``(h1 + i * h2) mod n_bits``
    for i < ``probes`` of every hash (h1 its low 32 bits, h2 its high 32 bits made odd)."""
    m = np.uint64(n_bits)
    for k in range(hashes.shape[0]):
        h = hashes[k]
        at = (h & np.uint64(0xFFFFFFFF)) % m
        step = ((h >> np.uint64(32)) | np.uint64(1)) % m
        for i in range(probes):
            if i:
                at += step
                if at >= m:
                    at -= m
            out[at >> np.uint64(3)] |= np.uint8(0x80) >> np.uint8(at & np.uint64(7))
