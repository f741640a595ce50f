"""Chunk codecs (zstd, lz4, none), the byte shuffle before them, and the crc32c checksum every
stored chunk carries.

A block's codec id is one byte: the codec in its low 4 bits, the shuffle in its high 4 bits
(0: none, 1/2/3: bytes of 2/4/8-byte values regrouped by significance before compressing, as
HDF5's and Blosc's shuffle do). Float and integer values compress better and decode faster
shuffled: zstd stores the noisy low bytes as raw runs and the exponent bytes compress well.

python-zstandard (de)compressor objects are not thread-safe, so each thread gets its own.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import crc32c as _crc32c
import lz4.block
import numpy as np
import zstandard

from atlas import kernels
from atlas._memory import thread_buffer
from atlas.errors import CorruptionError

CODECS = ("zstd", "lz4", "none")
CODEC_IDS = {"none": 0, "zstd": 1, "lz4": 2}
CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}
DEFAULT_LEVELS = {"zstd": 1, "lz4": 0, "none": 0}

SHUFFLE_WIDTHS = (1, 2, 4, 8)  # by the high 4 bits of a codec id; 1: not shuffled
CODEC_MASK = 0x0F

_local = threading.local()


def block_codec(codec_id: int, width: int) -> int:
    """The codec id of a block of values ``width`` bytes wide compressed with ``codec_id``:
    shuffled when the codec compresses and the width is one shuffling helps."""
    if codec_id == CODEC_IDS["none"] or width not in SHUFFLE_WIDTHS:
        return codec_id
    return codec_id | (SHUFFLE_WIDTHS.index(width) << 4)


def split_codec(block_codec_id: int) -> tuple[int, int]:
    """(codec id, shuffle width) of a block's codec id; CorruptionError for one no writer makes."""
    codec_id, shuffle = block_codec_id & CODEC_MASK, block_codec_id >> 4
    if codec_id not in CODEC_NAMES or shuffle >= len(SHUFFLE_WIDTHS) or (
            shuffle and codec_id == CODEC_IDS["none"]):
        raise CorruptionError(f"unknown codec id {block_codec_id}")
    return codec_id, SHUFFLE_WIDTHS[shuffle]


# every codec id a block may carry
BLOCK_CODEC_IDS = tuple(sorted({block_codec(c, w) for c in CODEC_IDS.values()
                                for w in SHUFFLE_WIDTHS}))


# little-endian words: byte k of a value is bits 8k..8k+7 (on any host)
_WORDS = {2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}


def shuffle(raw, width: int) -> np.ndarray:
    """``raw``'s bytes regrouped: byte k of every ``width``-byte value, for k = 0, 1, ...; bytes
    after the last whole value stay at the end."""
    src = np.frombuffer(raw, np.uint8)
    n = len(src) // width
    out = np.empty(len(src), np.uint8)
    if _compiled(len(src)):
        kernels.shuffle_bytes(src, out, width)
    else:  # the values as words, shifted right a byte at a time, each pass cast to its low byte
        values = src[: n * width].view(_WORDS[width]).copy()
        for k in range(width):
            np.copyto(out[k * n : (k + 1) * n], values, casting="unsafe")  # the low byte
            if k + 1 < width:
                np.right_shift(values, 8, out=values)
    out[n * width :] = src[n * width :]
    return out


