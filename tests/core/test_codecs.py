"""Codecs round-trip chunk bytes, reject damaged input as CorruptionError, and checksum right."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import atlas
from atlas import codecs

PAYLOADS = [b"", b"x", bytes(range(256)) * 40, np.arange(5000, dtype=np.float64).tobytes(),
            np.random.default_rng(0).bytes(10000)]


@pytest.mark.parametrize("codec", codecs.CODECS)
@pytest.mark.parametrize("raw", PAYLOADS, ids=lambda b: f"{len(b)}B")
def test_every_codec_round_trips_bytes_exactly(codec, raw):
    codec_id = codecs.CODEC_IDS[codec]
    stored = codecs.encode(codec_id, raw, codecs.DEFAULT_LEVELS[codec])
    assert bytes(codecs.decode(codec_id, stored, len(raw))) == raw
    assert codecs.CODEC_NAMES[codec_id] == codec


@pytest.mark.parametrize("raw", PAYLOADS, ids=lambda b: f"{len(b)}B")
def test_decoding_into_a_buffer_gives_the_same_bytes_and_refuses_the_same_damage(raw):
    """A zstd frame decoded into a caller's buffer (what bulk reads do, to spare an
    allocation per block) equals the plain decode; a claim of another size, a truncated
    frame or a buffer too small for the claim is refused with CorruptionError."""
    stored = codecs.encode(1, raw, 1)
    buffer = bytearray(len(raw) + 16)
    view = codecs.decode(1, stored, len(raw), into=buffer)
    assert bytes(view) == raw and (not raw or view.obj is buffer)
    if not raw:
        return
    for bad, claimed, size in ((stored, len(raw) + 1, len(raw) + 1),
                               (stored[:-3], len(raw), len(raw)),
                               (stored, len(raw), len(raw) - 1)):
        with pytest.raises(atlas.CorruptionError):
            codecs.decode(1, bad, claimed, into=bytearray(size))


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressing_codecs_shrink_redundant_data(codec):
    raw = bytes(100_000)
    assert len(codecs.encode(codecs.CODEC_IDS[codec], raw, 1)) < len(raw) // 20


@pytest.mark.parametrize("codec", codecs.CODECS)
def test_a_wrong_decoded_length_raises_corruption_error(codec):
    raw = bytes(range(200))
    codec_id = codecs.CODEC_IDS[codec]
    stored = codecs.encode(codec_id, raw, 1)
    with pytest.raises(atlas.CorruptionError):
        codecs.decode(codec_id, stored, len(raw) + 7)


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_garbage_input_raises_corruption_error_not_a_codec_exception(codec):
    with pytest.raises(atlas.CorruptionError):
        codecs.decode(codecs.CODEC_IDS[codec], b"\xff" * 64, 1000)


def test_unknown_codec_id_raises_corruption_error():
    with pytest.raises(atlas.CorruptionError, match="codec"):
        codecs.decode(9, b"abc", 3)


def test_unknown_codec_name_raises_value_error_listing_the_codecs():
    with pytest.raises(ValueError, match="zstd, lz4, none"):
        codecs.check_codec("snappy")
    assert codecs.check_codec("lz4") == "lz4"


def test_checksum_is_crc32c():
    # the standard CRC-32C (Castagnoli) check value of b"123456789"
    assert codecs.checksum(b"123456789") == 0xE3069283
    assert codecs.checksum(b"") == 0
    data = np.arange(100, dtype=np.int32)
    assert codecs.checksum(memoryview(data.tobytes())) == codecs.checksum(data.tobytes())


def test_checksum_detects_every_single_bit_flip():
    data = bytearray(b"atlas chunk")
    base = codecs.checksum(bytes(data))
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        assert codecs.checksum(bytes(flipped)) != base


def test_zstd_is_safe_to_use_from_many_threads_at_once():
    rng = np.random.default_rng(1)
    payloads = [rng.integers(0, 4, 20000, dtype=np.uint8).tobytes() for _ in range(8)]
    errors = []

    def work(raw):
        try:
            for _ in range(30):
                stored = codecs.encode(1, raw, 3)
                assert bytes(codecs.decode(1, stored, len(raw))) == raw
        except BaseException as err:  # collected: a thread cannot fail the test itself
            errors.append(err)

    threads = [threading.Thread(target=work, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("codec, level, error, match", [
    ("zstd", 99, ValueError, "level 99 is not a zstd level"),
    ("zstd", 2.5, TypeError, "level must be an int, got 2.5"),
    ("zstd", True, TypeError, "level must be an int, got True"),
    ("lz4", 3, ValueError, "codec lz4 has no compression levels"),
    ("none", 1, ValueError, "codec none has no compression levels"),
])
def test_a_level_the_codec_cannot_take_is_refused_before_the_store_is_made(tmp_path, codec,
                                                                          level, error, match):
    # a store made with it could never be written (zstd refused it at every write)
    with pytest.raises(error, match=match):
        atlas.Atlas.create(tmp_path / "s", codec=codec, level=level)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("level", [-5, 3, 19, np.int8(7)])
def test_stores_at_any_zstd_level_write_and_read_back(tmp_path, level):
    data = np.linspace(0, 1, 5000).reshape(50, 100)
    with atlas.Atlas.create(tmp_path / "s", level=level) as store:
        store.write_array_across_stacked("v", [f"d{i}" for i in range(50)], data)
    store = atlas.Atlas.open(tmp_path / "s")
    assert store.level == int(level)
    np.testing.assert_array_equal(store.read_array_across_stacked("v"), data)
