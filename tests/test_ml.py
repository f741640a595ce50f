"""``atlas.ml.torch_dataset`` under a torch ``DataLoader``: with worker processes every dataset
is read once per pass, and the batches come in the order of one shuffled pass."""

from __future__ import annotations

import numpy as np
import pytest

import atlas

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

from atlas.ml import torch_dataset  # noqa: E402

NAMES = [f"d{i:02d}" for i in range(23)]


@pytest.fixture
def store(tmp_path):
    with atlas.Atlas.create(tmp_path / "s") as store:
        for i, name in enumerate(NAMES):
            ds = store.create_dataset(name)
            ds.define_array("field", "float32", ["lat", "lon"], [4, 5])
            ds.write_array("field", [0, 0], np.full((4, 5), i, np.float32))
        store.create_dataset("no_field")
    return atlas.Atlas.open(tmp_path / "s")


@pytest.fixture
def read_log(tmp_path, monkeypatch):
    """A file with one line per stacked read (the number of datasets it read), written by
    whichever process reads: the DataLoader's workers are forked with this patch in place."""
    log = tmp_path / "reads.log"
    original = atlas.Atlas._read

    def logged(self, array, slots, *args):
        with open(log, "a") as f:
            f.write(f"{len(slots)}\n")
        return original(self, array, slots, *args)

    monkeypatch.setattr(atlas.Atlas, "_read", logged)
    return lambda: sum(int(n) for n in log.read_text().split()) if log.exists() else 0


def passes(loader) -> list[list[str]]:
    out = []
    for names, tensor in loader:
        assert isinstance(tensor, torch.Tensor)
        np.testing.assert_array_equal(tensor[:, 0, 0].numpy(),
                                      [NAMES.index(n) for n in names])
        out.append(list(names))
    return out


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 3 workers on 2 cores
@pytest.mark.parametrize("workers", [2, 3])
def test_workers_read_each_dataset_once_and_yield_one_pass_in_order(store, read_log, workers):
    single = passes(DataLoader(torch_dataset(store, "field", batch_size=4, seed=9),
                               batch_size=None))
    assert read_log() == len(NAMES)
    loader = DataLoader(torch_dataset(store, "field", batch_size=4, seed=9), batch_size=None,
                        num_workers=workers, multiprocessing_context="fork")
    parallel = passes(loader)
    assert read_log() == 2 * len(NAMES)  # not workers x len(NAMES)
    assert parallel == single  # the same batches, in the same order
    assert sorted(n for batch in parallel for n in batch) == NAMES


def test_without_a_seed_the_workers_agree_on_a_new_shuffle_each_pass(store, read_log):
    loader = DataLoader(torch_dataset(store, "field", batch_size=5), batch_size=None,
                        num_workers=2, multiprocessing_context="fork")
    first, second = passes(loader), passes(loader)
    for one in (first, second):
        assert sorted(n for batch in one for n in batch) == NAMES  # each once: one shuffle
    assert first != second  # a fresh order per pass (23! orders: equal by chance ~never)
    assert read_log() == 2 * len(NAMES)


def test_drop_last_and_len_count_the_batches_of_a_pass(store):
    ds = torch_dataset(store, "field", batch_size=5, seed=1, drop_last=True)
    assert len(ds) == 4
    loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork")
    got = passes(loader)
    assert [len(b) for b in got] == [5, 5, 5, 5]
    assert len(torch_dataset(store, "field", batch_size=5)) == 5
    with pytest.raises(KeyError, match="nothing"):
        torch_dataset(store, "nothing")
    with pytest.raises(ValueError, match="batch_size"):
        torch_dataset(store, "field", batch_size=0)


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_workers_started_by_spawn_or_forkserver_unpickle_the_dataset(store, start_method):
    """spawn is the default start method on macOS and Windows: the dataset travels pickled
    (a class made inside torch_dataset did not pickle), and the batches are those of one
    process."""
    single = passes(DataLoader(torch_dataset(store, "field", batch_size=4, seed=3),
                               batch_size=None))
    loader = DataLoader(torch_dataset(store, "field", batch_size=4, seed=3), batch_size=None,
                        num_workers=2, multiprocessing_context=start_method)
    assert passes(loader) == single


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_spawned_workers_read_the_commit_the_dataset_was_made_at(store, start_method):
    # commits after the dataset was made (a dataset of it deleted, values overwritten) do not
    # reach workers that unpickle it: they read what the names were chosen from
    ds = torch_dataset(store, "field", batch_size=4, seed=3)
    single = passes(DataLoader(ds, batch_size=None))
    with atlas.Atlas.open(store.location) as writer:
        writer.delete_dataset("d05")
        writer.open_dataset("d07").write_array("field", [0, 0], np.full((4, 5), -1, np.float32))
    loader = DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context=start_method)
    assert passes(loader) == single


def test_a_dataset_made_from_unflushed_changes_is_not_sent_to_spawned_workers(store):
    """Spawned workers read the commit the dataset was made at, which does not hold the
    handle's unflushed writes the dataset showed in this process: they read the old values."""
    store.open_dataset("d03").write_array("field", [0, 0], np.full((4, 5), -1, np.float32))
    ds = torch_dataset(store, "field", batch_size=4, seed=3)
    here = {n: float(t[0, 0]) for names, tensor in DataLoader(ds, batch_size=None)
            for n, t in zip(names, tensor)}
    assert here["d03"] == -1  # this process reads its own writes
    loader = DataLoader(ds, batch_size=None, num_workers=1, multiprocessing_context="spawn")
    with pytest.raises(atlas.UnflushedChangesError, match="'field' .* not flushed then"):
        list(loader)
    store.flush()
    again = DataLoader(torch_dataset(store, "field", batch_size=4, seed=3), batch_size=None,
                       num_workers=1, multiprocessing_context="spawn")
    values = {n: float(t[0, 0]) for names, tensor in again for n, t in zip(names, tensor)}
    assert values["d03"] == -1 and values["d02"] == NAMES.index("d02")