def unshuffle(shuffled, out, width: int, first: int = 0, end: int | None = None) -> None:
    """The inverse of :func:`shuffle` into ``out`` (writable, as long as ``shuffled``), of the
    bytes ``first:end`` at least (the values they touch; the rest of ``out`` is left as it
    was)."""
    src = np.frombuffer(shuffled, np.uint8)
    dst = np.frombuffer(out, np.uint8)
    n = len(src) // width
    end = len(src) if end is None else min(end, len(src))
    lo, hi = min(first // width, n), min(-(-end // width), n)  # the values touched
    if hi > lo and _compiled((hi - lo) * width):
        kernels.unshuffle_bytes(src, dst, width, lo, hi)
    elif hi > lo:  # a column at a time, which numpy copies several times faster than a transpose
        body = dst[lo * width : hi * width].reshape(hi - lo, width)
        for k in range(width):
            body[:, k] = src[k * n + lo : k * n + hi]
    if end > n * width:
        dst[n * width : end] = src[n * width : end]


# The shuffles have two implementations on purpose. The compiled loops are 4-7x faster than
# numpy's (0.04 ms per MiB against 0.18-0.29), but loading Numba costs a process ~0.5 s: more
# than numpy's copies of a first small read or of a whole 40 MB stacked read take. So numpy
# shuffles until the process has the compiler anyway (another kernel loaded it: any read of
# many boxes, any write) or numpy's shuffles have moved COMPILE_AFTER bytes, about what the
# load costs; from then on the compiled loops do all of it.
COMPILE_AFTER = 1 << 30
_numpy_shuffled = 0  # bytes numpy has (un)shuffled in this process (lost updates are harmless)


def _compiled(nbytes: int) -> bool:
    global _numpy_shuffled
    if kernels.loops_loaded() or _numpy_shuffled >= COMPILE_AFTER:
        return sys.byteorder == "little"  # the loops build little-endian words in place
    _numpy_shuffled += nbytes
    return False


def checksum(data) -> int:
    """crc32c (Castagnoli) of any contiguous bytes-like object, hardware-accelerated."""
    return _crc32c.crc32c(data)


_CODEC_BYTES = [bytes([i]) for i in range(256)]


def block_checksum(block_codec_id: int, stored) -> int:
    """A block's crc32c: of its stored bytes, and for a shuffled block of them followed by its
    codec byte, so that an index whose codec byte lost or gained shuffle bits fails the check
    rather than decoding to other values (a one-byte extension of the stored bytes' crc)."""
    crc = _crc32c.crc32c(stored)
    return crc if block_codec_id <= CODEC_MASK else with_codec_byte(crc, block_codec_id)


def with_codec_byte(crc: int, block_codec_id: int) -> int:
    """The crc32c of bytes whose crc32c is ``crc``, followed by the byte ``block_codec_id``."""
    return _crc32c.crc32c(_CODEC_BYTES[block_codec_id], crc)


def check_codec(codec: str) -> str:
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")
    return codec


def check_level(codec: str, level: Any) -> int:
    """``level`` of a store's ``codec``: zstd's levels (negative ones are faster), 0 for lz4
    (its block format has none) and none."""
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
        raise TypeError(f"level must be an int, got {level!r}")
    level = int(level)
    if codec != "zstd":
        if level != 0:
            raise ValueError(f"codec {codec} has no compression levels: level must be 0, got "
                             f"{level}")
        return level
    try:
        zstandard.ZstdCompressor(level=level)
    except (ValueError, zstandard.ZstdError) as err:
        raise ValueError(f"level {level} is not a zstd level ({err}); zstd takes up to "
                         f"{zstandard.MAX_COMPRESSION_LEVEL}, negative levels for speed") from None
    return level


def zstd_compressor(level: int, threads: int = 0) -> zstandard.ZstdCompressor:
    """This thread's compressor at ``level`` (a compressor is not thread-safe); ``threads``:
    zstd's own worker threads for one big frame (the frame is the same format)."""
    cache = getattr(_local, "zstd_c", None)
    if cache is None:
        cache = _local.zstd_c = {}
    key = (level, threads)
    if key not in cache:
        cache[key] = zstandard.ZstdCompressor(level=level, threads=threads)
    return cache[key]


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "zstd_d", None)
    if d is None:
        d = _local.zstd_d = zstandard.ZstdDecompressor()
    return d


def encode(block_codec_id: int, raw, level: int) -> bytes:
    """Compress one block's raw bytes (shuffled first when its codec id says so)."""
    codec_id, width = split_codec(block_codec_id)
    if width > 1:
        raw = shuffle(raw, width)
    if codec_id == 1:
        return zstd_compressor(level).compress(raw)
    if codec_id == 2:
        return lz4.block.compress(raw, store_size=False)
    return bytes(raw)


