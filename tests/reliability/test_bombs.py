"""Decompression bombs: every decode is bounded by what the format says it must be (item 7 of
issue 17).

Before the fix (format version 1) a 32 KiB manifest payload expanding to 1 GiB was decompressed
whole before it failed, a chunk record claiming 1 GiB decoded on a 10-cell array allocated
1 GiB (and verify() called the store sound), and an lz4 record claiming more than 2**31 bytes
raised a raw OverflowError. On format version 2 the same holds for roots, blocks and sections:
a root frame declaring more than 256 MiB, a block claiming more decoded bytes than its chunks
end at, a float chunk claiming more than its cells hold, are refused with CorruptionError
before anything is allocated; a zstd frame that does not declare its size is decoded a step at
a time, never allocating what a record claims; verify() checks blocks without keeping them
decoded. The memory claims are measured in a fresh interpreter (``_bomb_script.py``): its peak
resident memory must not grow by anything near the bomb's size."""

from __future__ import annotations

import json
import shutil
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
V1_STORE = Path(__file__).parent.parent / "data" / "v1_store"
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


def _run(root: Path, action: str, array: str = "a") -> dict:
    done = subprocess.run([sys.executable, str(SCRIPT), str(root), action, array],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("version", [2, 1])
def test_a_root_bomb_is_refused_before_it_is_decompressed(tmp_path, bomb, version):
    """A root payload of 32 KiB declaring 1 GiB (version 2: more than its 256 MiB limit;
    version 1, still opened: more than 1024 times its size)."""
    root = tmp_path / "store"
    if version == 2:
        _store(root)
    else:
        shutil.copytree(V1_STORE, root)
    _forge.write_root_payload(root, bomb, version)
    out = _run(root, "open")
    assert out.get("error") == "CorruptionError" and "manifest.atlas" in out["message"], out
    assert out["peak_growth"] < GROWTH_LIMIT, out
    record("bombs-root", version=version, payload=len(bomb), declared=BOMB,
           peak_growth=out["peak_growth"])
    SEEN[f"root bomb refused (version {version})"] += 1


@pytest.mark.parametrize("array", ["a", "s"])
@pytest.mark.parametrize("chunk_claims", ["its size", "the block"])
def test_a_block_claiming_a_huge_decoded_size_is_refused_and_reported(tmp_path, bomb, array,
                                                                     chunk_claims):
    """A block of 32 KiB that really expands to 1 GiB, its index row claiming that much, holding
    the array's one chunk. ``its size``: the chunk says 80 bytes (a block never holds more than
    its chunks: refused from the index); ``the block``: the chunk claims all 1 GiB (a float
    chunk of 10 cells cannot: refused from the schema; a string chunk can hold that much, so
    reads and verify() decode it, as they would a real one, and find it is not 3 strings).
    verify() reports the others without decoding the block whole."""
    root = tmp_path / "store"
    _store(root)
    length = 80 if chunk_claims == "its size" else BOMB
    key = _forge.forge_block(root, "d", array, bomb, BOMB, codecs.CODEC_IDS["zstd"], length)
    out = _run(root, "read", array)
    assert out.get("error") == "CorruptionError" and key in out["message"], out
    if array == "a" or chunk_claims == "its size":
        assert out["peak_growth"] < GROWTH_LIMIT, out
    growth = out["peak_growth"]
    out = _run(root, "verify", array)
    assert any(key in p for p in out["problems"]), out
    if array == "a" or chunk_claims == "its size":
        assert out["peak_growth"] < GROWTH_LIMIT, out
    record("bombs-block", array=array, chunk_claims=chunk_claims, stored=len(bomb),
           claimed=BOMB, peak_growth_read=growth, peak_growth_verify=out["peak_growth"])
    SEEN["block bomb refused"] += 1


@pytest.mark.parametrize("claimed", [2**36, 2**40])
def test_a_frame_that_does_not_declare_its_size_is_decoded_in_bounded_memory(tmp_path, claimed):
    """A zstd frame without a content size, under an index row claiming 64 GiB or 1 TiB:
    before the fix the decoder allocated the claim up front (MemoryError, not CorruptionError,
    on any machine with less memory)."""
    root = tmp_path / "store"
    _store(root)
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(1 << 20))
    key = _forge.forge_block(root, "d", "s", frame, claimed, codecs.CODEC_IDS["zstd"])
    for action in ("read", "verify"):
        out = _run(root, action, "s")
        found = [out.get("message", "")] if action == "read" else out["problems"]
        assert out.get("error", "CorruptionError") == "CorruptionError", out
        assert any(key in p for p in found), out
        assert out["peak_growth"] < GROWTH_LIMIT, out
    SEEN["unsized frame bounded"] += 1


