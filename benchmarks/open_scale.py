"""Workload 3: opening a store of many tiny datasets.

Every dataset is profile-like and tiny: five float32 variables along ``depth`` (20 levels), a 0-D
``timestamp_ns`` ``time`` and a 0-D string ``platform_id``; one flush writes them all. Measured,
at two sizes (default N = 1,000 and 10,000) so that growth with N shows:

- ``open+list``: ``Atlas.open`` + ``list_datasets()`` on a fresh handle;
- ``open+read (fresh handle)``: ``Atlas.open`` + ``open_dataset`` + ``read_array`` of one variable;
- ``open dataset+first read``: on a handle opened beforehand, ``open_dataset`` + ``read_array``
  of one dataset (the first read on a handle also resolves the array's chunk index, O(N));
- ``100 x (open dataset+read), warm handle``: 100 more datasets opened and read on a handle
  that has read once (the claim "opening one dataset does not grow with N" is judged here:
  growth <= 1.5x between the two sizes, i.e. flat within this machine's noise);
- ``append+flush+reopen``: on an open handle, 100 new datasets (``--append``), ``flush()``, then
  ``Atlas.open`` + ``list_datasets()`` (each round appends 100 more, so N grows by 100 a round).

Peer: zarr v3 idiomatic, one store per dataset (written with the zarr API, zstd 3): "list" is a
directory listing of ``*.zarr``, "open" is ``zarr.open_group``. At the larger size its stores past
the first ``--zarr-write`` are hard links of those (same bytes, new names): writing 10,000 zarr
stores takes ~10 minutes here and the bytes do not matter to opening or listing.

    python -m benchmarks.open_scale                      # N = 1000 and 10000
    python -m benchmarks.open_scale --quick
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np

from benchmarks import _atlas_adapter as atlas_adapter
from benchmarks import _harness as harness
from benchmarks.cases import TIME_ORIGIN, dataset_name
from benchmarks.peers import quiet_warnings

WORKLOAD = "open_scale"
SUBJECT = "atlas"
VARIABLES = ("temperature", "salinity", "oxygen", "pressure", "chlorophyll")
DEPTH = 20
READ_ARRAY = "temperature"
APPEND = 100
WARM_READS = 100
WARM_PHASE = f"{WARM_READS} x (open dataset+read), warm handle"
ZSTD_LEVEL = 3


def tiny_dataset(index: int) -> dict[str, np.ndarray]:
    """The arrays of tiny dataset ``index``: five depth profiles, a timestamp, a string id."""
    rng = np.random.default_rng(index)
    arrays: dict[str, np.ndarray] = {
        name: rng.normal(10.0 + k, 1.0, DEPTH).astype(np.float32)
        for k, name in enumerate(VARIABLES)
    }
    arrays["time"] = np.array(TIME_ORIGIN + np.timedelta64(index, "h"))
    arrays["platform_id"] = np.array(f"float-{index:07d}", dtype=object)
    return arrays


def _atlas_add(store, index: int) -> None:
    view = store.create_dataset(dataset_name(index))
    for name, data in tiny_dataset(index).items():
        if data.ndim == 0:
            dtype = "timestamp_ns" if data.dtype.kind == "M" else "string"
            view.define_array(name, dtype, [], [], [])
            view.write_array(name, [], data)
        else:
            view.define_array(name, "float32", ["depth"], [DEPTH], [DEPTH], float("nan"))
            view.write_array(name, [0], data)
    view.set_attribute("id", index)


def build_atlas(path: Path, n: int) -> float:
    """Create the store with ``n`` tiny datasets, one flush; return the seconds it took."""
    import atlas

    begin = time.perf_counter()
    store = atlas.Atlas.create(str(path))
    for index in range(n):
        _atlas_add(store, index)
    store.flush()
    return time.perf_counter() - begin


def _zarr_write_one(root: Path, index: int) -> None:
    import zarr
    from zarr.codecs import ZstdCodec

    group = zarr.open_group(root / f"{dataset_name(index)}.zarr", mode="w", zarr_format=3)
    group.attrs["id"] = index
    for name, data in tiny_dataset(index).items():
        if data.dtype == object:
            array = group.create_array(name, shape=(), dtype=str)
            array[...] = str(data[()])
            continue
        array = group.create_array(
            name,
            shape=data.shape,
            chunks=data.shape if data.ndim else "auto",
            dtype=data.dtype,
            compressors=[ZstdCodec(level=ZSTD_LEVEL)],
        )
        array[...] = data


def build_zarr(root: Path, n: int, written: int, source: Path | None = None) -> float:
    """``n`` zarr stores: the first ``written`` written (or linked from ``source``, which holds
    them already), the rest hard links of those."""
    begin = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    if source is None:
        with quiet_warnings():
            for index in range(min(n, written)):
                _zarr_write_one(root, index)
    for index in range(0 if source is not None else written, n):
        origin = (source or root) / f"{dataset_name(index % written)}.zarr"
        _link_tree(origin, root / f"{dataset_name(index)}.zarr")
    return time.perf_counter() - begin


def _link_tree(source: Path, target: Path) -> None:
    for folder, _dirs, files in os.walk(source):
        out = target / Path(folder).relative_to(source)
        out.mkdir(parents=True, exist_ok=True)
        for file in files:
            os.link(Path(folder) / file, out / file)


class Probe:
    """Random dataset names, each used once before any repeats (a fresh shuffle then)."""

    def __init__(self, n: int, seed: int):
        self._n = n
        self._rng = random.Random(seed)
        self._order: list[int] = []

    def next(self) -> str:
        if not self._order:
            self._order = list(range(self._n))
            self._rng.shuffle(self._order)
        return dataset_name(self._order.pop())


def atlas_tasks(path: Path, n: int, next_index: list[int], append: int = APPEND):
    import atlas

    location = str(path)
    probe_fresh, probe_open, probe_warm = Probe(n, 1), Probe(n, 2), Probe(n, 4)
    handle: dict = {}

    def open_list():
        store = atlas.Atlas.open(location)
        return len(store.list_datasets())

    def open_read_fresh():
        store = atlas.Atlas.open(location)
        return store.open_dataset(probe_fresh.next()).read_array(READ_ARRAY)

    def prepare_open_handle(_name: str) -> None:
        handle["store"] = atlas.Atlas.open(location)

    def open_read_handle():
        return handle["store"].open_dataset(probe_open.next()).read_array(READ_ARRAY)

    def prepare_warm_handle(_name: str) -> None:
        store = handle["warm"] = atlas.Atlas.open(location)
        store.open_dataset(probe_warm.next()).read_array(READ_ARRAY)  # resolves the index

    def open_read_warm():
        store = handle["warm"]
        for _ in range(WARM_READS):
            store.open_dataset(probe_warm.next()).read_array(READ_ARRAY)

    def append_reopen():
        store = handle["append"]
        for _ in range(append):
            _atlas_add(store, next_index[0])
            next_index[0] += 1
        store.flush()
        return len(atlas.Atlas.open(location).list_datasets())

    def prepare_append(_name: str) -> None:
        handle["append"] = atlas.Atlas.open(location)

    return {
        "open+list": (open_list, None),
        "open+read (fresh handle)": (open_read_fresh, None),
        "open dataset+first read": (open_read_handle, prepare_open_handle),
        WARM_PHASE: (open_read_warm, prepare_warm_handle),
        "append+flush+reopen": (append_reopen, prepare_append),
    }


def zarr_tasks(root: Path, n: int, next_index: list[int], append: int = APPEND):
    import zarr

    probe_fresh = Probe(n, 3)
    probe_warm = Probe(n, 5)

    def listing():
        return sorted(p.name[: -len(".zarr")] for p in root.iterdir() if p.suffix == ".zarr")

    def open_list():
        return len(listing())

    def open_read():
        group = zarr.open_group(root / f"{probe_fresh.next()}.zarr", mode="r")
        return group[READ_ARRAY][...]

    def open_read_many():
        for _ in range(WARM_READS):
            zarr.open_group(root / f"{probe_warm.next()}.zarr", mode="r")[READ_ARRAY][...]

    def append_reopen():
        with quiet_warnings():
            for _ in range(append):
                _zarr_write_one(root, next_index[0])
                next_index[0] += 1
        return len(listing())

    return {
        "open+list": (open_list, None),
        "open+read (fresh handle)": (open_read, None),
        "open dataset+first read": (open_read, None),
        WARM_PHASE: (open_read_many, None),
        "append+flush+reopen": (append_reopen, None),
    }


def _time_phase(tasks: dict, repeats: int, progress) -> dict[str, list[float]]:
    """Interleave the systems of one phase; ``tasks[name] = (fn, before_each or None)``."""

    def before(name: str) -> None:
        prepare = tasks[name][1]
        if prepare is not None:
            prepare(name)

    return harness.time_interleaved(
        {name: fn for name, (fn, _prep) in tasks.items()},
        repeats=repeats,
        warmup=True,
        before_each=before,
        progress=progress,
    )


def run(args: argparse.Namespace) -> dict:
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [100, 1000] if args.quick else [1000, 10000]
    )
    repeats = max(args.repeats, 5) if not args.quick else args.repeats
    append = args.append or (20 if args.quick else APPEND)
    zarr_written = min(args.zarr_write or (20 if args.quick else 1000), min(sizes))
    zarr_source: Path | None = None
    progress = harness.progress_printer(args.verbose)
    workdir = harness.make_workdir(args.workdir, "atlas_bench_open")
    harness.log(f"[open_scale] sizes={sizes} workdir={workdir}")
    samples: dict[str, dict[str, list[float]]] = {}
    build_s: dict[str, float] = {}
    try:
        with quiet_warnings():
            for n in sizes:
                atlas_path = workdir / f"atlas_{n}" / atlas_adapter.STORE_NAME
                atlas_path.parent.mkdir(parents=True)
                build_s[f"atlas@{n}"] = round(build_atlas(atlas_path, n), 3)
                systems = {f"atlas@{n}": atlas_tasks(atlas_path, n, [n], append)}
                if not args.no_zarr:
                    zarr_root = workdir / f"zarr_{n}"
                    seconds = build_zarr(zarr_root, n, zarr_written, zarr_source)
                    build_s[f"zarr@{n}"] = round(seconds, 3)
                    zarr_source = zarr_source or zarr_root
                    systems[f"zarr@{n}"] = zarr_tasks(zarr_root, n, [n], append)
                harness.log(f"[open_scale] N={n}: stores built {build_s}")
                for phase in systems[f"atlas@{n}"]:
                    tasks = {system: by_phase[phase] for system, by_phase in systems.items()}
                    got = _time_phase(tasks, repeats, progress)
                    samples.setdefault(phase, {}).update(got)
    finally:
        if args.keep:
            harness.log(f"kept stores under {workdir}")
        else:
            harness.remove_path(workdir)

    big, small = max(sizes), min(sizes)
    subject = f"atlas@{big}"
    phases = {phase: harness.phase_summary(s) for phase, s in samples.items()}
    growth = {
        phase: round(stats[f"atlas@{big}"]["median_s"] / stats[f"atlas@{small}"]["median_s"], 2)
        for phase, stats in phases.items()
    }
    result = {
        "workload": WORKLOAD,
        "name": args.name or f"{WORKLOAD}_n{big}" + ("_quick" if args.quick else ""),
        "subject": subject,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {
            "sizes": sizes,
            "dataset": f"{len(VARIABLES)} float32 ({DEPTH},) variables, a 0-D timestamp_ns, "
            "a 0-D string id, an int attribute",
            "read_array": READ_ARRAY,
            "append": append,
            "repeats": repeats,
            "build_s (one round, not a claim)": build_s,
            "zarr": "off" if args.no_zarr else
            f"one store per dataset; first {zarr_written} written, the rest hard links",
            "quick": bool(args.quick),
        },
        "versions": {**harness.library_versions(), "atlas": atlas_adapter.version()},
        "phases": phases,
        "notes": ["ratios are peer (or the smaller atlas store) median / atlas at the larger N"]
        + (["quick run: small N, not for reporting"] if args.quick else []),
    }
    harness.finish_result(result)
    result["metrics"] = {f"atlas growth N={big} / N={small}": growth}
    command = "python -m benchmarks.open_scale" + (" --quick" if args.quick else "")
    open_list = phases["open+list"][subject]["median_s"]
    result["targets"] = [
        harness.target(5, f"open+list N={big}", open_list, 0.2, False, " s", command),
        harness.target(5, f"open one dataset+read on an open handle, growth N={big}/N={small}",
                       growth[WARM_PHASE], 1.5, False, "x", command),
    ]
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.open_scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--sizes", default=None, help="comma-separated N (default 1000,10000)")
    parser.add_argument("--zarr-write", type=int, default=None,
                        help="zarr stores written for real (default 1000, quick 50); the rest "
                        "are hard links of those")
    parser.add_argument("--append", type=int, default=None, help="datasets appended (100/20)")
    parser.add_argument("--no-zarr", action="store_true", help="skip the zarr peer")
    harness.add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    return harness.cli(build_parser, run, argv)


if __name__ == "__main__":
    main()
