"""Chunk codecs (zstd, lz4, none) and the crc32c checksum every stored chunk carries.

python-zstandard (de)compressor objects are not thread-safe, so each thread gets its own.
"""

from __future__ import annotations

import threading

import crc32c as _crc32c
import lz4.block
import zstandard

from atlas.errors import CorruptionError

CODECS = ("zstd", "lz4", "none")
CODEC_IDS = {"none": 0, "zstd": 1, "lz4": 2}
CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}
DEFAULT_LEVELS = {"zstd": 1, "lz4": 0, "none": 0}

_local = threading.local()


def checksum(data) -> int:
    """crc32c (Castagnoli) of any contiguous bytes-like object, hardware-accelerated."""
    return _crc32c.crc32c(data)


def check_codec(codec: str) -> str:
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {', '.join(CODECS)}")
    return codec


def _zstd_compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "zstd_c", None)
    if cache is None:
        cache = _local.zstd_c = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    return cache[level]


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "zstd_d", None)
    if d is None:
        d = _local.zstd_d = zstandard.ZstdDecompressor()
    return d


def encode(codec_id: int, raw, level: int) -> bytes:
    """Compress one chunk's raw bytes."""
    if codec_id == 1:
        return _zstd_compressor(level).compress(raw)
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
        raw = _zstd_decompressor().decompress(stored, max_output_size=decoded_length)
    except zstandard.ZstdError as err:
        raise CorruptionError(f"{where}: does not decode ({err})") from err
    if len(raw) != decoded_length:
        raise CorruptionError(f"{where}: decoded to {len(raw)} bytes, expected {decoded_length}")
    return raw


def decode(codec_id: int, stored, decoded_length: int):
    """Decompress one chunk; raise CorruptionError when the bytes do not decode to the length.

    Messages do not name the file: callers know it and prefix it.
    """
    try:
        if codec_id == 1:
            raw = _zstd_decompressor().decompress(stored, max_output_size=decoded_length)
        elif codec_id == 2:
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
