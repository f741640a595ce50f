"""Workload 2: stacked ML batches from N datasets of one (180, 360) float32 field.

A store of N datasets (smooth field plus noise, NaN over a fixed ~20% land mask, one chunk per
field), then an "epoch" of B batches of 256 dataset names drawn at random (without replacement
within a batch), each read into one ``(256, 180, 360)`` array:

- ``atlas``: ``read_array_across_stacked(..., out=buf)`` into one reused buffer;
- ``atlas-batches``: ``Atlas.batches(...)`` over the same names in the same order (a batch's
  array is reused once the caller drops it; the next batch is read ahead on a background thread);
- ``zarr-oindex`` / ``zarr-out`` / ``zarr-loop``: the best zarr layout, one ``(N, 180, 360)``
  array with chunks ``(1, 180, 360)``, zstd level 3, read by orthogonal indexing (a new array), by
  ``get_orthogonal_selection(..., out=buf)`` and by a loop of slices into a preallocated buffer;
- ``tensorstore-out``: TensorStore (``zarr3`` driver) on that same array, each batch read by
  orthogonal indexing into one reused buffer (``peers/tensorstore_zarr.py``); in ``patch-each``
  the 256 window reads of a batch are issued together and then awaited;
- ``floor``: the chunk bytes atlas stored for those names, decoded into a reused buffer by 2
  threads (``peers/floor.py``).

Patch variants: 256 random ``(64, 64)`` windows. Phase ``patch`` draws one random window
position per batch for every system; phase ``patch-each`` gives every sample its own window
(atlas: one stacked read with one start per sample; zarr: a loop of slices; TensorStore: the
256 reads issued together, then awaited). The floor of both decodes the same whole chunks (a
patch touches one chunk per field).

Reported: batches/s of every system, efficiency = floor / atlas, atlas / best zarr, TensorStore /
atlas. Usage::

    python -m benchmarks.ml_batches                # N=2000, 30 batches
    python -m benchmarks.ml_batches --quick
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import _atlas_adapter as atlas_adapter
from benchmarks import _harness as harness
from benchmarks.cases import FIELD_SHAPE, dataset_names, iter_ml_fields, make_ml_field_raw
from benchmarks.peers import floor, quiet_warnings, tensorstore_zarr, zarr_stacked

WORKLOAD = "ml_batches"
SUBJECT = "atlas"
ARRAY = "field"
SEED = 20240607
ZARR_READERS = ("zarr-oindex", "zarr-out", "zarr-loop")
TENSORSTORE = "tensorstore-out"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ml_batches", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=None, help="datasets (default 2000, quick 200)")
    parser.add_argument("--batches", type=int, default=None, help="batches per epoch (30/5)")
    parser.add_argument("--batch-size", type=int, default=None, help="names per batch (256/64)")
    parser.add_argument("--patch", type=int, default=64, help="patch edge (default 64)")
    parser.add_argument("--no-patch", action="store_true", help="skip the patch phases")
    harness.add_common_arguments(parser)
    return parser


def draw_batches(n: int, batches: int, batch_size: int, seed: int = SEED) -> list[np.ndarray]:
    """``batches`` arrays of ``batch_size`` distinct random dataset indices."""
    rng = np.random.default_rng(seed)
    replace = batch_size > n
    return [rng.choice(n, size=batch_size, replace=replace) for _ in range(batches)]


def draw_windows(count: int, patch: int, seed: int) -> np.ndarray:
    """``count`` random (y, x) corners of ``patch x patch`` windows inside the field."""
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, FIELD_SHAPE[0] - patch + 1, size=count)
    xs = rng.integers(0, FIELD_SHAPE[1] - patch + 1, size=count)
    return np.stack([ys, xs], axis=1)


def reference_batch(indices: np.ndarray) -> np.ndarray:
    """The expected full batch, straight from the generator."""
    return np.stack([make_ml_field_raw(int(i)).data_vars[ARRAY].data for i in indices])


# --- readers: each returns a task running one epoch and returning the last batch --------------


def atlas_tasks(store, picks: list[list[str]], batch_size: int, corners, corners_each, patch):
    buf = np.empty((batch_size, *FIELD_SHAPE), np.float32)
    pbuf = np.empty((batch_size, patch, patch), np.float32)
    all_names = list(itertools.chain.from_iterable(picks))

    def full():
        for names in picks:
            store.read_array_across_stacked(ARRAY, names, out=buf)
        return buf

    def batches():
        last = None
        iterator = store.batches(
            ARRAY, dataset_names=all_names, batch_size=batch_size, shuffle=False
        )
        for _names, last in iterator:
            pass
        return last

    def patch_same():
        for names, (y, x) in zip(picks, corners):
            store.read_array_across_stacked(
                ARRAY, names, start=[int(y), int(x)], shape=[patch, patch], out=pbuf
            )
        return pbuf

    def patch_each():
        for names, batch_corners in zip(picks, corners_each):
            store.read_array_across_stacked(ARRAY, names, start=batch_corners,
                                            shape=[patch, patch], out=pbuf)
        return pbuf

    return full, batches, patch_same, patch_each


def zarr_tasks(array, rows: list[np.ndarray], batch_size: int, corners, corners_each, patch):
    from zarr.core.buffer.cpu import NDBuffer

    buf = np.empty((batch_size, *FIELD_SHAPE), np.float32)
    pbuf = np.empty((batch_size, patch, patch), np.float32)
    whole = (slice(None), slice(None))

    def oindex():
        last = None
        for idx in rows:
            last = array.oindex[(idx, *whole)]
        return last

    def out():
        target = NDBuffer.from_numpy_array(buf)
        for idx in rows:
            array.get_orthogonal_selection((idx, *whole), out=target)
        return buf

    def loop():
        for idx in rows:
            for row, i in enumerate(idx.tolist()):
                buf[row] = array[i]
        return buf

    def patch_oindex():
        last = None
        for idx, (y, x) in zip(rows, corners):
            last = array.oindex[idx, int(y) : int(y) + patch, int(x) : int(x) + patch]
        return last

    def patch_out():
        target = NDBuffer.from_numpy_array(pbuf)
        for idx, (y, x) in zip(rows, corners):
            sel = (idx, slice(int(y), int(y) + patch), slice(int(x), int(x) + patch))
            array.get_orthogonal_selection(sel, out=target)
        return pbuf

    def patch_loop():
        for idx, (y, x) in zip(rows, corners):
            for row, i in enumerate(idx.tolist()):
                pbuf[row] = array[i, int(y) : int(y) + patch, int(x) : int(x) + patch]
        return pbuf

    def patch_each_loop():
        for idx, batch_corners in zip(rows, corners_each):
            for row, (i, (y, x)) in enumerate(zip(idx.tolist(), batch_corners)):
                pbuf[row] = array[i, int(y) : int(y) + patch, int(x) : int(x) + patch]
        return pbuf

    full = {"zarr-oindex": oindex, "zarr-out": out, "zarr-loop": loop}
    patch_same = {"zarr-oindex": patch_oindex, "zarr-out": patch_out, "zarr-loop": patch_loop}
    return full, patch_same, {"zarr-loop": patch_each_loop}


def tensorstore_tasks(path: Path, rows: list[np.ndarray], batch_size: int, corners,
                      corners_each, patch):
    """TensorStore on the zarr array at ``path``: every batch into one reused buffer."""
    source = tensorstore_zarr.open_array(path)
    buf = np.empty((batch_size, *FIELD_SHAPE), np.float32)
    pbuf = np.empty((batch_size, patch, patch), np.float32)
    target = tensorstore_zarr.buffer_target(buf)
    ptarget = tensorstore_zarr.buffer_target(pbuf)

    def full():
        for idx in rows:
            tensorstore_zarr.read_into(source.oindex[idx], target)
        return buf

    def patch_same():
        for idx, (y, x) in zip(rows, corners):
            window = source.oindex[idx, int(y) : int(y) + patch, int(x) : int(x) + patch]
            tensorstore_zarr.read_into(window, ptarget)
        return pbuf

    def patch_each():
        for idx, batch_corners in zip(rows, corners_each):
            pending = [
                ptarget[row].write(source[i, int(y) : int(y) + patch, int(x) : int(x) + patch])
                for row, (i, (y, x)) in enumerate(zip(idx.tolist(), batch_corners))
            ]
            for future in pending:
                future.result()
        return pbuf

    return full, patch_same, patch_each


def floor_task(inputs: list[floor.FloorInput]) -> Callable[[], np.ndarray]:
    buffer = np.empty(max(f.decoded_bytes for f in inputs), np.uint8)

    def run() -> np.ndarray:
        for floor_input in inputs:
            floor.decode(floor_input, buffer)
        return buffer

    return run


# --- checks -------------------------------------------------------------------------------------


def _checker(expected_full: np.ndarray, last_corner, last_corners_each, patch: int, phase: str):
    """Check the last batch each system returned against the generator's data."""
    if phase == "patch":
        y, x = (int(v) for v in last_corner)
        expected = expected_full[:, y : y + patch, x : x + patch]
    elif phase == "patch-each":
        expected = np.stack(
            [f[int(y) : int(y) + patch, int(x) : int(x) + patch]
             for f, (y, x) in zip(expected_full, last_corners_each)]
        )
    else:
        expected = expected_full

    def check(name: str, result) -> None:
        if name == harness.FLOOR:  # the floor decodes whole chunks: compare full fields
            got = np.asarray(result)[: expected_full.nbytes].view(np.float32)
            got = got.reshape(expected_full.shape)
            want = expected_full
        else:
            got, want = np.asarray(result), expected
        if got.shape != want.shape or not np.array_equal(got, want, equal_nan=True):
            raise AssertionError(f"{name} read a wrong last batch in phase {phase!r}")

    return check


