"""Dask-backed variables are written one block at a time: one ``write_array`` per block, the
dask chunk shape as the on-disk chunk shape (unless ``chunks=`` overrides it), and peak memory
near one chunk per variable whatever the variable's size (checked in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import atlas


@pytest.fixture
def spy_writes(monkeypatch):
    """Every write_array call as (array, start, data shape)."""
    calls = []
    original = atlas.DatasetView.write_array

    def spy(self, name, start, data):
        calls.append((name, tuple(start), np.shape(data)))
        return original(self, name, start, data)

    monkeypatch.setattr(atlas.DatasetView, "write_array", spy)
    return calls


def test_each_dask_block_is_one_write_array_call(tmp_path, spy_writes):
    values = np.arange(10 * 12, dtype=np.float32).reshape(10, 12)
    data = da.from_array(values, chunks=(4, 5))
    ds = xr.Dataset({"v": (("y", "x"), data), "w": ("x", np.arange(12))})
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    writes = [c for c in spy_writes if c[0] == "v"]
    expected = [((r0, c0), (r, c))
                for r0, r in zip((0, 4, 8), (4, 4, 2)) for c0, c in zip((0, 5, 10), (5, 5, 2))]
    assert sorted(w[1:] for w in writes) == sorted(expected)
    assert [c for c in spy_writes if c[0] == "w"] == [("w", (0,), (12,))]
    np.testing.assert_array_equal(store.open_dataset("d").read_array("v"), values)


def test_dask_chunk_shape_becomes_the_on_disk_chunk_shape(tmp_path):
    ds = xr.Dataset({"v": (("t", "y", "x"), da.zeros((6, 8, 9), chunks=(1, 4, 9))),
                     "irregular": ("t", da.from_array(np.arange(6.0), chunks=((2, 3, 1),)))})
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d")
    view = store.open_dataset("d")
    assert view.array_meta("v")["chunk_shape"] == [1, 4, 9]
    assert view.array_meta("irregular")["chunk_shape"] == [3]  # the largest block
    back = store.to_xarray("d")
    assert back["v"].chunks == ((1,) * 6, (4, 4), (9,))
    xr.testing.assert_identical(back.compute(), ds.compute())


def test_chunks_override_with_unaligned_blocks_reads_back_exactly(tmp_path, spy_writes):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(10, 12))
    ds = xr.Dataset({"v": (("y", "x"), da.from_array(values, chunks=(3, 5))),
                     "n": (("y",), np.arange(10, dtype=np.int64))})
    store = atlas.Atlas.create(tmp_path / "store")
    store.add_xr_dataset(ds, "d", chunks={"v": [4, 4], "n": [3]})
    assert len([c for c in spy_writes if c[0] == "v"]) == 4 * 3  # still one per dask block
    view = store.open_dataset("d")
    assert view.array_meta("v")["chunk_shape"] == [4, 4]
    assert view.array_meta("n")["chunk_shape"] == [3]
    np.testing.assert_array_equal(view.read_array("v"), values)
    store.flush()
    back = atlas.Atlas.open(tmp_path / "store").to_xarray("d")
    assert back["v"].chunks == ((4, 4, 2), (4, 4, 4))
    np.testing.assert_array_equal(back["v"].values, values)
    xr.testing.assert_identical(back.compute(), ds.compute())


CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np, dask, dask.array as da, xarray as xr
    import atlas

    # blocks are computed on dask's thread pool; pin its size so that per-thread allocator
    # arenas (which keep freed blocks) do not scale the measurement with the machine's cores
    dask.config.set(num_workers=2)

    path, rows, cols, chunk_rows, n_vars = sys.argv[1], *map(int, sys.argv[2:6])

    def fill_block(block_info=None):
        # a fresh, fully allocated block whose value is its block number
        info = block_info[None]
        return np.full(info["chunk-shape"], float(info["chunk-location"][0]), np.float64)

    chunks = ((chunk_rows,) * (rows // chunk_rows), (cols,))
    ds = xr.Dataset({f"v{i}": (("row", "col"), da.map_blocks(
        fill_block, chunks=chunks, dtype=np.float64, meta=np.empty((0, 0))))
        for i in range(n_vars)})
    with atlas.Atlas.create(path) as store:
        store.add_xr_dataset(ds, "d")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    view = atlas.Atlas.open(path).open_dataset("d")
    for i in range(n_vars):
        assert view.array_meta(f"v{i}")["chunk_shape"] == [chunk_rows, cols]
        stats = view.array_stats(f"v{i}")
        assert (stats["min"], stats["max"]) == (0.0, rows // chunk_rows - 1), stats
        last = view.read_array(f"v{i}", [rows - chunk_rows, 0], [chunk_rows, cols])
        assert (last == rows // chunk_rows - 1).all()
    print(peak)
""")


def peak_rss(tmp_path, name: str, *args: int) -> int:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / name), *map(str, args)],
                            check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


def test_streaming_ingest_peak_memory_stays_near_one_chunk_per_variable(tmp_path):
    n_vars, cols, chunk_rows = 2, 1024, 128
    chunk_bytes = chunk_rows * cols * 8  # 1 MiB
    # allowed growth over the baseline: a few chunk-sized buffers per variable (the block, its
    # bytes, the compressed copy) plus allocator slack; each variable is 10x that
    cap = n_vars * 4 * chunk_bytes + (8 << 20)
    rows = 10 * cap // (cols * 8) // chunk_rows * chunk_rows + chunk_rows
    assert rows * cols * 8 >= 10 * cap
    baseline = peak_rss(tmp_path, "tiny", 4, 4, 4, n_vars)  # same imports, a tiny ingest
    big = peak_rss(tmp_path, "big", rows, cols, chunk_rows, n_vars)
    growth = big - baseline
    assert growth <= cap, (f"peak RSS grew {growth / 2**20:.1f} MiB over the baseline "
                           f"{baseline / 2**20:.1f} MiB; allowed {cap / 2**20:.1f} MiB for "
                           f"{n_vars} variables of {rows * cols * 8 / 2**20:.0f} MiB each")