def decompress_zstd(stored, decoded_length: int, where: str):
    """One zstd frame that must decode to exactly ``decoded_length`` bytes; the frame's declared
    size is checked before anything is allocated, so a forged frame cannot balloon memory."""
    try:
        declared = zstandard.frame_content_size(stored)
    except zstandard.ZstdError as err:
        raise CorruptionError(f"{where}: not a zstd frame ({err})") from err
    if declared not in (decoded_length, -1):
        raise CorruptionError(f"{where}: frame declares {declared} bytes, expected "
                              f"{decoded_length}")
    try:
        raw = _zstd_unsized(stored, decoded_length) if declared == -1 else \
            _zstd_decompressor().decompress(stored, max_output_size=decoded_length)
    except zstandard.ZstdError as err:
        raise CorruptionError(f"{where}: does not decode ({err})") from err
    if len(raw) != decoded_length:
        raise CorruptionError(f"{where}: decoded to {len(raw)} bytes, expected {decoded_length}")
    return raw


STEP = 1 << 20  # frames that do not declare their size are decoded this much at a time


def _zstd_into(stored, decoded_length: int, into: bytearray) -> memoryview:
    """A zstd frame declaring ``decoded_length`` bytes, decoded into ``into``; a frame that
    holds more or less than it declares does not decode (as ``decompress`` refuses it)."""
    view = memoryview(into)[:decoded_length]
    done = 0
    with _zstd_decompressor().stream_reader(stored, read_across_frames=False) as reader:
        while done < decoded_length:
            got = reader.readinto(view[done:])
            if not got:
                break
            done += got
        if done != decoded_length or reader.read(1):
            raise zstandard.ZstdError(f"frame decodes to another size than it declares "
                                      f"({decoded_length})")
    return view


def _zstd_unsized(stored, decoded_length: int, keep: bool = True):
    """A zstd frame that does not declare its size, decoded a step at a time (``keep``: the
    bytes, else only their count): memory follows what the frame really holds, never the size
    a record claims (``decompress(max_output_size=n)`` allocates n bytes up front, and raises
    MemoryError for a claim beyond the machine's memory)."""
    out, count = bytearray(), 0
    with _zstd_decompressor().stream_reader(stored) as reader:
        while count <= decoded_length:
            piece = reader.read(min(STEP, decoded_length + 1 - count))
            if not piece:
                break
            count += len(piece)
            if keep:
                out += piece
    return bytes(out) if keep else count


def check_decodes(codec_id: int, stored, decoded_length: int) -> None:
    """:func:`decode` without keeping the result (``verify()``): a zstd frame is decoded a
    step at a time, so memory stays bounded whatever size the record claims. (A shuffle
    changes no length: the frame alone is checked.)"""
    codec_id = split_codec(codec_id)[0]
    if codec_id != 1 or decoded_length <= STEP:
        decode(codec_id, stored, decoded_length)
        return
    if decoded_length < 0:
        raise CorruptionError(f"chunk claims a negative decoded length {decoded_length}")
    try:
        declared = zstandard.frame_content_size(stored)
        if declared not in (-1, decoded_length):
            raise CorruptionError(f"zstd frame declares {declared} decoded bytes, the index "
                                  f"records {decoded_length}")
        count = _zstd_unsized(stored, decoded_length, keep=False)
    except zstandard.ZstdError as err:
        raise CorruptionError(f"chunk does not decode ({err})") from err
    if count != decoded_length:
        raise CorruptionError(f"chunk decoded to {count} bytes, expected {decoded_length}")


STREAM_DECODE_MIN = 1 << 19  # shuffled blocks this big are decoded into a reused buffer
# lz4's block format cannot describe more than this (LZ4_MAX_INPUT_SIZE), and one byte of it
# expands to at most 255 (a match-length byte of 255)
LZ4_MAX_DECODED = 0x7E000000
LZ4_MAX_RATIO = 255
# metadata frames (the manifest): no real one compresses better than this, a bomb does
FRAME_MAX_RATIO = 1024
FRAME_MIN_LIMIT = 64 << 20


