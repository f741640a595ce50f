"""ML batches: every dataset once per pass, in a seeded order, read ahead in the background."""

from __future__ import annotations

import numpy as np
import pytest

import atlas


@pytest.fixture
def store(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    rng = np.random.default_rng(3)
    for i in range(23):
        ds = store.create_dataset(f"d{i:02d}")
        ds.define_array("field", "float32", ["lat", "lon"], [6, 8], [3, 8],
                        fill_value=float("nan"))
        ds.write_array("field", [0, 0], rng.random((6, 8), dtype=np.float32))
    store.create_dataset("no_field")
    store.flush()
    return store


def _reference(store, names, start=None, shape=None):
    return np.stack([store.open_dataset(n).read_array("field", start, shape) for n in names])


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_batches_cover_every_dataset_once_and_match_reads(store, prefetch):
    seen = []
    for names, batch in store.batches("field", batch_size=5, seed=7, prefetch=prefetch):
        assert batch.shape == (len(names), 6, 8)
        np.testing.assert_array_equal(batch, _reference(store, names))
        seen.extend(names)
    assert sorted(seen) == [f"d{i:02d}" for i in range(23)]  # "no_field" is skipped


def test_same_seed_gives_same_order_and_shuffle_off_keeps_creation_order(store):
    first = [n for names, _ in store.batches("field", batch_size=4, seed=1) for n in names]
    again = [n for names, _ in store.batches("field", batch_size=4, seed=1) for n in names]
    other = [n for names, _ in store.batches("field", batch_size=4, seed=2) for n in names]
    plain = [n for names, _ in store.batches("field", batch_size=4, shuffle=False) for n in names]
    assert first == again
    assert first != other
    assert plain == [f"d{i:02d}" for i in range(23)]


def test_drop_last_drops_the_short_batch_and_windows_apply(store):
    sizes = [len(n) for n, _ in store.batches("field", batch_size=5, drop_last=True, seed=0)]
    assert sizes == [5, 5, 5, 5]
    names, batch = next(store.batches("field", ["d03", "d01"], batch_size=2, shuffle=False,
                                      start=[1, 2], shape=[4, 3]))
    assert names == ["d03", "d01"]
    np.testing.assert_array_equal(batch, _reference(store, names, [1, 2], [4, 3]))


def test_bad_arguments_fail_before_iteration(store):
    with pytest.raises(ValueError, match="batch_size"):
        store.batches("field", batch_size=0)
    with pytest.raises(ValueError, match="prefetch"):
        store.batches("field", prefetch=-1)
    with pytest.raises(KeyError, match="no_field"):
        store.batches("field", ["d00", "no_field"])
    with pytest.raises(atlas.ArrayNotFoundError, match="nothing"):  # as stacked reads say
        store.batches("nothing")
    with pytest.raises(TypeError, match="batch_size must be an int >= 1, got 2.0"):
        store.batches("field", batch_size=2.0)
    with pytest.raises(TypeError, match="prefetch"):
        store.batches("field", prefetch=True)
    # numpy's ints are ints
    first = next(iter(store.batches("field", batch_size=np.int64(2), prefetch=np.int32(0),
                                    shuffle=False)))
    assert len(first[0]) == 2


def test_closing_early_stops_the_reader_thread(store):
    import threading

    it = store.batches("field", batch_size=2, prefetch=2)
    next(it)
    it.close()
    assert not any(t.name == "atlas-prefetch" and t.is_alive() for t in threading.enumerate())


def test_read_errors_reach_the_consumer(store, tmp_path):
    path = tmp_path / "s"
    for seg in (path / "segments").rglob("*.seg"):
        data = bytearray(seg.read_bytes())
        data[20] ^= 0xFF  # inside the first chunk record
        seg.write_bytes(bytes(data))
    fresh = atlas.Atlas.open(path)
    with pytest.raises(atlas.CorruptionError):
        for _ in fresh.batches("field", batch_size=30, shuffle=False):
            pass


def test_torch_adapter_yields_tensors_when_torch_is_installed(store):
    torch = pytest.importorskip("torch")
    from atlas.ml import torch_dataset

    batches = list(torch_dataset(store, "field", batch_size=10, seed=0))
    assert all(isinstance(b, torch.Tensor) for _, b in batches)
    names = [n for ns, _ in batches for n in ns]
    assert sorted(names) == [f"d{i:02d}" for i in range(23)]
    # where= picks the datasets as Atlas.batches does (the docs give both the same keywords)
    where = "field.max < 0.98"  # about half of them
    picked = [n for ns, _ in torch_dataset(store, "field", batch_size=4, shuffle=False,
                                           where=where) for n in ns]
    assert picked == [n for ns, _ in store.batches("field", batch_size=4, shuffle=False,
                                                   where=where) for n in ns]
    assert 0 < len(picked) < 23 and picked == store.select(where)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_batches_kept_by_the_caller_or_viewed_are_never_overwritten(store, prefetch):
    kept, views = [], []
    for i, (names, batch) in enumerate(store.batches("field", batch_size=2, seed=5,
                                                     prefetch=prefetch)):
        if i % 3 == 0:
            kept.append((names, batch))  # the batch itself
        elif i % 3 == 1:
            views.append((names, batch[:, 1:3]))  # only a view of it
    for names, batch in kept:
        np.testing.assert_array_equal(batch, _reference(store, names))
    for names, view in views:
        np.testing.assert_array_equal(view, _reference(store, names)[:, 1:3])


def test_batch_arrays_dropped_by_the_caller_are_reused(store):
    import weakref

    earlier, reused = [], 0
    for names, batch in store.batches("field", batch_size=2, seed=5, prefetch=1):
        np.testing.assert_array_equal(batch, _reference(store, names))
        # each batch is a view; a reused array is the same base, a fresh one a new object
        reused += any(ref() is batch.base for ref in earlier)
        earlier.append(weakref.ref(batch.base))
    assert len(earlier) == 12 and reused >= 6


def test_torch_tensors_from_batches_keep_their_values(store):
    torch = pytest.importorskip("torch")
    from atlas.ml import torch_dataset

    kept = list(torch_dataset(store, "field", batch_size=2, seed=4))
    for names, tensor in kept:
        np.testing.assert_array_equal(tensor.numpy(), _reference(store, names))


def test_what_the_caller_does_to_a_dropped_batch_does_not_reach_later_batches(store):
    for names, batch in store.batches("field", batch_size=2, seed=5, prefetch=1):
        assert batch.shape == (len(names), 6, 8) and batch.flags.writeable
        np.testing.assert_array_equal(batch, _reference(store, names))
        batch.shape = (len(names), 48)  # reshaped in place, then made read-only, then dropped
        batch.setflags(write=False)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_batches_made_before_a_flush_that_rebased_read_their_own_datasets(tmp_path, prefetch):
    """The flush moved this handle's new datasets above another writer's commit: batches made
    before it read the other writer's data under these names (their slots, found once)."""
    atlas.Atlas.create(tmp_path / "s").close()
    mine, other = atlas.Atlas.open(tmp_path / "s"), atlas.Atlas.open(tmp_path / "s")
    mine.write_array_across_stacked("t", [f"n{i}" for i in range(6)],
                                    np.arange(1.0, 7.0).reshape(6, 1))
    other.write_array_across_stacked("t", [f"w{i}" for i in range(6)],
                                     np.arange(70.0, 76.0).reshape(6, 1))
    other.flush()
    seen = {}
    for k, (names, batch) in enumerate(mine.batches("t", batch_size=1, shuffle=False,
                                                    prefetch=prefetch)):
        if k == 1:
            mine.flush()  # rebases: n0..n5 get new slots
        seen[names[0]] = float(batch[0, 0])
    assert seen == {f"n{i}": float(i + 1) for i in range(6)}


def test_batches_made_before_a_resize_say_so_instead_of_corruption(tmp_path):
    store = atlas.Atlas.create(tmp_path / "s")
    store.write_array_across_stacked("t", ["a", "b", "c"], np.zeros((3, 8, 6)))
    store.flush()
    it = store.batches("t", batch_size=1, shuffle=False, prefetch=0)
    next(it)
    store.open_dataset("b").resize_array("t", [5, 6])
    with pytest.raises(ValueError, match="resized or redefined since batches"):
        next(it)
    assert store.verify().ok


def test_writing_and_flushing_while_batches_read_ahead_on_the_same_handle(tmp_path):
    """The read-ahead thread and the writes raced on the pending rows: a bare BufferError
    (the write half done) or an IndexError from a copy loop."""
    store = atlas.Atlas.create(tmp_path / "s")
    n = 24
    store.write_array_across_stacked("t", [f"d{i}" for i in range(n)], np.zeros((n, 64, 64)),
                                     chunk_shape=[16, 16])
    store.flush()
    for rep in range(3):
        for k, (names, batch) in enumerate(store.batches("t", batch_size=4, prefetch=3,
                                                         seed=rep)):
            assert np.all(batch == batch[:, :1, :1])  # each dataset one value throughout
            for i in range(n):
                store.open_dataset(f"d{i}").write_array("t", [0, 0], np.full((64, 64), k, float))
            if k % 2:
                store.flush()
    store.flush()
    back = atlas.Atlas.open(tmp_path / "s").read_array_across_stacked("t")
    np.testing.assert_array_equal(back, np.full((n, 64, 64), n // 4 - 1))
    assert atlas.Atlas.open(tmp_path / "s").verify().ok