# --- the workload -------------------------------------------------------------------------------


def _write_stores(n: int, workdir: Path) -> dict:
    """Write the atlas store and the zarr stacked store; return their paths, times and sizes."""
    info: dict = {}
    for system, write in (
        ("atlas", lambda items, root: atlas_adapter.write(items, root, n)),
        ("zarr-stacked", lambda items, root: zarr_stacked.write(items, root, n)),
    ):
        root = workdir / system
        samples = harness.TimedIterator(iter_ml_fields(n))
        begin = time.perf_counter()
        write(samples, root)
        info[system] = {
            "root": root,
            "write_s": time.perf_counter() - begin - samples.seconds,
            "bytes": harness.directory_size(root),
        }
    return info


def run(args: argparse.Namespace) -> dict:
    import atlas
    import zarr

    n = args.n or (200 if args.quick else 2000)
    n_batches = args.batches or (5 if args.quick else 30)
    batch_size = args.batch_size or (64 if args.quick else 256)
    patch = args.patch
    # the efficiency target sits close to its threshold: 5 rounds give a steadier median
    repeats = args.repeats if args.quick else max(args.repeats, 5)
    progress = harness.progress_printer(args.verbose)
    names = dataset_names(n)
    rows = draw_batches(n, n_batches, batch_size)
    picks = [[names[i] for i in idx] for idx in rows]
    corners = draw_windows(n_batches, patch, SEED + 1)
    corners_each = [draw_windows(batch_size, patch, SEED + 2 + b) for b in range(n_batches)]

    workdir = harness.make_workdir(args.workdir, "atlas_bench_ml")
    harness.log(f"[ml_batches] n={n} batches={n_batches}x{batch_size} workdir={workdir}")
    phases: dict[str, dict] = {}
    try:
        stores = _write_stores(n, workdir)
        store = atlas.Atlas.open(str(atlas_adapter.store_path(stores["atlas"]["root"])),
                                 read_only=True)
        with quiet_warnings():
            group = zarr.open_group(zarr_stacked.store_path(stores["zarr-stacked"]["root"]),
                                    mode="r")
            array = group[ARRAY]
        floor_inputs = []
        for batch in picks:
            chunks, sizes, codecs = atlas_adapter.stored_chunks(store, ARRAY, batch)
            floor_inputs.append(floor.FloorInput.from_chunks(chunks, sizes, codecs))
        floor_run = floor_task(floor_inputs)
        a_full, a_batches, a_patch, a_each = atlas_tasks(
            store, picks, batch_size, corners, corners_each, patch
        )
        z_full, z_patch, z_each = zarr_tasks(array, rows, batch_size, corners, corners_each, patch)
        t_full, t_patch, t_each = tensorstore_tasks(
            zarr_stacked.store_path(stores["zarr-stacked"]["root"]) / ARRAY, rows, batch_size,
            corners, corners_each, patch,
        )
        expected = reference_batch(rows[-1])

        plan = {
            "full": {SUBJECT: a_full, "atlas-batches": a_batches, **z_full,
                     TENSORSTORE: t_full, harness.FLOOR: floor_run},
        }
        if not args.no_patch:
            plan["patch"] = {SUBJECT: a_patch, **z_patch, TENSORSTORE: t_patch,
                             harness.FLOOR: floor_run}
            plan["patch-each"] = {SUBJECT: a_each, **z_each, TENSORSTORE: t_each,
                                  harness.FLOOR: floor_run}
        with quiet_warnings():
            for phase, tasks in plan.items():
                harness.log(f"[ml_batches] {phase}: {repeats} interleaved rounds after a warm-up")
                check = _checker(expected, corners[-1], corners_each[-1], patch, phase)
                samples = harness.time_interleaved(
                    tasks, repeats=repeats, warmup=True, check=check, progress=progress
                )
                phases[phase] = harness.phase_summary(samples)
    finally:
        if args.keep:
            harness.log(f"kept stores under {workdir}")
        else:
            harness.remove_path(workdir)

    result = {
        "workload": WORKLOAD,
        "name": args.name or f"{WORKLOAD}_n{n}" + ("_quick" if args.quick else ""),
        "subject": SUBJECT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {
            "n": n,
            "field_shape": list(FIELD_SHAPE),
            "dtype": "float32",
            "batches": n_batches,
            "batch_size": batch_size,
            "patch": [patch, patch],
            "patch_windows": "phase patch: one random window per batch; phase patch-each: "
            "one per sample (atlas: one stacked read with a start per sample)",
            "chunks": {"atlas": list(FIELD_SHAPE), "zarr-stacked": [1, *FIELD_SHAPE]},
            "codecs": {"atlas": f"{store.codec} level {store.level}"
                       + (", shuffled" if getattr(store, "shuffle", False) else ""),
                       "zarr-stacked": f"zstd level {zarr_stacked.ZSTD_LEVEL}"},
            "tensorstore": "driver zarr3 on the zarr-stacked array, default context, "
            "read into a reused buffer",
            "store_bytes": {k: v["bytes"] for k, v in stores.items()},
            "write_s (one round, not a claim)": {k: round(v["write_s"], 3)
                                                 for k, v in stores.items()},
            "floor_source": "atlas stored bytes",
            "floor_threads": floor.DEFAULT_THREADS,
            "batch_bytes": batch_size * int(np.prod(FIELD_SHAPE)) * 4,
            "repeats": repeats,
            "quick": bool(args.quick),
            "verified": "last batch of every system against the generator",
        },
        "versions": {**harness.library_versions(["tensorstore"]),
                     "atlas": atlas_adapter.version()},
        "phases": phases,
        "notes": ["quick run: small N, not for reporting"] if args.quick else [],
    }
    harness.finish_result(result)
    result["metrics"] = _metrics(result, n_batches)
    full = result["metrics"]
    command = "python -m benchmarks.ml_batches" + (" --quick" if args.quick else "")
    result["targets"] = [
        harness.target(4, f"ML batches N={n}: atlas / floor", full["efficiency"].get("full"),
                       0.7, True, command=command),
        harness.target(4, f"ML batches N={n}: atlas vs best zarr",
                       full["atlas_vs_best_zarr"].get("full"), 2, True, command=command),
        harness.target(13, f"ML batches N={n}: TensorStore / atlas (tied: >= 0.95)",
                       full["tensorstore_vs_atlas"].get("full"), 0.95, True, command=command),
    ]
    return result


