"""Versions (issue 19): what keeping every commit costs to open and on disk.

A store of N profiles (``temp``: 100 float32 of random values per dataset, ``lat``: 0-D float64)
is written with the stacked write and one flush. Then ``--commits`` commits each rewrite
``temp`` of a random ``--changed`` share of the datasets (the stacked write of those rows + one
flush, a message each); the default retention (7 days) keeps every version.

- **open**: ``Atlas.open`` of the latest version against ``Atlas.open(version=g)`` of the first
  version after the build and of the middle one, interleaved rounds, medians; and the same
  followed by the stacked read of ``temp`` across all N (an old version's data lies in files
  that later merges retired). Every read is checked against the values of that version. The
  fresh copy of the latest version (below) is timed too ("open copy"): what the latest's read
  costs against the same values freshly written (merges link blocks that later commits left
  partly superseded, which reads decode whole).
- **disk**: the whole store (``usage()["bytes_on_disk"]``: live files, files kept for older
  versions, version records) against the disk of the latest version (its values written as
  the build was, stacked into a fresh store with one flush: ``usage()["bytes_on_disk"]`` of
  that copy) plus the changed data. The changed data is the values the commits wrote, uncompressed,
  and that times the compression ratio of the build (``segment bytes / raw bytes``, the stored
  size of such values): the target's ratio uses the stored estimate.
- **commit**: the time of each of the commits (stacked write + flush), first and last tenth.

    python -m benchmarks.versions                        # N = 10^5, 1,000 commits of 1%
    python -m benchmarks.versions --n 10000 --commits 200
    python -m benchmarks.versions --quick
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks import _harness as harness

WORKLOAD = "versions"
DEPTH = 100
SUBJECT = "open latest"


def _names(n: int) -> list[str]:
    return [f"p{i:07d}" for i in range(n)]


def build(path, n: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The first version; returns its ``temp`` values and the seconds it took."""
    import atlas

    temp = rng.normal(10, 5, (n, DEPTH)).astype(np.float32)
    started = time.perf_counter()
    store = atlas.Atlas.create(path)
    names = _names(n)
    store.write_array_across_stacked("temp", names, temp, dims=["depth"])
    store.write_array_across_stacked("lat", names, rng.uniform(-80, 80, n))
    store.flush(message="build")
    return temp, time.perf_counter() - started


def commit_changes(path, temp: np.ndarray, commits: int, share: float,
                   rng: np.random.Generator, keep: set[int]) -> dict:
    """Run the commits on one handle; returns seconds per commit, the raw bytes written and
    ``{generation: temp values}`` for the generations in ``keep`` (by commit index)."""
    import atlas

    store = atlas.Atlas.open(path)
    names = np.asarray(_names(len(temp)))
    per_commit = max(1, int(round(len(temp) * share)))
    seconds, snapshots, raw = [], {}, 0
    for c in range(commits):
        rows = np.sort(rng.choice(len(temp), per_commit, replace=False))
        values = rng.normal(10, 5, (per_commit, DEPTH)).astype(np.float32)
        began = time.perf_counter()
        store.write_array_across_stacked("temp", names[rows].tolist(), values, dims=["depth"])
        store.flush(message=f"commit {c}")
        seconds.append(time.perf_counter() - began)
        temp[rows] = values
        raw += values.nbytes
        if c in keep:
            snapshots[store.history()[0].generation] = temp.copy()
    return {"seconds": seconds, "raw_bytes": raw, "snapshots": snapshots,
            "per_commit": per_commit}


def copy_latest(path, copy) -> int:
    """Write the latest version's values into a fresh store as :func:`build` does; returns
    that store's bytes on disk."""
    import atlas

    latest = atlas.Atlas.open(path)
    names = latest.list_datasets()
    store = atlas.Atlas.create(copy)
    store.write_array_across_stacked("temp", names, latest.read_array_across_stacked("temp"),
                                     dims=["depth"])
    store.write_array_across_stacked("lat", names, latest.read_array_across_stacked("lat"))
    store.flush(message="build")
    return atlas.Atlas.open(copy).usage()["bytes_on_disk"]


def time_opens(versions: dict[str, tuple], expected: dict[str, np.ndarray],
               repeats: int, progress) -> dict[str, list[float]]:
    """``versions``: label -> (store path, version)."""
    import atlas

    names = _names(len(next(iter(expected.values()))))

    def opener(path, version):
        return lambda: atlas.Atlas.open(path, version=version)

    def reader(path, version):
        def read():
            store = atlas.Atlas.open(path, version=version)
            return store.read_array_across_stacked("temp", names)
        return read

    tasks, checks = {}, {}
    for label, (path, version) in versions.items():
        tasks[f"open {label}"] = opener(path, version)
        tasks[f"read {label}"] = reader(path, version)
        checks[f"read {label}"] = expected[label]

    def check(name, result):
        if name in checks and not np.array_equal(result, checks[name]):
            raise AssertionError(f"{name}: the values differ from that version's")

    return harness.time_interleaved(tasks, repeats, check=check, progress=progress)


