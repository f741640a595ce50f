"""Where atlas spends its time in each workload: pyinstrument profiles of the atlas side only.

Each scenario builds its data untimed, warms up (imports, JIT, page cache), then profiles the
atlas operation the workload times. pyinstrument samples the main thread only, so reads run with
decoding inline (``PARALLEL_MIN_BYTES`` raised for the profile): the profile shows the whole
work of a read on one thread instead of a main thread waiting for the decode pool, and
``batches`` runs with ``prefetch=0`` for the same reason. Each profile is written as a call tree
(percent of the total) and a flat list of self times to ``benchmarks/results/profiles/``.

    python -m benchmarks.profiles                 # every scenario at the reported sizes
    python -m benchmarks.profiles --quick
    python -m benchmarks.profiles ml_batches open_scale
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import _atlas_adapter as atlas_adapter
from benchmarks import _harness as harness
from benchmarks.cases import (
    case_layout,
    dataset_names,
    get_case,
    iter_ml_fields,
    iter_upstream,
    quarter_window,
)

PROFILES_DIR = harness.RESULTS_DIR / "profiles"
INTERVAL = 0.0005


def _profile(name: str, fn: Callable[[], object], out_dir: Path, repeat: int = 1) -> None:
    """Profile ``repeat`` calls of ``fn``; write the tree and the flat self times."""
    from pyinstrument import Profiler
    from pyinstrument.renderers import ConsoleRenderer

    profiler = Profiler(interval=INTERVAL)
    begin = time.perf_counter()
    profiler.start()
    for _ in range(repeat):
        fn()
    profiler.stop()
    elapsed = time.perf_counter() - begin
    session = profiler.last_session
    tree = ConsoleRenderer(time="percent_of_total", unicode=True, short_mode=False).render(session)
    flat = ConsoleRenderer(flat=True, unicode=True).render(session)
    flat_lines = [line for line in flat.splitlines() if line.strip()][:40]
    text = (
        f"# {name}: {repeat} call(s), {elapsed:.3f} s wall, load {os.getloadavg()[0]:.1f}\n\n"
        f"## call tree (percent of total)\n{tree}\n## flat (self time, top 40)\n"
        + "\n".join(flat_lines)
        + "\n"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.txt"
    path.write_text(text)
    harness.log(f"wrote {path} ({elapsed:.2f} s)")


def _inline_decoding() -> None:
    from atlas.core import _reader

    _reader.PARALLEL_MIN_BYTES = 1 << 62


def upstream_scenarios(args, workdir: Path, out: Path) -> None:
    _inline_decoding()
    for case_name, n in (("profile", args.n_profile), ("gridded", args.n_gridded),
                         ("sensors", args.n_profile)):
        case = get_case(case_name, 4)
        layout = case_layout(case)
        window = quarter_window(case.dims)
        names = dataset_names(n)
        root = workdir / f"upstream-{case_name}"
        samples = list(iter_upstream(case, n, with_xarray=False))  # generation stays out
        atlas_adapter.write(samples[:2], workdir / "warm", 2)
        harness.remove_path(workdir / "warm")

        def write():
            harness.remove_path(root)
            atlas_adapter.write(samples, root, n)

        _profile(f"upstream_{case_name}_n{n}_write", write, out)
        def read():  # what the workload times: open the store, then every variable
            atlas_adapter.read_window(root, names, layout, window)

        read()
        _profile(f"upstream_{case_name}_n{n}_read", read, out, repeat=args.read_repeats)


def ml_batches_scenarios(args, workdir: Path, out: Path) -> None:
    import atlas

    from benchmarks.ml_batches import ARRAY, draw_batches

    _inline_decoding()
    n = args.n_ml
    root = workdir / "ml"
    atlas_adapter.write(iter_ml_fields(n), root, n)
    store = atlas.Atlas.open(str(atlas_adapter.store_path(root)), read_only=True)
    names = dataset_names(n)
    batch = min(256, n)
    picks = [[names[i] for i in idx] for idx in draw_batches(n, args.ml_batches, batch)]
    buf = np.empty((batch, 180, 360), np.float32)

    def stacked():
        for p in picks:
            store.read_array_across_stacked(ARRAY, p, out=buf)

    def batches():
        flat = list(itertools.chain.from_iterable(picks))
        for _ in store.batches(ARRAY, flat, batch_size=batch, shuffle=False, prefetch=0):
            pass

    stacked()
    _profile(f"ml_batches_n{n}_stacked_out", stacked, out)
    _profile(f"ml_batches_n{n}_batches_prefetch0", batches, out)


def open_scale_scenarios(args, workdir: Path, out: Path) -> None:
    import atlas

    from benchmarks.open_scale import READ_ARRAY, _atlas_add, build_atlas

    n = args.n_open
    path = workdir / "open" / atlas_adapter.STORE_NAME
    path.parent.mkdir(parents=True)
    build_atlas(path, n)

    def open_list():
        atlas.Atlas.open(str(path)).list_datasets()

    def open_read():
        atlas.Atlas.open(str(path)).open_dataset(dataset_names(n)[n // 2]).read_array(READ_ARRAY)

    counter = itertools.count(n)

    def append():
        store = atlas.Atlas.open(str(path))
        for _ in range(100):
            _atlas_add(store, next(counter))
        store.flush()
        atlas.Atlas.open(str(path)).list_datasets()

    open_list()
    _profile(f"open_scale_n{n}_open_list", open_list, out, repeat=5)
    _profile(f"open_scale_n{n}_open_read_fresh", open_read, out, repeat=5)
    _profile(f"open_scale_n{n}_append100_flush_reopen", append, out, repeat=3)


def cold_start_scenarios(args, workdir: Path, out: Path) -> None:
    from benchmarks.cold_start import STACKED, SUBJECT, _prepare, child_script

    params = _prepare(workdir / "cold", 100)
    scripts = {}
    for system in (SUBJECT, STACKED):
        scripts[system] = workdir / f"cold_child_{len(scripts)}.py"
        scripts[system].write_text(child_script(system, params))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["NUMBA_CACHE_DIR"] = str(workdir / "numba-cache")
    subprocess.run([sys.executable, str(scripts[STACKED])], env=env, check=True,
                   capture_output=True)  # fills the warm cache
    empty_cache = {"NUMBA_CACHE_DIR": str(workdir / "numba-empty")}
    for label, system, extra in (("first_read", SUBJECT, {}),
                                 ("stacked_first_read", STACKED, {}),
                                 ("first_read_cold_cache", SUBJECT, empty_cache)):
        done = subprocess.run(
            [sys.executable, "-m", "pyinstrument", "-i", str(INTERVAL), "-r", "text",
             "--unicode", "-p", "time=percent_of_total", str(scripts[system])],
            env={**env, **extra}, check=True, capture_output=True, text=True,
        )
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"cold_start_{label}.txt"
        path.write_text(f"# cold start, {system}, load {os.getloadavg()[0]:.1f}\n{done.stdout}")
        harness.log(f"wrote {path}")


def ingest_memory_scenarios(args, workdir: Path, out: Path) -> None:
    import atlas
    import dask.array as da
    import xarray as xr

    cols, rows_chunk = 1024, args.ingest_chunk_mib * 2**20 // 4096
    data_vars = {
        f"var{v}": (("y", "x"), da.random.default_rng(v).random(
            (rows_chunk * 10, cols), chunks=(rows_chunk, cols), dtype=np.float32))
        for v in range(3)
    }
    ds = xr.Dataset(data_vars)
    counter = itertools.count()

    def ingest():
        store = atlas.Atlas.create(str(workdir / f"ingest-{next(counter)}"))
        store.add_xr_dataset(ds, "big")
        store.flush()

    small = xr.Dataset({k: v[:2] for k, v in ds.data_vars.items()})
    warm = atlas.Atlas.create(str(workdir / "ingest-warm"))
    warm.add_xr_dataset(small, "small")
    warm.flush()
    _profile("ingest_memory_add_xr_dataset_flush", ingest, out)


SCENARIOS = {
    "upstream": upstream_scenarios,
    "ml_batches": ml_batches_scenarios,
    "open_scale": open_scale_scenarios,
    "cold_start": cold_start_scenarios,
    "ingest_memory": ingest_memory_scenarios,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiles",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (all)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out-dir", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    quick = args.quick
    args.n_profile = 20 if quick else 1000
    args.n_gridded = 20 if quick else 200
    args.n_ml = 200 if quick else 2000
    args.ml_batches = 3 if quick else 30
    args.n_open = 1000 if quick else 10000
    args.ingest_chunk_mib = 4 if quick else 32
    args.read_repeats = 3 if quick else 10
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; choose from {sorted(SCENARIOS)}")
    out = args.out_dir or (PROFILES_DIR / "quick" if quick else PROFILES_DIR)
    workdir = harness.make_workdir(args.workdir, "atlas_profiles")
    try:
        for name in args.scenarios or list(SCENARIOS):
            (workdir / name).mkdir()
            SCENARIOS[name](args, workdir / name, out)
    finally:
        harness.remove_path(workdir)


if __name__ == "__main__":
    main()
