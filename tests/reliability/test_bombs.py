"""Decompression bombs: every decode is bounded by what the format says it must be (item 7 of
issue 17).

Before the fix a 32 KiB manifest payload expanding to 1 GiB was decompressed whole before it
failed, a chunk record claiming 1 GiB decoded on a 10-cell array allocated 1 GiB (and verify()
called the store sound), and an lz4 record claiming more than 2**31 bytes raised a raw
OverflowError. Now a frame or record that claims more than the format allows is refused with
CorruptionError before anything is allocated, and verify() reports it. The memory claims are
measured in a fresh interpreter (``_bomb_script.py``): its peak resident memory must not grow by
anything near the bomb's size."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lz4.block
import numpy as np
import pytest
import zstandard

import atlas
from atlas import codecs

from . import _forge
from ._harness import record

SCRIPT = Path(__file__).with_name("_bomb_script.py")
BOMB = 1 << 30  # decoded bytes a bomb expands to
GROWTH_LIMIT = 128 << 20  # peak memory a refused bomb may cost (the interpreter's own noise)
SEEN: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if SEEN:
        record("bombs", checks=sum(SEEN.values()), outcomes=dict(sorted(SEEN.items())))


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """One zstd frame of 1 GiB of zeros, about 32 KiB, declaring its size in its header."""
    compressor = zstandard.ZstdCompressor(level=1).compressobj(size=BOMB)
    zeros = bytes(1 << 24)
    return b"".join([compressor.compress(zeros) for _ in range(BOMB // len(zeros))]
                    + [compressor.flush()])


def _store(root: Path) -> None:
    with atlas.Atlas.create(root) as store:
        ds = store.create_dataset("d")
        ds.define_array("a", "float64", ["x"], [10], [10])  # one chunk of 80 bytes
        ds.write_array("a", [0], np.arange(10.0))
        ds.define_array("s", "string", ["x"], [3], [3])
        ds.write_array("s", [0], np.array(["a", "b", "c"], dtype=object))


def _run(root: Path, action: str) -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), str(root), action],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_manifest_bomb_is_refused_before_it_is_decompressed(tmp_path, bomb):
    root = tmp_path / "store"
    _store(root)
    _forge.write_manifest_payload(str(root), bomb)
    out = _run(root, "open")
    assert out.get("error") == "CorruptionError" and "manifest.atlas" in out["message"], out
    assert out["peak_growth"] < GROWTH_LIMIT, out
    record("bombs-manifest", payload=len(bomb), declared=BOMB, peak_growth=out["peak_growth"])
    SEEN["manifest bomb refused"] += 1


def test_a_chunk_claiming_a_huge_decoded_size_is_refused_and_reported(tmp_path, bomb):
    root = tmp_path / "store"
    _store(root)
    key = _forge.forge_chunk(str(root), "d", "a", bomb, BOMB, codecs.CODEC_IDS["zstd"])
    out = _run(root, "read")
    assert out.get("error") == "CorruptionError" and key in out["message"], out
    assert out["peak_growth"] < GROWTH_LIMIT, out
    out = _run(root, "verify")
    assert any(key in p for p in out["problems"]), out
    assert out["peak_growth"] < GROWTH_LIMIT, out
    record("bombs-chunk", stored=len(bomb), claimed=BOMB, peak_growth=out["peak_growth"])
    SEEN["chunk bomb refused"] += 1


@pytest.mark.parametrize("array,claimed", [("a", 2**31 + 8), ("s", 2**31 + 8), ("a", 2**40),
                                           ("s", 10**6)])
def test_an_lz4_record_claiming_more_than_it_can_hold_is_corruption(tmp_path, array, claimed):
    root = tmp_path / "store"
    _store(root)
    stored = lz4.block.compress(bytes(80), store_size=False)
    key = _forge.forge_chunk(str(root), "d", array, stored, claimed, codecs.CODEC_IDS["lz4"])
    store = atlas.Atlas.open(root)
    with pytest.raises(atlas.CorruptionError, match=key):
        store.open_dataset("d").read_array(array)
    assert any(key in p for p in store.verify().problems)
    SEEN["lz4 claim refused"] += 1


@pytest.mark.parametrize("content_size", [True, False])
def test_a_zstd_frame_that_disagrees_with_its_index_row_is_refused(tmp_path, bomb, content_size):
    """The index row tells the truth (80 bytes) but the frame holds 1 GiB: refused from the
    frame header when it declares its size, else stopped at 80 bytes."""
    root = tmp_path / "store"
    _store(root)
    frame = bomb if content_size else zstandard.ZstdCompressor(
        level=1, write_content_size=False).compress(bytes(1 << 24))
    key = _forge.forge_chunk(str(root), "d", "a", frame, 80, codecs.CODEC_IDS["zstd"])
    out = _run(root, "read")
    assert out.get("error") == "CorruptionError" and key in out["message"], out
    assert out["peak_growth"] < GROWTH_LIMIT, out
    assert any(key in p for p in atlas.Atlas.open(root).verify().problems)
    SEEN["frame/index mismatch refused"] += 1


def test_decode_refuses_every_claim_beyond_its_bounds_before_decoding():
    frame = zstandard.ZstdCompressor().compress(bytes(100))
    for call in (lambda: codecs.decode(1, frame, 100, expected_length=80),
                 lambda: codecs.decode(1, frame, 80),
                 lambda: codecs.decode(1, frame, -1),
                 lambda: codecs.decode(2, b"\x00" * 4, 2**31 + 8),
                 lambda: codecs.decode(2, b"\x00" * 4, 255 * 4 + 1),
                 lambda: codecs.decode(7, frame, 100),
                 lambda: codecs.decompress_frame(zstandard.ZstdCompressor(
                     write_content_size=False).compress(b"x" * 100), "m"),
                 lambda: codecs.decompress_frame(frame, "m", max_size=99)):
        with pytest.raises(atlas.CorruptionError):
            call()
        SEEN["decode bound"] += 1
    assert bytes(codecs.decode(1, frame, 100, expected_length=100)) == bytes(100)
    assert codecs.decompress_frame(frame, "m", max_size=100) == bytes(100)
    lz = lz4.block.compress(bytes(1000), store_size=False)
    assert bytes(codecs.decode(2, lz, 1000)) == bytes(1000)
