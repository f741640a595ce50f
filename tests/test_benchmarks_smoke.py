"""Smoke run of the benchmark scripts at N = 5: they run end to end, check their own reads
against the generators, and write a result JSON and a chart. No timing is asserted."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("zarr")
pytest.importorskip("matplotlib")


def _result(results_dir, name: str) -> dict:
    path = results_dir / f"{name}.json"
    assert path.exists(), f"{path} was not written"
    assert (results_dir / f"{name}.png").stat().st_size > 0
    return json.loads(path.read_text())


def test_benchmark_workloads_run_at_n5_and_write_results(tmp_path):
    from benchmarks import cold_start, ingest_memory, ml_batches, open_scale, upstream

    out = tmp_path / "results"
    common = ["--quick", "--repeats", "1", "--results-dir", str(out), "--workdir", str(tmp_path)]

    upstream.main(["--case", "profile", "--n", "5", "--write-repeats", "1",
                   "--systems", "atlas,zarr-stacked", *common])
    profile = _result(out, "upstream_profile_n5_quick")
    assert set(profile["phases"]["read"]) == {"atlas", "zarr-stacked", "floor"}
    assert profile["params"]["floor_source"] == "atlas stored bytes"
    # the floor decodes exactly the blocks atlas stored: the 5 small chunks of each of the 4
    # variables share one block
    assert profile["params"]["floor_blocks"] == 4
    assert profile["params"]["floor_decoded_bytes"] == 5 * 4 * 50 * 168 * 4

    ml_batches.main(["--n", "5", "--batches", "2", "--batch-size", "4", "--patch", "8", *common])
    ml = _result(out, "ml_batches_n5_quick")
    assert {"atlas", "atlas-batches", "zarr-loop", "floor"} <= set(ml["phases"]["full"])
    assert "tensorstore-out" in ml["phases"]["patch-each"]
    assert set(ml["phases"]) == {"full", "patch", "patch-each"}

    open_scale.main(["--sizes", "5,10", "--append", "2", "--zarr-write", "2", *common])
    scale = _result(out, "open_scale_n10_quick")
    assert {"atlas@5", "atlas@10", "zarr@5", "zarr@10"} <= set(scale["phases"]["open+list"])

    cold_start.main(["--n", "5", "--runs", "1", "--systems", "atlas,python", *common])
    cold = _result(out, "cold_start_quick")
    assert set(cold["phases"]["process wall"]) == {"atlas", "python"}

    ingest_memory.main(["--chunk-mib", "1", "--chunks", "2", "--vars", "1",
                        "--systems", "atlas,atlas (fixed)", *common])
    ingest = _result(out, "ingest_memory_quick")
    assert set(ingest["phases"]["peak RSS"]) == {"atlas", "atlas (fixed)"}
    assert ingest["targets"][0]["measured"] is not None


def test_tensorstore_reads_the_gridded_case_next_to_zarr_stacked(tmp_path):
    pytest.importorskip("tensorstore")
    from benchmarks import upstream

    out = tmp_path / "results"
    upstream.main(["--case", "gridded", "--n", "2", "--write-repeats", "1", "--systems",
                   "atlas,zarr-stacked", "--quick", "--repeats", "1", "--results-dir", str(out),
                   "--workdir", str(tmp_path)])
    gridded = _result(out, "upstream_gridded_n2_quick")
    assert set(gridded["phases"]["read"]) == {"atlas", "atlas-out", "zarr-stacked",
                                              "tensorstore-out", "floor"}
    tie = [t for t in gridded["targets"] if "TensorStore" in t["claim"]]
    assert len(tie) == 1 and tie[0]["measured"] == pytest.approx(
        gridded["ratios"]["read"]["tensorstore-out"] / gridded["ratios"]["read"]["atlas-out"])


def test_many_small_and_scale_run_tiny_and_write_results(tmp_path):
    for module in ("tensorstore", "zarrs", "pyarrow", "lance"):
        pytest.importorskip(module)
    from benchmarks import many_small, scale

    out = tmp_path / "results"
    common = ["--quick", "--repeats", "1", "--results-dir", str(out), "--workdir", str(tmp_path)]

    many_small.main(["--sizes", "40", *common])
    for variant in ("random", "smooth"):
        small = _result(out, f"many_small_{variant}_n40_quick")
        systems = {"atlas", "atlas (fresh process)", "zarr", "zarr+zarrs", "tensorstore",
                   "tensorstore (buffer)", "parquet", "lance"}
        assert set(small["phases"]["read temp"]) == systems
        assert set(small["phases"]["read lat"]) == systems
        assert {"atlas", "zarr", "parquet", "lance"} <= set(small["phases"]["size on disk"])
        assert small["params"]["atlas_write_method"]
        assert small["versions"]["tensorstore"] and small["versions"]["lance"]

    scale.main(["--sizes", "20,40", "--flushes", "3", *common])
    grown = _result(out, "scale_n40_quick")
    assert set(grown["phases"]["ingest"]) == {
        f"{method}@{n}" for method in ("per-dataset API", "stacked write") for n in (20, 40)}
    assert set(grown["phases"]["open+list"]) >= {"atlas@40", "parquet names (to list)@40"}
    assert grown["phases"]["append one + flush: bytes written"]["atlas@40"]["median_s"] > 0
    assert set(grown["phases"]["fresh stacked read temp, many flushes vs compacted"]) == {
        "after 3 one-dataset flushes@40", "after compact()@40"}
    assert all(t["measured"] is not None for t in grown["targets"]
               if "stacked ingest" not in t["claim"])


def test_query_runs_tiny_and_checks_every_result(tmp_path):
    pytest.importorskip("pyarrow")
    from benchmarks import query

    out = tmp_path / "results"
    # the peak RSS children are left out (a process each); their query runs in-process below
    query.main(["--sizes", "1000", "--quick", "--repeats", "1", "--rss-repeats", "0", "--keep",
                "--results-dir", str(out), "--workdir", str(tmp_path)])
    result = _result(out, "query_n1000_quick")
    assert set(result["phases"]["select, fresh handle"]) == {"atlas@1000", "parquet@1000"}
    assert set(result["phases"]["catalog 10 columns, fresh handle"]) == {
        "atlas@1000", "parquet (pandas)@1000", "parquet (arrow)@1000"}
    assert result["params"]["selected"]["1000"] > 0
    assert [t["measured"] is not None for t in result["targets"]] == [True, True, False]

    (kept,) = tmp_path.glob("atlas_bench_query_*/n1000")
    for system in ("atlas", "parquet"):
        got = query.child_rss({"dir": str(kept), "query": query.SELECT, "system": system})
        assert len(got["names"]) == result["params"]["selected"]["1000"]
        assert got["peak_rss"] >= got["base_rss"] > 0
        got = query.child_rss({"dir": str(kept), "query": query.CATALOG_10, "system": system})
        assert got["shape"] == [1000, 10]


def test_versions_runs_tiny_and_checks_every_version_read(tmp_path):
    from benchmarks import versions

    out = tmp_path / "results"
    versions.main(["--n", "50", "--commits", "6", "--quick", "--repeats", "1",
                   "--results-dir", str(out), "--workdir", str(tmp_path)])
    result = _result(out, "versions_n50_c6_quick")
    assert result["params"]["versions kept"] == 8  # the create, the build and the 6 commits
    assert set(result["phases"]["open"]) == {"open latest", "open first", "open middle",
                                             "open copy"}
    sizes = result["params"]["sizes"]
    assert sizes["changed data, raw"] == 6 * 1 * 100 * 4  # 1% of 50 rounds up to one dataset
    assert sizes["bytes on disk"] >= sizes["latest version's own files"] > 0
    assert sizes["bytes on disk"] >= sizes["latest version, written fresh"] > 0
    assert all(t["measured"] is not None for t in result["targets"])