@pytest.mark.parametrize("section", [["chunks"], ["blocks"]])
def test_a_section_claiming_a_huge_size_is_refused_in_bounded_memory(tmp_path, section):
    """A segment index section whose footer claims 2**35 decoded bytes, its frame not saying
    how much it holds: before the fix the decoder allocated the claim up front (MemoryError on
    any machine with less memory than that)."""
    root = tmp_path / "store"
    _store(root)
    key = _forge.refs(root, "a")[0][0]
    huge = 1 << 35

    def unsized(c):
        c.section(section).sized = False

    def lie(entry):
        if entry[0] == section:
            entry[3] += huge
            entry[6][-1][2] += huge
    _forge.forge_file(root, key, unsized, lie=lie)
    for action in ("read", "verify"):
        out = _run(root, action)
        found = [out.get("message", "")] if action == "read" else out["problems"]
        assert out.get("error", "CorruptionError") == "CorruptionError", out
        assert any(key in p for p in found), out
        assert out["peak_growth"] < GROWTH_LIMIT, out
    SEEN["section claim refused"] += 1


@pytest.mark.parametrize("array,claimed", [("a", 2**31 + 8), ("s", 2**31 + 8), ("a", 2**40),
                                           ("s", 10**6)])
def test_an_lz4_block_claiming_more_than_it_can_hold_is_corruption(tmp_path, array, claimed):
    """lz4's block format cannot describe more than 2**31 bytes, nor expand a byte more than
    255 times: such claims are refused before decoding (before the fix: OverflowError)."""
    root = tmp_path / "store"
    _store(root)
    stored = lz4.block.compress(bytes(80), store_size=False)
    key = _forge.forge_block(root, "d", array, stored, claimed, codecs.CODEC_IDS["lz4"])
    store = atlas.Atlas.open(root)
    with pytest.raises(atlas.CorruptionError, match=key):
        store.open_dataset("d").read_array(array)
    assert any(key in p for p in store.verify().problems)
    SEEN["lz4 claim refused"] += 1


@pytest.mark.parametrize("content_size", [True, False])
def test_a_zstd_frame_that_disagrees_with_its_index_row_is_refused(tmp_path, bomb, content_size):
    """The index row tells the truth (80 bytes) but the frame holds 1 GiB: refused from the
    frame header when it declares its size, else stopped after 80 bytes."""
    root = tmp_path / "store"
    _store(root)
    frame = bomb if content_size else zstandard.ZstdCompressor(
        level=1, write_content_size=False).compress(bytes(1 << 24))
    key = _forge.forge_block(root, "d", "a", frame, 80, codecs.CODEC_IDS["zstd"])
    out = _run(root, "read")
    assert out.get("error") == "CorruptionError" and key in out["message"], out
    assert out["peak_growth"] < GROWTH_LIMIT, out
    assert any(key in p for p in atlas.Atlas.open(root).verify().problems)
    SEEN["frame/index mismatch refused"] += 1


def test_a_version_1_chunk_record_claiming_a_huge_size_is_refused_and_reported(tmp_path, bomb):
    """Version 1 (still read): a record of 32 KiB expanding to 1 GiB, claiming it, as chunk 0 of
    a 10-cell float32 array."""
    root = tmp_path / "store"
    shutil.copytree(V1_STORE, root)
    key = _forge.forge_v1_chunk(root, "prof_0", "temp", bomb, BOMB, codecs.CODEC_IDS["zstd"])
    out = _run(root, "read", "temp")
    assert out.get("error") == "CorruptionError" and key in out["message"], out
    assert out["peak_growth"] < GROWTH_LIMIT, out
    out = _run(root, "verify", "temp")
    assert any(key in p for p in out["problems"]), out
    assert out["peak_growth"] < GROWTH_LIMIT, out
    SEEN["version-1 record bomb refused"] += 1


def test_decode_refuses_every_claim_beyond_its_bounds_before_decoding():
    frame = zstandard.ZstdCompressor().compress(bytes(100))
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(100))
    for call in (lambda: codecs.decode(1, frame, 100, expected_length=80),
                 lambda: codecs.decode(1, frame, 80),
                 lambda: codecs.decode(1, frame, -1),
                 lambda: codecs.decode(1, unsized, 2**50),
                 lambda: codecs.check_decodes(1, unsized, 2**50),
                 lambda: codecs.check_decodes(1, frame, 2**30),
                 lambda: codecs.decompress_zstd(unsized, 2**50, "m"),
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
    assert bytes(codecs.decode(1, unsized, 100)) == bytes(100)
    assert codecs.decompress_frame(frame, "m", max_size=100) == bytes(100)
    big = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(5 << 20))
    codecs.check_decodes(1, big, 5 << 20)  # decoded a step at a time, and complete
    with pytest.raises(atlas.CorruptionError):
        codecs.check_decodes(1, big, (5 << 20) - 1)
    lz = lz4.block.compress(bytes(1000), store_size=False)
    assert bytes(codecs.decode(2, lz, 1000)) == bytes(1000)