def decode(codec_id: int, stored, decoded_length: int, expected_length: int | None = None,
           into: bytearray | None = None, span: tuple[int, int] | None = None):
    """Decompress one chunk; raise CorruptionError when the bytes do not decode to the length.

    Bounded: nothing bigger than ``decoded_length`` is ever allocated, a frame or record that
    claims another size is refused before decoding, and ``expected_length`` (what the format
    says the chunk must hold, when it knows: cells x item size) must equal ``decoded_length``.
    ``into``: a buffer of at least ``decoded_length`` bytes a zstd frame that declares its size
    is decoded into (a view of it is returned): a fresh allocation of a block's size costs
    about half as much as decoding it on these machines. ``span``: (first, end), with
    ``into``: the only bytes the caller will read; a shuffled block is unshuffled there only
    (the rest of ``into`` is left as it was). Messages do not name the file: callers know it
    and prefix it.
    """
    if expected_length is not None and decoded_length != expected_length:
        raise CorruptionError(f"chunk claims {decoded_length} decoded bytes, its array's chunk "
                              f"holds {expected_length}")
    if decoded_length < 0:
        raise CorruptionError(f"chunk claims a negative decoded length {decoded_length}")
    codec_id, width = split_codec(codec_id)
    if width == 1:
        return _decode(codec_id, stored, decoded_length, into)
    # decoded, then unshuffled where the caller wants it. A small block is decoded in one call
    # (a stream reader into a reused buffer costs more Python per block, and on 2 threads more
    # waits for the GIL: 3-5% of a batch of 256 shuffled (180, 360) float32 fields); a big one
    # into this thread's buffer (1 MiB: 0.28 ms against 0.44 ms into fresh bytes)
    scratch = thread_buffer("shuffled", decoded_length) \
        if decoded_length >= STREAM_DECODE_MIN else None
    shuffled = _decode(codec_id, stored, decoded_length, scratch)
    target = memoryview(into if into is not None else bytearray(decoded_length))
    target = target.cast("B")[:decoded_length]
    if len(target) != decoded_length:
        raise CorruptionError(f"chunk claims {decoded_length} decoded bytes, more than the "
                              f"{len(target)} its buffer holds")
    first, end = span if into is not None and span is not None else (0, None)
    unshuffle(shuffled, target, width, first, end)
    return target


def _decode(codec_id: int, stored, decoded_length: int, into):
    """:func:`decode` of an unshuffled codec id, its lengths checked."""
    try:
        if codec_id == 1:
            declared = zstandard.frame_content_size(stored)
            if declared not in (-1, decoded_length):  # -1: the frame does not say
                raise CorruptionError(f"zstd frame declares {declared} decoded bytes, the "
                                      f"index records {decoded_length}")
            if declared == -1:
                raw = _zstd_unsized(stored, decoded_length)
            elif into is not None:
                raw = _zstd_into(stored, decoded_length, into)
            else:
                raw = _zstd_decompressor().decompress(stored, max_output_size=decoded_length)
        elif codec_id == 2:
            if decoded_length > min(LZ4_MAX_DECODED, LZ4_MAX_RATIO * len(stored)):
                raise CorruptionError(f"lz4 record of {len(stored)} bytes cannot decode to "
                                      f"{decoded_length} bytes")
            raw = lz4.block.decompress(stored, uncompressed_size=decoded_length)
        elif codec_id == 0:
            raw = stored
        else:
            raise CorruptionError(f"unknown codec id {codec_id}")
    except (zstandard.ZstdError, lz4.block.LZ4BlockError) as err:
        raise CorruptionError(f"chunk does not decode ({err})") from err
    if len(raw) != decoded_length:
        raise CorruptionError(f"chunk decoded to {len(raw)} bytes, expected {decoded_length}")
    return raw


def decompress_frame(data, where: str, max_size: int | None = None) -> bytes:
    """One zstd frame of metadata (a manifest payload), bounded: the frame must declare its
    size and that size must be at most ``max_size`` (default: ``FRAME_MAX_RATIO`` times the
    compressed size, at least ``FRAME_MIN_LIMIT``), checked before anything is allocated."""
    limit = max(FRAME_MIN_LIMIT, FRAME_MAX_RATIO * len(data)) if max_size is None else max_size
    try:
        declared = zstandard.frame_content_size(data)
        if declared < 0 or declared > limit:
            raise CorruptionError(
                f"{where}: compressed metadata of {len(data)} bytes declares "
                f"{'no' if declared < 0 else declared} decoded size (at most {limit} bytes "
                "accepted); refusing to decompress it")
        raw = _zstd_decompressor().decompress(data, max_output_size=declared)
    except zstandard.ZstdError as err:
        raise CorruptionError(f"{where}: metadata does not decode ({err})") from err
    if len(raw) != declared:
        raise CorruptionError(f"{where}: metadata decoded to {len(raw)} bytes, its frame "
                              f"declares {declared}")
    return raw
