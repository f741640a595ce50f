"""Format version 6: a shuffled block's crc32c covers its codec byte as well as its stored bytes.

Stores written before (version 5: segments whose footer lacks ``codec_in_crc`` and whose crcs
cover the stored bytes only) keep reading and verifying as they did, and their next commit is
version 6. (Forged codec bytes of version-6 segments are among ``test_forged``'s hand-made
forgeries.)"""

from __future__ import annotations

import numpy as np
import pytest

import atlas
from atlas import codecs
from atlas.format import root as root_format
from atlas.format import segment

from . import _forge

NAMES = [f"p{i:03d}" for i in range(300)]


@pytest.fixture
def rng():
    return np.random.default_rng(6)


def _store(path, rng):
    """A shuffling store of packed rows (float32, int16), strings and one own-block array."""
    store = atlas.Atlas.create(path, block_size=4096)
    temp = rng.normal(10, 3, (300, 40)).astype(np.float32)
    counts = rng.integers(-500, 500, (300, 7)).astype(np.int16)
    store.write_array_across_stacked("temp", NAMES, temp)
    store.write_array_across_stacked("count", NAMES, counts)
    for name in NAMES[:20]:
        store.open_dataset(name).define_array("tag", "string", ["n"], [2])
        store.open_dataset(name).write_array("tag", [0], np.array([name, "x"], object))
    store.flush()
    return {"temp": temp, "count": counts}


def _as_version_5(root) -> int:
    """Rewrite every segment as a version-5 writer left it (crcs of the stored bytes only, no
    ``codec_in_crc``) and the root as version 5; returns the shuffled blocks rewritten."""
    shuffled = 0
    for array in _forge.root_doc(root)["segments"]:
        for key, _size, _level in _forge.refs(root, array):
            c = _forge.read_container(str(root / key))
            blocks = c.section(["blocks"])
            offsets, lengths = blocks.column("offset"), blocks.column("stored")
            crcs = [codecs.checksum(c.payload[o - len(c.magic) : o - len(c.magic) + n])
                    for o, n in zip(offsets.tolist(), lengths.tolist())]
            shuffled += int((np.asarray(blocks.column("codec")) > codecs.CODEC_MASK).sum())
            blocks.set("crc", np.array(crcs, np.int64))
            assert c.footer.pop(segment.CODEC_IN_CRC) is True
            _forge.set_ref(root, key, _forge.write_container(str(root / key), c))
    _forge.forge_root(root, lambda doc: doc.update(version=5))
    return shuffled


def _version_on_disk(root) -> int:
    return root_format.HEADER.unpack_from((root / "manifest.atlas").read_bytes())[1]


def test_a_version_5_store_reads_verifies_and_commits_as_version_6(tmp_path, rng):
    root = tmp_path / "s"
    values = _store(root, rng)
    assert _as_version_5(root) > 0
    assert _version_on_disk(root) == 5
    old = atlas.Atlas.open(root)
    assert old.shuffle
    for array, expected in values.items():
        np.testing.assert_array_equal(old.read_array_across_stacked(array, NAMES), expected)
    assert old.open_dataset("p007").read_array("tag").tolist() == ["p007", "x"]
    assert old.verify().problems == []
    # a new commit: its segments say codec_in_crc, the root says 6, the old segments still read
    more = rng.normal(size=(300, 40)).astype(np.float32)
    old.write_array_across_stacked("temp2", NAMES, more)
    old.flush()
    back = atlas.Atlas.open(root)
    assert _version_on_disk(root) == 6 and back.format_version == 6
    np.testing.assert_array_equal(back.read_array_across_stacked("temp2", NAMES), more)
    np.testing.assert_array_equal(back.read_array_across_stacked("temp", NAMES), values["temp"])
    assert back.verify().problems == []
    key = _forge.refs(root, "temp2")[-1][0]
    assert _forge.read_container(str(root / key)).footer[segment.CODEC_IN_CRC] is True
    # one row rewritten, then a compaction: old blocks (copied or linked) under new segments
    values["temp"][3] = -1.5
    back.open_dataset(NAMES[3]).write_array("temp", [0], values["temp"][3])
    back.flush()
    assert len(_forge.refs(root, "temp")) == 2
    back.compact()
    again = atlas.Atlas.open(root)
    (key, _size, _level), = _forge.refs(root, "temp")
    assert _forge.read_container(str(root / key)).footer[segment.CODEC_IN_CRC] is True
    for array, expected in values.items():
        np.testing.assert_array_equal(again.read_array_across_stacked(array, NAMES), expected)
    assert again.verify().problems == []


def test_a_flipped_shuffle_bit_in_a_version_5_segment_goes_unseen_as_it_did(tmp_path, rng):
    """What version 6 fixes, shown on a version-5 segment: nothing covers its codec byte, so a
    block read unshuffled returns other values without an error (the same forgery on a
    version-6 segment is refused: ``test_forged``)."""
    root = tmp_path / "s"
    values = _store(root, rng)
    _as_version_5(root)
    key = _forge.refs(root, "temp")[-1][0]

    def unshuffle_block_0(c):
        blocks = c.section(["blocks"])
        codec = np.array(blocks.column("codec"), np.int64)
        codec[0] &= codecs.CODEC_MASK
        blocks.set("codec", codec)

    _forge.forge_file(root, key, unshuffle_block_0)
    got = atlas.Atlas.open(root).read_array_across_stacked("temp", NAMES)
    assert not np.array_equal(got, values["temp"])


@pytest.mark.parametrize("codec", sorted(codecs.BLOCK_CODEC_IDS))
def test_block_checksum_extends_the_stored_bytes_crc_by_a_shuffled_codec_byte(codec):
    stored = bytes(range(200)) * 3
    plain = codecs.checksum(stored)
    expected = plain if codec <= codecs.CODEC_MASK else codecs.checksum(stored + bytes([codec]))
    assert codecs.block_checksum(codec, stored) == expected
    others = {codecs.block_checksum(other, stored) for other in codecs.BLOCK_CODEC_IDS
              if other > codecs.CODEC_MASK}
    assert len(others) == sum(1 for c in codecs.BLOCK_CODEC_IDS if c > codecs.CODEC_MASK)
