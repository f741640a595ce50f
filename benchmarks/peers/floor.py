"""The decode floor: compressed chunks decoded by the plain codec library, no store logic.

Given the compressed bytes of the chunks a read needs and their decoded sizes, decode them with a
fixed pool of threads (2 by default, one decompressor context per thread, since python-zstandard
contexts are not thread-safe) into one preallocated buffer. ``floor_time / atlas_time`` is the
store's efficiency: 1.0 means the store adds nothing over raw decoding.

The bytes are exactly those atlas stored (``_atlas_adapter.stored_chunks``); when atlas is not part
of a run, :func:`compress_window_chunks` compresses the same chunks from the generated data.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import product

import numpy as np

from atlas import kernels
from benchmarks.cases import ArrayLayout, Sample, window_start_shape

CODECS = ("zstd", "lz4", "lz4_frame", "none")  # "lz4": raw block without size, as atlas stores
SHUFFLED = ("zstd", "lz4")  # "zstd+shuffle4": bytes of 4-byte values shuffled, then zstd
DEFAULT_THREADS = 2


@dataclass
class FloorInput:
    """Compressed chunks, their decoded sizes and where each lands in the output buffer."""

    chunks: list[bytes]
    decoded_sizes: np.ndarray  # int64, one per chunk
    codec: str | list[str]  # one for every chunk, or one per chunk
    offsets: np.ndarray  # int64, len(chunks) + 1; offsets[-1] is the total decoded size

    @classmethod
    def from_chunks(cls, chunks: list[bytes], decoded_sizes: Iterable[int],
                    codec: str | list[str]):
        for name in {codec} if isinstance(codec, str) else set(codec):
            base, width = split_shuffle(name)
            if base not in CODECS or (width > 1 and base not in SHUFFLED):
                raise ValueError(f"codec must be one of {CODECS} (zstd and lz4 with "
                                 f"'+shuffle<width>'), got {name!r}")
        sizes = np.asarray(list(decoded_sizes), dtype=np.int64)
        if len(sizes) != len(chunks) or not isinstance(codec, str) and len(codec) != len(chunks):
            raise ValueError(f"{len(chunks)} chunks but {len(sizes)} decoded sizes"
                             + ("" if isinstance(codec, str) else f" and {len(codec)} codecs"))
        offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        return cls(chunks=chunks, decoded_sizes=sizes, codec=codec, offsets=offsets)

    def codec_of(self, i: int) -> str:
        return self.codec if isinstance(self.codec, str) else self.codec[i]

    @property
    def compressed_bytes(self) -> int:
        return sum(len(c) for c in self.chunks)

    @property
    def decoded_bytes(self) -> int:
        return int(self.offsets[-1])

    def new_buffer(self) -> np.ndarray:
        return np.empty(self.decoded_bytes, dtype=np.uint8)


class _ThreadContexts(threading.local):
    """One decompressor per pool thread, created on first use."""

    zstd = None


_contexts = _ThreadContexts()
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="floor")
    return _pools[threads]


def _zstd_context():
    if _contexts.zstd is None:
        import zstandard

        _contexts.zstd = zstandard.ZstdDecompressor()
    return _contexts.zstd


def split_shuffle(codec: str) -> tuple[str, int]:
    """("zstd", 4) for "zstd+shuffle4", ("zstd", 1) for "zstd"."""
    base, _, shuffle = codec.partition("+shuffle")
    return base, int(shuffle) if shuffle.isdigit() else 1


def _unshuffle(shuffled: bytes, out: memoryview, width: int) -> None:
    """Byte k of each ``width``-byte value back from the k-th run of ``shuffled`` (bytes after
    the last whole value are stored as they are), with atlas's compiled loop: the fastest
    unshuffle at hand (numpy's column copies take 4-7x as long), so that the floor stays a
    floor for a store that uses it."""
    src = np.frombuffer(shuffled, np.uint8)
    dst = np.frombuffer(out, np.uint8)
    n = len(src) // width
    kernels.unshuffle_bytes(src, dst, width, 0, n)
    dst[n * width :] = src[n * width :]


def _decompress(codec: str, chunk: bytes, size: int):
    if codec == "zstd":
        return _zstd_context().decompress(chunk, max_output_size=size)
    if codec == "lz4":
        import lz4.block

        return lz4.block.decompress(chunk, uncompressed_size=size)
    if codec == "lz4_frame":
        import lz4.frame

        return lz4.frame.decompress(chunk)
    return chunk


def _decode_range(floor: FloorInput, out: memoryview, first: int, stop: int) -> None:
    """Decode chunks ``first:stop`` into their slots of ``out``: each decompressed, then copied
    (or unshuffled) into place. (Decompress-then-copy beats zstd's ``stream_reader(...)
    .readinto`` into the slot: 1.3 vs 1.0 GB/s on 260 KB chunks, equal on 34 KB ones; python-lz4
    cannot decode into a caller's buffer.)"""
    offsets = floor.offsets
    for i in range(first, stop):
        codec, width = split_shuffle(floor.codec_of(i))
        size = int(floor.decoded_sizes[i])
        decoded = _decompress(codec, floor.chunks[i], size)
        if len(decoded) != size:
            raise ValueError(f"chunk {i} decoded to {len(decoded)} bytes, expected {size}")
        slot = out[offsets[i] : offsets[i + 1]]
        if width > 1:
            _unshuffle(decoded, slot, width)
        else:
            slot[:] = decoded


def _partition(offsets: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Split chunks into ``parts`` contiguous runs of about equal decoded size."""
    n = len(offsets) - 1
    if n == 0:
        return []
    targets = offsets[-1] * np.arange(1, parts) / parts
    # cut after the first chunk whose end reaches each target
    cuts = [0, *(np.searchsorted(offsets[1:], targets, side="left") + 1).tolist(), n]
    cuts = [min(max(c, 0), n) for c in cuts]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def decode(
    floor: FloorInput, out: np.ndarray | None = None, threads: int = DEFAULT_THREADS
) -> np.ndarray:
    """Decode every chunk of ``floor`` into ``out`` (uint8, preallocated) on ``threads`` threads."""
    if out is None:
        out = floor.new_buffer()
    if out.nbytes < floor.decoded_bytes:
        raise ValueError(f"output buffer holds {out.nbytes} bytes, need {floor.decoded_bytes}")
    view = memoryview(out).cast("B")
    ranges = _partition(floor.offsets, threads)
    if threads <= 1 or len(ranges) <= 1:
        for first, stop in ranges:
            _decode_range(floor, view, first, stop)
        return out
    futures = [_pool(threads).submit(_decode_range, floor, view, a, b) for a, b in ranges]
    for future in futures:
        future.result()
    return out


def decode_chunks(
    chunks: list[bytes],
    decoded_sizes: Iterable[int],
    codec: str = "zstd",
    out: np.ndarray | None = None,
    threads: int = DEFAULT_THREADS,
) -> np.ndarray:
    """Convenience form of :func:`decode` taking the raw ``list[bytes]`` and codec name."""
    return decode(FloorInput.from_chunks(chunks, decoded_sizes, codec), out=out, threads=threads)


def _compressor(codec: str, level: int):
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=level).compress
    if codec == "lz4":
        import lz4.block

        return lambda data: lz4.block.compress(data, store_size=False)
    if codec == "lz4_frame":
        import lz4.frame

        return lz4.frame.compress
    if codec == "none":
        return bytes
    raise ValueError(f"codec must be one of {CODECS}, got {codec!r}")


def _chunks_in_window(
    shape: tuple[int, ...], chunk_shape: tuple[int, ...], start: list[int], count: list[int]
) -> Iterable[tuple[slice, ...]]:
    """Slices (into the full array) of every chunk that intersects the window."""
    ranges = []
    for size, chunk, begin, n in zip(shape, chunk_shape, start, count):
        if n == 0:
            return []
        ranges.append(range(begin // chunk, (begin + n - 1) // chunk + 1))
    return [
        tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(coords, chunk_shape, shape))
        for coords in product(*ranges)
    ]


def compress_window_chunks(
    samples: Iterable[Sample],
    layout: dict[str, ArrayLayout],
    window: dict[str, slice],
    codec: str = "zstd",
    level: int = 3,
) -> FloorInput:
    """Compress, per sample and variable, every chunk a ``window`` read has to decode.

    Stand-in for the bytes atlas stored: same chunk grid, same codec, C-order chunk bytes.
    Edge chunks are cut to the array bounds.
    """
    compress = _compressor(codec, level)
    chunks: list[bytes] = []
    sizes: list[int] = []
    for sample in samples:
        for name, spec in layout.items():
            data = sample.raw.data_vars[name].data
            start, count = window_start_shape(spec, window)
            for selection in _chunks_in_window(spec.shape, spec.chunk_shape, start, count):
                raw = np.ascontiguousarray(data[selection]).tobytes()
                chunks.append(compress(raw))
                sizes.append(len(raw))
    return FloorInput.from_chunks(chunks, sizes, codec)
