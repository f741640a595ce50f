"""A Bloom filter of the dataset names a catalog part holds: "certainly not here" in O(1).

Creating a dataset must check that its name is new; a part's filter answers that for most
names without reading the part's names, so appending one dataset to a store of a million costs
about what it costs in a store of a thousand. A "maybe" is settled by searching the names.

The filter is the section ``["names_bloom"]`` of a part, one ``u1`` column ``bits`` of m bytes
(8 m bits). A name's hash is FNV-1a (64 bit) of its UTF-8 bytes; with h1 its low and h2 its high
32 bits (h2 made odd), bits ``(h1 + i * h2) mod 8m`` for i < ``PROBES`` are set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from atlas import kernels

BITS_PER_NAME = 10  # with 7 probes: about 1% false positives
PROBES = 7
_OFFSET = np.uint64(0xCBF29CE484222325)
_PRIME = np.uint64(0x100000001B3)


@dataclass
class Joined:
    """Names as one buffer: their UTF-8 bytes, each followed by a NUL."""

    data: np.ndarray  # uint8
    starts: np.ndarray  # int64, where each name's bytes begin
    lengths: np.ndarray  # int64, bytes


def join(names) -> Joined | None:
    """The names joined (one scan of them all); None when a name holds a NUL. TypeError when
    one is not a str."""
    n = len(names)
    data = np.frombuffer(("\0".join(names) + "\0").encode("utf-8", "surrogatepass"), np.uint8)
    ends = np.flatnonzero(data == 0)
    if len(ends) != n:
        return None
    starts = np.empty(n, np.int64)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    return Joined(data, starts, ends - starts)


def name_hashes(names) -> np.ndarray:
    """FNV-1a 64-bit hashes of the names' UTF-8 bytes."""
    if not len(names):
        return np.zeros(0, np.uint64)
    joined = join(names)
    if joined is None:  # a name holding NUL: hashed one by one
        return np.concatenate([name_hashes_of_bytes(name.encode("utf-8", "surrogatepass"))
                               for name in names])
    return hashes_of(joined)


def hashes_of(joined: Joined) -> np.ndarray:
    """:func:`name_hashes` of names already joined: one byte position at a time over the
    names long enough to have it (names sorted by length once)."""
    data, starts, lengths = joined.data, joined.starts, joined.lengths
    n = len(starts)
    if not n:
        return np.zeros(0, np.uint64)
    if lengths.min() == lengths.max():  # names of one length (numbered names): a byte column each
        rows = data.reshape(n, -1)
        h = np.full(n, _OFFSET, np.uint64)
        with np.errstate(over="ignore"):
            for j in range(rows.shape[1] - 1):
                h ^= rows[:, j]
                h *= _PRIME
        return h
    order = np.argsort(lengths, kind="stable")  # the names with a byte j are a suffix of it
    sorted_lengths = lengths[order]
    sorted_starts = starts[order]
    h = np.full(n, _OFFSET, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(int(sorted_lengths[-1])):
            first = int(np.searchsorted(sorted_lengths, j, side="right"))
            h[first:] = (h[first:] ^ data[sorted_starts[first:] + j]) * _PRIME
    out = np.empty(n, np.uint64)
    out[order] = h
    return out


def name_hashes_of_bytes(encoded: bytes) -> np.ndarray:
    """The FNV-1a hash of one name's bytes (as a 1-element array)."""
    h = _OFFSET
    with np.errstate(over="ignore"):
        for byte in encoded:
            h = (h ^ np.uint64(byte)) * _PRIME
    return np.array([h], np.uint64)


def build(names, hashes: np.ndarray | None = None) -> np.ndarray:
    """The filter bytes of ``names`` (``hashes``: their :func:`name_hashes`, when known)."""
    if hashes is None:
        hashes = name_hashes(names)
    n_bytes = max(8, (len(hashes) * BITS_PER_NAME + 7) // 8)
    if kernels.loops_loaded():  # 5x numpy's speed, but loading Numba costs a process ~0.5 s
        return kernels.bloom_bits(hashes, n_bytes, PROBES)
    bits = np.zeros(n_bytes * 8, bool)
    for positions in _probes(hashes, n_bytes * 8):
        bits[positions] = True
    return np.packbits(bits)


def _probes(hashes: np.ndarray, n_bits: int) -> Iterator[np.ndarray]:
    """The bit positions of every name, one probe at a time (an array reused: use each before
    asking for the next). h1 + i h2 stays below 2^35 (no wrap), so it is taken mod n_bits
    step by step: two divisions per name instead of one per probe, and no (names, PROBES)
    array (56 MB for a million names)."""
    m = np.uint64(n_bits)
    at = (hashes & np.uint64(0xFFFFFFFF)) % m
    step = ((hashes >> np.uint64(32)) | np.uint64(1)) % m
    wrapped = np.empty_like(at)
    for i in range(PROBES):
        if i:
            at += step  # below 2 m
            np.subtract(at, m, out=wrapped)  # wraps past 2^63 where at < m
            np.minimum(at, wrapped, out=at)  # at mod m: half the time of a masked subtract
        yield at.view(np.int64)  # below n_bits


def might_contain(filter_bytes: np.ndarray, name: str) -> bool:
    """False only when ``name`` is certainly not among the names the filter was built of."""
    n_bits = len(filter_bytes) * 8
    if not n_bits:
        return True
    h = int(name_hashes([name])[0])
    at, step = (h & 0xFFFFFFFF) % n_bits, ((h >> 32) | 1) % n_bits
    for i in range(PROBES):
        if i:
            at = (at + step) % n_bits
        if not (int(filter_bytes[at >> 3]) >> (7 - (at & 7))) & 1:
            return False
    return True