def run(args: argparse.Namespace) -> dict:
    import atlas

    n = args.n or (2_000 if args.quick else 100_000)
    commits = args.commits or (50 if args.quick else 1_000)
    repeats = args.repeats if args.quick else max(args.repeats, 5)
    progress = harness.progress_printer(args.verbose)
    rng = np.random.default_rng(0)
    workdir = harness.make_workdir(args.workdir, "atlas_bench_versions")
    path = workdir / "store"
    harness.log(f"[versions] N={n}, {commits} commits of {args.changed:.1%}, workdir={workdir}")
    try:
        temp, build_seconds = build(path, n, rng)
        built = atlas.Atlas.open(path)
        base = {"generation": built.history()[0].generation, "temp": temp.copy(),
                "segment_bytes": built.usage()["segment_bytes"]}
        middle = commits // 2
        done = commit_changes(path, temp, commits, args.changed, rng, {middle})
        (middle_generation, middle_temp), = done["snapshots"].items()
        latest = atlas.Atlas.open(path)
        usage = latest.usage()
        kept = len(latest.history())
        latest_bytes = copy_latest(path, workdir / "copy")
        harness.log(f"[versions] {kept} versions kept; timing opens ({repeats} rounds)")
        versions = {"latest": (path, None), "first": (path, base["generation"]),
                    "middle": (path, middle_generation), "copy": (workdir / "copy", None)}
        expected = {"latest": temp, "first": base["temp"], "middle": middle_temp, "copy": temp}
        timings = time_opens(versions, expected, repeats, progress)
    finally:
        if args.keep:
            harness.log(f"kept the store under {workdir}")
        else:
            harness.remove_path(workdir)

    raw_base = n * DEPTH * 4
    stored_share = base["segment_bytes"] / raw_base  # lat's bytes make this a slight overestimate
    changed_stored = done["raw_bytes"] * stored_share
    disk = usage["bytes_on_disk"]
    # both phases name their systems "open <version>", so SUBJECT is the latest in each
    phases = {phase: harness.phase_summary({f"open {label}": timings[f"{task} {label}"]
                                            for label in versions})
              for phase, task in (("open", "open"), ("open + stacked read of temp", "read"))}
    sizes = {"bytes on disk": disk, "latest version, written fresh": latest_bytes,
             "latest version's own files": usage["segment_bytes"] + usage["catalog_bytes"]
             + usage["root_bytes"],
             "files it links blocks of": usage["linked_bytes"],
             "files kept for older versions": usage["retired_bytes"],
             "version records": usage["version_bytes"],
             "changed data, raw": done["raw_bytes"], "changed data, stored (estimate)":
             round(changed_stored)}
    seconds = done["seconds"]
    tenth = max(1, len(seconds) // 10)
    result = {
        "workload": WORKLOAD,
        "name": args.name or f"{WORKLOAD}_n{n}_c{commits}" + ("_quick" if args.quick else ""),
        "subject": SUBJECT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {
            "n": n, "commits": commits, "changed per commit": done["per_commit"],
            "versions kept": kept, "repeats": repeats, "quick": bool(args.quick),
            "build seconds": round(build_seconds, 2),
            "commit seconds, first tenth (median)": round(float(np.median(seconds[:tenth])), 4),
            "commit seconds, last tenth (median)": round(float(np.median(seconds[-tenth:])), 4),
            "compression of the build (segment bytes / raw)": round(stored_share, 3),
            "sizes": sizes,
            "verified": "every timed read against the values of its version",
        },
        "versions": {**harness.library_versions(), "atlas": atlas.__version__},
        "phases": phases,
        "notes": [
            "ratios are version time / latest time (> 1: opening the version is slower); "
            "'open copy' is the latest version's values written fresh into a store of their "
            "own (what the latest would cost compacted)",
            "disk of the latest version: bytes on disk of that fresh copy",
        ],
    }
    harness.finish_result(result)
    ratio = disk / (latest_bytes + changed_stored)
    result["metrics"] = {"disk / (latest + changed stored)": round(ratio, 3),
                         "disk / (latest + changed raw)":
                         round(disk / (latest_bytes + done["raw_bytes"]), 3)}
    command = "python -m benchmarks.versions" + (" --quick" if args.quick else "")
    latest_open = phases["open"][SUBJECT]["median_s"]
    result["targets"] = [
        harness.target(19, f"open the first version / open the latest, N={n}",
                       phases["open"]["open first"]["median_s"] / latest_open, 1.0, False,
                       command=command),
        harness.target(19, f"open the middle version / open the latest, N={n}",
                       phases["open"]["open middle"]["median_s"] / latest_open, 1.0, False,
                       command=command),
        harness.target(19, f"disk of {kept} versions / (latest + changed data)", ratio, 1.2,
                       False, command=command),
    ]
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.versions",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="datasets (default 10^5; quick 2000)")
    parser.add_argument("--commits", type=int, default=None,
                        help="commits after the build (default 1000; quick 50)")
    parser.add_argument("--changed", type=float, default=0.01,
                        help="share of the datasets each commit rewrites (default 0.01)")
    harness.add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    return harness.cli(build_parser, run, argv)


if __name__ == "__main__":
    main()
