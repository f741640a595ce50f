"""Case-insensitive file systems (item 5 of issue 17).

On macOS and Windows ``T`` and ``t`` name one file, and a name may come back in another Unicode
normalisation. Format version 2 keys data by generation and a random hex id, never by an array
or dataset name, so arrays ``T`` and ``t`` (or ``É`` composed and decomposed) can no longer share
a folder that a sweep or a compaction then empties. These tests run the store on a storage that
folds every key as such a file system does (``CaseFolding``: the first spelling of a key is the
one listed) and check that no two keys atlas writes ever fold together, whatever the names.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest

import atlas
from atlas.storage import StorageWrapper
from atlas.storage._obstore import ObjectStorage

NAMES = ["T", "t", "temp", "TEMP", "\u00c9t\u00e9", "E\u0301te\u0301", "stra\u00dfe", "STRASSE"]
KEYED = ("get", "get_range", "get_ranges", "put", "delete", "spill_path", "publish",
         "release_spill", "discard", "read_manifest", "commit", "remove_unused")


def fold(key: str) -> str:
    return unicodedata.normalize("NFC", key).casefold()


class CaseFolding(StorageWrapper):
    """Every key folded before it reaches the inner storage; listings give each key as it was
    first written. ``collisions``: distinct keys that landed on one file."""

    def __init__(self, inner):
        super().__init__(inner)
        self.spelling: dict[str, str] = {}
        self.collisions: set[tuple[str, str]] = set()

    def _fold(self, key: str) -> str:
        folded = fold(key)
        first = self.spelling.setdefault(folded, key)
        if first != key:
            self.collisions.add((first, key))
        return folded

    def list(self, prefix: str = ""):
        return [(self.spelling.get(key, key), size, mtime)
                for key, size, mtime in self.inner.list(fold(prefix))]

    def keys(self, prefix: str = ""):
        return [self.spelling.get(key, key) for key in self.inner.keys(fold(prefix))]


def _keyed(op):
    def call(self, key, *args):
        return getattr(StorageWrapper, op)(self, self._fold(key), *args)
    return call


for _op in KEYED:
    setattr(CaseFolding, _op, _keyed(_op))


def _memory():
    from obstore.store import MemoryStore

    return ObjectStorage(MemoryStore())


def _values(i: int, name: str) -> np.ndarray:
    return np.arange(12, dtype=np.float32).reshape(3, 4) * (i + 1) + len(name.encode())


def test_names_that_fold_together_keep_their_own_data(tmp_path):
    storage = CaseFolding(_memory())
    store = atlas.Atlas.create(storage)
    for name in NAMES:  # datasets whose names fold together, each with arrays that do too
        view = store.create_dataset(name)
        for i, array in enumerate(NAMES):
            view.define_array(array, "float32", ["y", "x"], [3, 4], [2, 2])
            view.write_array(array, [0, 0], _values(i, name))
            view.set_attribute(array, i)
        store.flush()  # a commit per dataset: several segments and parts per array name
    store.delete_dataset(NAMES[1])
    store.flush()
    assert store.verify(repair=True).removed == []
    store.compact(grace=0)  # rewrites everything and deletes what it replaced
    assert not storage.collisions, storage.collisions
    back = atlas.Atlas.open(storage)
    assert back.verify().ok
    assert sorted(back.list_datasets()) == sorted(n for n in NAMES if n != NAMES[1])
    for name in back.list_datasets():
        view = back.open_dataset(name)
        assert sorted(view.list_arrays()) == sorted(NAMES)
        for i, array in enumerate(NAMES):
            np.testing.assert_array_equal(view.read_array(array), _values(i, name))
            assert view.get_attribute(array) == i


@pytest.mark.parametrize("folding", [False, True], ids=["plain", "case-folding"])
def test_tags_that_differ_only_in_case_are_refused_on_every_storage(folding):
    storage = CaseFolding(_memory()) if folding else _memory()
    store = atlas.Atlas.create(storage)
    store.create_dataset("d")
    store.flush()
    store.tag("Spring")
    with pytest.raises(atlas.AlreadyExistsError, match="only in case"):
        store.tag("spring")
    assert store.tags() == {"Spring": 1}
    assert atlas.Atlas.open(storage, version="Spring").list_datasets() == ["d"]
    if folding:
        assert not storage.collisions
