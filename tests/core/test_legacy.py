"""Stores of format version 1 keep opening, and ``atlas upgrade`` converts them crash-safely.

``tests/data/v1_store`` was written by the last version-1 atlas, and ``v1_expected.json`` holds
what that version read back from it (see ``tests/data/README.md``).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import atlas
from atlas.core import upgrade

DATA = Path(__file__).parent.parent / "data"
EXPECTED = json.loads((DATA / "v1_expected.json").read_text())


@pytest.fixture
def v1_store(tmp_path) -> Path:
    path = tmp_path / "v1"
    shutil.copytree(DATA / "v1_store", path)
    return path


def _value(raw):
    """A value as version 1 returned it, from its JSON description."""
    if isinstance(raw, dict) and "dtype" in raw and "shape" in raw:
        if raw["dtype"] == "object":
            return np.array(raw["array"], dtype=object).reshape(raw["shape"])
        return np.frombuffer(base64.b64decode(raw["bits"]), raw["dtype"]).reshape(raw["shape"])
    if isinstance(raw, dict) and "bytes" in raw:
        return base64.b64decode(raw["bytes"])
    if isinstance(raw, dict) and "np" in raw:
        return np.frombuffer(base64.b64decode(raw["bits"]), raw["np"])[0]
    if isinstance(raw, dict) and raw.get("float") == "nan":
        return float("nan")
    return raw


def _same(got, want) -> bool:
    if isinstance(want, np.ndarray):
        if want.dtype == object:
            return isinstance(got, np.ndarray) and got.tolist() == want.tolist()
        return (isinstance(got, np.ndarray) and got.dtype == want.dtype and
                got.tobytes() == want.tobytes())
    if isinstance(want, float) and want != want:
        return isinstance(got, float) and got != got
    if isinstance(want, np.generic):
        return type(got) is type(want) and got.tobytes() == want.tobytes()
    if isinstance(got, np.datetime64):
        return str(got) == want  # json.dump wrote datetime64 values as str
    return got == want and type(got) is type(want)


def _check_reads_like_version_1(store: atlas.Atlas) -> None:
    assert store.list_datasets() == EXPECTED["datasets"]
    assert store.list_arrays() == EXPECTED["arrays"]
    for name, content in EXPECTED["content"].items():
        view = store.open_dataset(name)
        assert view.list_arrays() == content["arrays"], name
        for array in content["arrays"]:
            assert _same(view.read_array(array), _value(content["values"][array])), (name, array)
            meta = view.array_meta(array)
            want_meta = content["meta"][array]
            assert meta["shape"] == want_meta["shape"] and meta["dtype"] == want_meta["dtype"]
            stats = view.array_stats(array)
            for key, raw in content["stats"][array].items():
                assert _same(stats[key], _value(raw)) or (
                    isinstance(stats[key], (int, float)) and stats[key] == _value(raw)), \
                    (name, array, key, stats[key], raw)
            for key, raw in content["array_attrs"][array].items():
                assert _same(view.get_array_attribute(array, key), _value(raw))
        attrs = view.attributes()
        assert list(attrs) == list(content["attrs"])
        for key, raw in content["attrs"].items():
            assert _same(attrs[key], _value(raw)), (name, key, attrs[key], raw)


def test_a_version_1_store_reads_exactly_what_version_1_read(v1_store):
    store = atlas.Atlas.open(v1_store)
    assert store.format_version == 1
    _check_reads_like_version_1(store)
    names = store.list_datasets()
    stacked = store.read_array_across_stacked("temp", names)
    for i, name in enumerate(names):
        np.testing.assert_array_equal(stacked[i], store.open_dataset(name).read_array("temp"))
    assert store.verify().ok


def test_writing_to_a_version_1_store_names_the_upgrade(v1_store):
    store = atlas.Atlas.open(v1_store)
    for write in (lambda: store.create_dataset("new"), lambda: store.delete_dataset("prof_0"),
                  lambda: store.open_dataset("prof_0").set_attribute("k", 1),
                  lambda: store.compact()):
        with pytest.raises(atlas.FormatError, match="atlas upgrade"):
            write()
    _check_reads_like_version_1(atlas.Atlas.open(v1_store))


def test_damage_to_a_version_1_segment_is_found(v1_store):
    segment = sorted((v1_store / "segments" / "temp").glob("*.seg"))[-1]
    data = bytearray(segment.read_bytes())
    data[10] ^= 0x20
    segment.write_bytes(bytes(data))
    assert not atlas.Atlas.open(v1_store).verify().ok


def test_upgrade_gives_a_version_2_store_reading_the_same(v1_store):
    result = upgrade(v1_store)
    assert result["upgraded"] and result["format"] == 2
    store = atlas.Atlas.open(v1_store)
    assert store.format_version == 2
    _check_reads_like_version_1(store)
    report = store.verify()
    assert report.ok and report.orphans == []
    # the version-1 files stay for the grace period, then a compact removes them
    old = sorted(p.relative_to(v1_store).as_posix() for p in v1_store.rglob("*.seg")
                 if p.read_bytes()[:8] == b"ATLSEG01")
    assert old and {entry[0] for entry in store._root.retired} >= set(old)
    store.compact(grace=0)
    assert not any(p.read_bytes()[:8] == b"ATLSEG01" for p in v1_store.rglob("*.seg"))
    _check_reads_like_version_1(atlas.Atlas.open(v1_store))
    assert upgrade(v1_store)["upgraded"] is False  # a second upgrade has nothing to do


def test_an_upgraded_store_takes_writes_and_keeps_ids_unique(v1_store):
    upgrade(v1_store)
    store = atlas.Atlas.open(v1_store)
    ds = store.create_dataset("prof_2")  # the name version 1 deleted
    ds.define_array("temp", "float32", ["depth"], [10])
    ds.write_array("temp", [0], np.full(10, 7, np.float32))
    store.open_dataset("prof_0").set_attribute("cycle", 99)
    store.flush()
    back = atlas.Atlas.open(v1_store)
    assert back.list_datasets() == EXPECTED["datasets"] + ["prof_2"]
    assert back.open_dataset("prof_0").get_attribute("cycle") == 99
    np.testing.assert_array_equal(back.open_dataset("prof_2").read_array("temp"),
                                  np.full(10, 7, np.float32))
    np.testing.assert_array_equal(back.open_dataset("prof_1").read_array("temp"),
                                  np.arange(10, dtype=np.float32) + 1)


def test_an_upgrade_that_fails_before_its_commit_leaves_version_1(v1_store, monkeypatch):
    from atlas.storage import LocalStorage

    def fail(*args, **kwargs):
        raise OSError("killed before the commit")

    monkeypatch.setattr(LocalStorage, "commit", fail)
    with pytest.raises(OSError):
        upgrade(v1_store)
    monkeypatch.undo()
    store = atlas.Atlas.open(v1_store)
    assert store.format_version == 1
    _check_reads_like_version_1(store)
    report = store.verify(repair=True)  # what the failed upgrade wrote: orphans
    assert report.ok and report.orphans and report.removed == report.orphans
    assert upgrade(v1_store)["upgraded"]
    _check_reads_like_version_1(atlas.Atlas.open(v1_store))


def test_the_upgrade_command_converts_and_reports(v1_store):
    run = [sys.executable, "-m", "atlas", "upgrade", str(v1_store)]
    done = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "format version 2" in done.stdout and "6 datasets" in done.stdout
    assert atlas.Atlas.open(v1_store).format_version == 2
    again = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to do" in again.stdout
