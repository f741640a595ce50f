"""Window reads copy from blocks decoded side by side (``_read.GROUP_BYTES`` at a time): every
codec, shuffled or not, blocks of one chunk and of many, groups that fill and start again,
blocks too big to join a group, on one thread and across the decode pool, against numpy."""

from __future__ import annotations

import numpy as np
import pytest

import atlas
from atlas.core import _read


def _fields(rng, n: int, shape) -> np.ndarray:
    base = np.sin(np.linspace(0, 6, int(np.prod(shape)))).reshape(shape)
    return (base[None] * 10 + rng.normal(size=(n, *shape))).astype(np.float32)


@pytest.mark.parametrize("codec,shuffle", [("zstd", True), ("zstd", False), ("lz4", True),
                                           ("lz4", False), ("none", False)])
@pytest.mark.parametrize("group_bytes", [1 << 22, 40_000], ids=["one-group", "many-groups"])
def test_windows_across_grouped_blocks_match_numpy(tmp_path, rng, monkeypatch, codec, shuffle,
                                                   group_bytes):
    monkeypatch.setattr(_read, "GROUP_BYTES", group_bytes)
    # 240 fields of 5,400 bytes, three to a block: reads of over 64 blocks skip the handle's
    # block cache and take the grouped copies
    fields = _fields(rng, 240, (30, 45))
    names = [f"f{i:03d}" for i in range(len(fields))]
    with atlas.Atlas.create(tmp_path / "s", codec, block_size=1 << 14,
                            shuffle=shuffle) as store:
        store.write_array_across_stacked("one", names, fields, dims=["y", "x"])
        store.write_array_across_stacked("grid", names, fields, dims=["y", "x"],
                                         chunk_shape=[15, 23])
    store = atlas.Atlas.open(tmp_path / "s", read_only=True)
    picks = [names[i] for i in rng.permutation(len(names))[:200]]
    rows = [names.index(p) for p in picks]
    for array in ("one", "grid"):
        got = store.read_array_across_stacked(array, picks, start=[4, 10], shape=[20, 30])
        assert np.array_equal(got, fields[rows, 4:24, 10:40])
        # whole rows of a one-chunk field: byte runs, not boxes
        got = store.read_array_across_stacked(array, picks, start=[4, 0], shape=[20, 45])
        assert np.array_equal(got, fields[rows, 4:24])
        corners = rng.integers(0, [30 - 8, 45 - 8], size=(len(picks), 2))
        got = store.read_array_across_stacked(array, picks, start=corners, shape=[8, 8])
        for k, (y, x) in enumerate(corners.tolist()):
            assert np.array_equal(got[k], fields[rows[k], y : y + 8, x : x + 8])


def test_blocks_bigger_than_a_group_are_copied_from_alone(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(_read, "GROUP_BYTES", 4_000)  # every one-field block is bigger
    fields = _fields(rng, 100, (30, 45))
    names = [f"f{i}" for i in range(100)]
    with atlas.Atlas.create(tmp_path / "s", block_size=1 << 12) as store:
        store.write_array_across_stacked("t", names, fields, dims=["y", "x"])
    store = atlas.Atlas.open(tmp_path / "s", read_only=True)
    got = store.read_array_across_stacked("t", names, start=[1, 2], shape=[25, 40])
    assert np.array_equal(got, fields[:, 1:26, 2:42])
