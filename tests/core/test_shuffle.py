"""Shuffled blocks (format version 5): bytes of 2-, 4- and 8-byte values regrouped by
significance before compressing. Round trips against numpy for every dtype and write path, the
codec byte that records the shuffle, stores created without it, and crafted codec bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
from core_helpers import reopen
from hypothesis import given
from hypothesis import strategies as st

import atlas
from atlas import codecs
from atlas.format import root as root_format

# -- the codec layer ----------------------------------------------------------------------------


@given(raw=st.binary(max_size=3000), width=st.sampled_from([2, 4, 8]))
def test_shuffle_is_undone_exactly_for_any_length(raw, width):
    shuffled = codecs.shuffle(raw, width)
    n = len(raw) // width
    # byte k of value i sits at k * n + i; the bytes after the last whole value stay last
    values = np.frombuffer(raw[: n * width], np.uint8).reshape(n, width)
    assert shuffled[: n * width].tobytes() == values.T.tobytes()
    assert shuffled[n * width :].tobytes() == raw[n * width :]
    back = bytearray(len(raw))
    codecs.unshuffle(shuffled, back, width)
    assert bytes(back) == raw


def shuffles(which: str):
    """Inside it codecs.shuffle/unshuffle use one implementation: "numpy" or "compiled"."""
    return mock.patch.object(codecs, "_compiled", lambda nbytes: which == "compiled")


@given(raw=st.binary(max_size=5000), width=st.sampled_from([2, 4, 8]),
       span=st.tuples(st.integers(0, 5100), st.integers(0, 5100)), pad=st.integers(0, 9))
def test_the_compiled_shuffles_equal_numpys_for_any_length_and_span(raw, width, span, pad):
    with shuffles("numpy"):
        expected = codecs.shuffle(raw, width).tobytes()
    with shuffles("compiled"):
        assert codecs.shuffle(raw, width).tobytes() == expected
    first, end = min(span), max(span)
    outs = {}
    for which in ("numpy", "compiled"):
        # bytes before the output (an unaligned start) and marked bytes the span leaves alone
        buffer = bytearray(b"\xa5" * (pad + len(raw) + 3))
        with shuffles(which):
            codecs.unshuffle(expected, memoryview(buffer)[pad:], width, first, end)
        outs[which] = bytes(buffer)
    assert outs["compiled"] == outs["numpy"]
    got = outs["numpy"][pad : pad + len(raw)]
    n = len(raw) // width
    lo, hi = min(first // width, n) * width, min(-(-min(end, len(raw)) // width), n) * width
    assert got[lo:hi] == raw[lo:hi]  # the values the span touches
    assert got[n * width : end] == raw[n * width : end]  # the tail it touches


def test_the_compiled_unshuffle_refuses_bounds_it_cannot_keep():
    from atlas import kernels

    src, dst = np.zeros(64, np.uint8), np.zeros(64, np.uint8)
    kernels.unshuffle_bytes(src, dst, 4, 0, 16)
    for lo, hi in ((0, 17), (-1, 4), (5, 4)):
        with pytest.raises(IndexError, match="do not fit"):
            kernels.unshuffle_bytes(src, dst, 4, lo, hi)
    with pytest.raises(IndexError, match="do not fit"):
        kernels.unshuffle_bytes(src, dst[:60], 4, 0, 16)
    with pytest.raises(IndexError, match="dst holds 60 bytes"):
        kernels.shuffle_bytes(src, dst[:60], 4)
    with pytest.raises(ValueError, match="must be 2, 4 or 8, got 3"):
        kernels.shuffle_bytes(src, dst, 3)
    with pytest.raises(TypeError, match="1-D uint8"):
        kernels.unshuffle_bytes(src.view(np.uint32), dst, 4, 0, 1)


_NUMPY_UNTIL_LOADED = """
import json, sys
import numpy as np
from atlas import codecs

raw = np.arange(4096, dtype=np.float32).tobytes()
codecs.COMPILE_AFTER = 4 * len(raw)
seen = []
for _ in range(4):
    back = bytearray(len(raw))
    codecs.unshuffle(codecs.shuffle(raw, 4), back, 4)
    assert bytes(back) == raw
    seen.append("numba" in sys.modules)