def _metrics(result: dict, n_batches: int) -> dict:
    """batches/s per system and phase, efficiencies, and atlas over the best zarr reader."""
    per_s: dict[str, float] = {}
    efficiency: dict[str, float] = {}
    versus: dict[str, float] = {}
    tensorstore: dict[str, float] = {}
    best: dict[str, str] = {}
    for phase, stats in result["phases"].items():
        for system, s in stats.items():
            per_s[f"{phase}/{system}"] = round(n_batches / s["median_s"], 2)
        floor_s = stats.get(harness.FLOOR, {}).get("median_s")
        for system in (SUBJECT, "atlas-batches"):
            if floor_s and system in stats:
                key = phase if system == SUBJECT else f"{phase}/{system}"
                efficiency[key] = round(floor_s / stats[system]["median_s"], 3)
        zarr_names = [z for z in ZARR_READERS if z in stats]
        if zarr_names and SUBJECT in stats:
            fastest = min(zarr_names, key=lambda z: stats[z]["median_s"])
            best[phase] = fastest
            versus[phase] = round(stats[fastest]["median_s"] / stats[SUBJECT]["median_s"], 2)
        if TENSORSTORE in stats and SUBJECT in stats:
            tensorstore[phase] = round(
                stats[TENSORSTORE]["median_s"] / stats[SUBJECT]["median_s"], 3)
    return {
        "batches_per_s": per_s,
        "efficiency": efficiency,
        "atlas_vs_best_zarr": versus,
        "best_zarr_reader": best,
        "tensorstore_vs_atlas": tensorstore,
    }


def main(argv: list[str] | None = None) -> dict:
    return harness.cli(build_parser, run, argv)


if __name__ == "__main__":
    main()