print(json.dumps(seen))
"""


def test_numpy_shuffles_until_the_process_has_moved_what_loading_the_compiler_costs():
    """A process shuffles with numpy until Numba is loaded or numpy has moved COMPILE_AFTER
    bytes (here lowered to four buffers' worth): the shuffles and unshuffles of the first two
    rounds count four, and the third round loads the compiled loops."""
    out = subprocess.run([sys.executable, "-c", _NUMPY_UNTIL_LOADED], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [False, False, True, True]


@pytest.mark.parametrize("width", [2, 4, 8])
def test_shuffle_takes_any_contiguous_buffer_and_leaves_it_alone(width):
    values = np.random.default_rng(width).normal(size=501).astype(np.float32)
    raw = values.tobytes()[:-1]  # not a whole number of values
    expected = codecs.shuffle(raw, width).tobytes()
    for given in (bytearray(raw), memoryview(raw), np.frombuffer(raw, np.uint8)):
        assert codecs.shuffle(given, width).tobytes() == expected
    whole = codecs.shuffle(values.tobytes(), width).tobytes()
    assert codecs.shuffle(values, width).tobytes() == whole  # an array of another dtype
    assert values.tobytes()[:-1] == raw  # shuffling works on a copy


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
@pytest.mark.parametrize("width", [2, 4, 8])
@pytest.mark.parametrize("big", [False, True], ids=["small", "streamed"])
def test_a_shuffled_block_decodes_to_its_raw_bytes_with_and_without_a_buffer(codec, width, big):
    # small blocks decode in one call, those of STREAM_DECODE_MIN bytes or more into a buffer
    values = 3001 if not big else codecs.STREAM_DECODE_MIN // 8 + 1
    raw = np.random.default_rng(width).normal(size=values).astype(np.float64).tobytes()[:-5]
    assert (len(raw) >= codecs.STREAM_DECODE_MIN) == big
    block_codec = codecs.block_codec(codecs.CODEC_IDS[codec], width)
    assert codecs.split_codec(block_codec) == (codecs.CODEC_IDS[codec], width)
    assert codecs.CODEC_NAMES[codecs.split_codec(block_codec)[0]] == codec
    stored = codecs.encode(block_codec, raw, 1)
    assert bytes(codecs.decode(block_codec, stored, len(raw))) == raw
    buffer = np.zeros(len(raw) + 9, np.uint8)
    view = codecs.decode(block_codec, stored, len(raw), into=buffer)
    assert view.obj is buffer and bytes(view) == raw
    codecs.check_decodes(block_codec, stored, len(raw))  # verify()'s check
    for claimed, size in ((len(raw) + 1, len(raw) + 1), (len(raw) - 1, len(raw)),
                          (len(raw), len(raw) - 1)):
        with pytest.raises(atlas.CorruptionError):
            codecs.decode(block_codec, stored, claimed, into=bytearray(size))


def test_only_the_codec_bytes_writers_make_decode():
    """Codec 0 (none) is never shuffled, widths other than 1, 2, 4, 8 have no code, and high
    bits beyond them are refused as damage."""
    made = {codecs.block_codec(c, w) for c in codecs.CODEC_IDS.values() for w in (1, 2, 4, 8, 16)}
    assert made == set(codecs.BLOCK_CODEC_IDS) == {0, 1, 2, 17, 18, 33, 34, 49, 50}
    assert codecs.block_codec(codecs.CODEC_IDS["none"], 4) == 0
    for byte in range(256):
        if byte in made:
            assert codecs.block_codec(*codecs.split_codec(byte)) == byte
        else:
            with pytest.raises(atlas.CorruptionError, match=f"unknown codec id {byte}"):
                codecs.decode(byte, b"abcd", 4)


def test_shuffling_makes_noisy_floats_smaller():
    values = np.random.default_rng(1).normal(10, 5, 250_000).astype(np.float32).tobytes()
    plain = codecs.encode(codecs.CODEC_IDS["zstd"], values, 1)
    shuffled = codecs.encode(codecs.block_codec(codecs.CODEC_IDS["zstd"], 4), values, 1)
    assert len(shuffled) < 0.95 * len(plain)


# -- stores -------------------------------------------------------------------------------------

DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64", "int64",
          "uint64", "datetime64[ns]", "str"]


def _values(dtype: str, shape, rng) -> np.ndarray:
    if dtype == "str":
        texts = np.array(["", "a", "long text " * 3, "é"], dtype=object)
        return texts[rng.integers(0, len(texts), shape)]
    if dtype.startswith("datetime"):
        return (np.datetime64("2020-01-01", "ns") + rng.integers(0, 10**15, shape)).astype(dtype)
    if dtype.startswith("float"):
        return rng.normal(3, 2, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -5000), min(info.max, 5000), shape).astype(dtype)


def _widths(store: atlas.Atlas, array: str) -> set[int]:
    index = store._committed_index(array)
    return {codecs.split_codec(int(c))[1] for c in index.block_codec}


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_round_trips_through_shuffled_blocks(tmp_path, rng, dtype):
    """Stacked rows and per-dataset arrays (small ones packed, one big enough for a block of
    its own) read back equal after a flush, a reopen and a compaction; each block is shuffled
    by its values' width (2, 4 or 8 bytes; bytes and strings not at all)."""
    store = atlas.Atlas.create(tmp_path / "s")
    names = [f"d{i:03d}" for i in range(120)]
    rows = _values(dtype, (120, 6), rng)
    if dtype != "str":
        store.write_array_across_stacked("v", names, rows)
    else:
        for name, row in zip(names, rows):
            view = store.create_dataset(name)
            view.define_array("v", "str", ["n"], [6])
            view.write_array("v", [0], row)
    big = _values(dtype, (200, 120), rng)
    view = store.create_dataset("big")
    view.define_array("w", "str" if dtype == "str" else dtype, ["y", "x"], [200, 120])
    view.write_array("w", [0, 0], big)
    store.flush()
    itemsize = 1 if dtype == "str" else np.dtype(dtype).itemsize
    expected = {itemsize} if itemsize in (2, 4, 8) else {1}
    for step in ("flushed", "compacted"):
        back = reopen(tmp_path / "s")
        assert back.format_version == 6 and back.shuffle
        assert _widths(back, "v") == expected and _widths(back, "w") == expected, step
        np.testing.assert_array_equal(back.read_array_across_stacked("v", names), rows)
        np.testing.assert_array_equal(back.open_dataset(names[17]).read_array("v"), rows[17])
        np.testing.assert_array_equal(back.open_dataset("big").read_array("w"), big)
        np.testing.assert_array_equal(
            back.open_dataset("big").read_array("w", [3, 5], [50, 7]), big[3:53, 5:12])
        assert back.verify().problems == []
        back.compact()


def test_a_store_created_without_shuffle_stays_unshuffled_and_format_2(tmp_path, rng):
    """shuffle=False: no block shuffled, a version-2 root without the key; the same values in
    a shuffling store read back the same and take less room."""
    values = rng.normal(10, 5, (3000, 50)).astype(np.float32)
    names = [f"p{i:05d}" for i in range(3000)]
    sizes = {}
    for shuffle in (False, True):
        path = tmp_path / f"s{shuffle}"
        store = atlas.Atlas.create(path, shuffle=shuffle)
        store.write_array_across_stacked("temp", names, values)
        store.flush()
        back = reopen(path)
        assert back.shuffle is shuffle
        assert back.format_version == (6 if shuffle else 2)
        assert _widths(back, "temp") == ({4} if shuffle else {1})
        doc = json.loads(root_format.decompress_frame(
            root_format.checked_payload((path / "manifest.atlas").read_bytes(), "root"), "root"))
        assert doc.get("shuffle", False) is shuffle
        np.testing.assert_array_equal(back.read_array_across_stacked("temp"), values)
        sizes[shuffle] = sum(f.stat().st_size for f in (path / "segments").iterdir())
    assert sizes[True] < 0.95 * sizes[False]


def test_shuffle_is_off_for_the_none_codec_and_must_be_a_bool(tmp_path):
    assert not atlas.Atlas.create(tmp_path / "n", codec="none").shuffle
    assert atlas.Atlas.create(tmp_path / "l", codec="lz4").shuffle
    for bad in (1, "yes", None):
        with pytest.raises(TypeError, match="shuffle must be True or False"):
            atlas.Atlas.create(tmp_path / "x", shuffle=bad)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_a_root_that_shuffles_must_say_version_6_or_5(tmp_path):
    """A version-4 (or older) document that claims ``shuffle`` is refused: an atlas that knows
    only version 4 would read its blocks as damaged. Version 5 (written before shuffled blocks'
    crcs covered their codec byte) still reads; version 6 without ``shuffle`` does not."""
    import zstandard

    store = atlas.Atlas.create(tmp_path / "s")
    doc = store._root.to_json()
    assert doc["version"] == 6 and doc["shuffle"] is True

    def encoded(version, shuffle):
        forged = dict(doc, version=version, shuffle=shuffle)
        payload = zstandard.ZstdCompressor().compress(json.dumps(forged).encode())
        return root_format.HEADER.pack(root_format.MAGIC, version, codecs.checksum(payload),
                                       len(payload)) + payload

    for version, shuffle in ((4, True), (2, True), (6, False), (5, False), (6, "yes")):
        with pytest.raises(atlas.CorruptionError):
            root_format.decode(encoded(version, shuffle), "crafted")
    older = root_format.decode(encoded(5, True), "older")
    assert older.shuffle and older.format_version == 6  # its next commit says 6


@given(raw=st.binary(max_size=600), width=st.sampled_from([2, 4, 8]), data=st.data())
def test_a_span_of_a_shuffled_block_decodes_exactly_and_leaves_the_rest(raw, width, data):
    first = data.draw(st.integers(0, len(raw)))
    end = data.draw(st.integers(first, len(raw)))
    block_codec = codecs.block_codec(codecs.CODEC_IDS["zstd"], width)
    stored = codecs.encode(block_codec, raw, 1)
    into = bytearray(b"\xee" * len(raw))
    view = codecs.decode(block_codec, stored, len(raw), into=into, span=(first, end))
    assert bytes(view[first:end]) == raw[first:end]
    # only the whole values the span touches are written (and the tail, if it reaches it)
    n = len(raw) // width
    lo, hi = min(first // width, n) * width, min(-(-end // width), n) * width
    assert set(into[:lo]) <= {0xEE}
    if end <= n * width:
        assert set(into[hi:]) <= {0xEE}


@pytest.mark.parametrize("packed", [True, False])
def test_windows_across_many_shuffled_blocks_read_as_numpy(tmp_path, rng, monkeypatch, packed):
    """A stacked read of a window over more than 64 blocks (no block cache: each block decoded
    into a scratch buffer, unshuffled only where the window lies), of packed small chunks and of
    chunks with a block each, equals numpy's slice."""
    from atlas.core import _read

    n, shape = (2000, (4, 5)) if packed else (80, (30, 40))  # 160 B chunks, 25 a block; 9.6 KB
    values = rng.normal(size=(n, *shape))
    names = [f"d{i:04d}" for i in range(n)]
    store = atlas.Atlas.create(tmp_path / "s", block_size=4096)
    store.write_array_across_stacked("f", names, values)
    store.flush()
    back = reopen(tmp_path / "s")
    assert _widths(back, "f") == {8} and len(back._committed_index("f").block_offset) > 64
    spans = []
    needed = _read._needed_spans
    monkeypatch.setattr(_read, "_needed_spans",
                        lambda *a: spans.extend(zip(*needed(*a))) or needed(*a))
    for start, size in (([1, 2], [2, 3]), ([0, 0], list(shape)), ([shape[0] - 1, 2], [1, 1]),
                        ([2, 0], [1, shape[1]]), ([0, 4], [shape[0], 1])):
        spans.clear()
        got = back.read_array_across_stacked("f", names, start, size)
        window = tuple(slice(a, a + w) for a, w in zip(start, size))
        np.testing.assert_array_equal(got, values[(slice(None), *window)])
        if size != list(shape):  # whole chunks are decoded straight into the output
            assert len(spans) > 64 and all(0 <= a < b for a, b in spans)  # the span path
