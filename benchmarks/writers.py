"""Many writers (issue 18): ingest with worker processes, and concurrent appenders.

**Ingest.** N small netCDF files (default 2,000; ``--quick`` 200) are generated once in the
workdir with xarray's ``to_netcdf``: per file ``temp`` and ``sal`` (100 float32 along the
coordinate ``depth``), ``lat`` and ``lon`` (0-D float64), attributes ``cycle`` (int) and
``platform`` (str). Each configuration is timed as the wall time of a fresh ``atlas ingest SRC
STORE -q ...`` process (``python -c "from atlas.cli import main; main()"``: imports, reading,
writing and the final commit), each run into a fresh store:

- ``one process``: no option (the subject);
- ``-j 2``: files read and decoded in 2 worker processes, written by the command;
- ``--workers 2``: a local dask cluster of 2 single-threaded worker processes that the command
  starts (and stops) itself, in the timed call; each worker writes its files to the store;
- ``--scheduler``: the same, against a ``LocalCluster(n_workers=2, threads_per_worker=1,
  processes=True)`` this benchmark started beforehand (its start is measured apart, not timed
  with the ingests, and the cluster is reused by every run).

All four run against a local folder and against a moto S3 server started in this process
(``s3://bench/<fresh prefix>``; the command and the cluster's workers find the endpoint and the
credentials in ``AWS_*`` environment variables). Rounds are interleaved, the order rotated every
round, medians; a warm-up round on the first 100 files comes first (imports, Numba cache, page
cache). Every ingest is verified: ``list_datasets()`` gives the N names in file order, the
stacked ``temp``, ``sal``, ``lat`` and ``lon`` equal the generated values exactly, and the
attributes of 25 datasets equal theirs.

**Appenders.** K processes (default 8; quick 4) each append M datasets (default 25; quick 5)
to one store, flushing after every dataset, with no retry loop: a ``ConflictError`` is counted
as surfaced (the process reopens the store and goes on), and a dataset not listed at the end is
lost. Against one process appending the K x M datasets the same way. Every process opens the
store and flushes one dataset into a scratch store of its own (imports, Numba kernels) before a
common start signal; the time is from the signal to the last process's last flush. Local store
(K x M) and the moto server (``--s3-appenders``, default 4 x 8). Every dataset's ``temp``,
``lat`` and attributes are checked.

Ratios are peer median / ``one process`` median (> 1: the peer takes longer); throughput ratios
(files/s of a configuration / files/s of one process) are in ``metrics``.

    python -m benchmarks.writers                  # N = 2000, 8 x 25 appenders, 3 rounds
    python -m benchmarks.writers --quick          # N = 200, 4 x 5 appenders, 1 round
    python -m benchmarks.writers --no-s3          # local store only
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from benchmarks import _harness as harness

WORKLOAD = "writers"
SUBJECT = "one process"
N_FILES, QUICK_N_FILES = 2000, 200
WARMUP_FILES = 100
APPENDERS, QUICK_APPENDERS = (8, 25), (4, 5)
S3_APPENDERS = (4, 8)
DEPTH = 100
ATTRIBUTE_SAMPLE = 25
REPO = harness.BENCHMARKS_DIR.parent
BUCKET = "bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
CLI = "import sys; from atlas.cli import main; sys.exit(main())"

ONE, JOBS, WORKERS, SCHEDULER = SUBJECT, "-j 2", "--workers 2", "--scheduler (2 workers, started)"
CONFIGS = (ONE, JOBS, WORKERS, SCHEDULER)
INGEST_PHASE = "ingest {n} files, {backend}"
APPEND_PHASE = "append {total} datasets, flush each, {backend}"


# --- the files ------------------------------------------------------------------------------------


def file_name(i: int) -> str:
    return f"p{i:05d}"


def profile_values(i: int) -> dict:
    """The values of file / dataset ``i`` (the same whatever N)."""
    rng = np.random.default_rng(i)
    depth = np.arange(DEPTH, dtype=np.float64) * 5.0
    return {
        "depth": depth,
        "temp": (2 + 20 * np.exp(-depth / 300) + 0.3 * rng.standard_normal(DEPTH)).astype("f4"),
        "sal": (35 + 0.1 * rng.standard_normal(DEPTH)).astype("f4"),
        "lat": float(rng.uniform(-70, 70)),
        "lon": float(rng.uniform(-180, 180)),
        "cycle": i,
        "platform": f"P{i % 37:04d}",
    }


def generate_files(folder: Path, n: int) -> dict[str, np.ndarray]:
    """N netCDF files in ``folder``; returns the reference (stacked values, attributes)."""
    import xarray as xr

    folder.mkdir(parents=True)
    ref: dict[str, list] = {k: [] for k in ("temp", "sal", "lat", "lon", "cycle", "platform")}
    for i in range(n):
        v = profile_values(i)
        xr.Dataset(
            {"temp": (("depth",), v["temp"]), "sal": (("depth",), v["sal"]),
             "lat": ((), v["lat"]), "lon": ((), v["lon"])},
            coords={"depth": v["depth"]},
            attrs={"cycle": v["cycle"], "platform": v["platform"]},
        ).to_netcdf(folder / f"{file_name(i)}.nc")
        for key, values in ref.items():
            values.append(v[key])
    return {key: np.asarray(values) for key, values in ref.items()}


def link_subset(src: Path, dest: Path, count: int) -> Path:
    """A folder of hard links to the first ``count`` files of ``src`` (the warm-up input)."""
    dest.mkdir()
    for i in range(count):
        os.link(src / f"{file_name(i)}.nc", dest / f"{file_name(i)}.nc")
    return dest


# --- the S3 server --------------------------------------------------------------------------------


class MotoServer:
    """A moto S3 server on 127.0.0.1 (a free port) with one bucket."""

    def __init__(self) -> None:
        import logging

        import boto3
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
        self.client.create_bucket(Bucket=BUCKET)

    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT": self.endpoint}

    def options(self) -> dict:
        return {"endpoint": self.endpoint, "region": "us-east-1",
                "access_key_id": "testing", "secret_access_key": "testing",
                "virtual_hosted_style_request": False, "client_options": {"allow_http": True}}

    @staticmethod
    def new_url(label: str) -> str:
        return f"s3://{BUCKET}/{label}-{uuid.uuid4().hex[:10]}"

    def remove(self, url: str) -> None:
        """Delete every object under the URL's prefix (moto keeps them in memory)."""
        prefix = url.split(f"s3://{BUCKET}/", 1)[1] + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys})

    def stop(self) -> None:
        self._server.stop()


class Backend:
    """Where the stores go: a local folder, or prefixes of the moto bucket."""

    def __init__(self, kind: str, workdir: Path, server: MotoServer | None) -> None:
        self.kind, self.workdir, self.server = kind, workdir, server
        self.count = 0

    def new_location(self, label: str) -> str:
        self.count += 1
        slug = label.replace(" ", "").replace("(", "").replace(")", "").replace(",", "")
        slug = slug.replace("-", "").replace("/", "")
        if self.kind == "local":
            return str(self.workdir / f"store-{self.count:03d}-{slug}")
        return self.server.new_url(f"{self.count:03d}-{slug}")

    def options(self) -> dict:
        return {} if self.kind == "local" else self.server.options()

    def remove(self, location: str) -> None:
        if self.kind == "local":
            harness.remove_path(Path(location))
        else:
            self.server.remove(location)


# --- ingest ---------------------------------------------------------------------------------------


def ingest_command(config: str, src: Path, location: str, scheduler: str) -> list[str]:
    extra = {ONE: [], JOBS: ["-j", "2"], WORKERS: ["--workers", "2"],
             SCHEDULER: ["--scheduler", scheduler]}[config]
    return [sys.executable, "-c", CLI, "ingest", str(src), location, "-q", *extra]


def run_ingest(config: str, src: Path, location: str, scheduler: str) -> float:
    """Wall seconds of one ``atlas ingest`` process (raises with its stderr if it failed)."""
    command = ingest_command(config, src, location, scheduler)
    begin = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600,
                          check=False)
    seconds = time.perf_counter() - begin
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[3:])} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return seconds


def verify_ingest(label: str, location: str, options: dict, ref: dict, n: int) -> None:
    """The store holds the N datasets in file order with exactly the generated values."""
    import atlas

    store = atlas.Atlas.open(location, read_only=True, **options)
    names = store.list_datasets()
    expected = [file_name(i) for i in range(n)]
    if names != expected:
        raise AssertionError(f"{label}: {len(names)} datasets listed, expected the {n} files' "
                             f"names in order (missing {len(set(expected) - set(names))})")
    for array in ("temp", "sal", "lat", "lon"):
        got = store.read_array_across_stacked(array, names)
        want = ref[array][:n]
        if got.shape != want.shape or not np.array_equal(got, want.astype(got.dtype)):
            raise AssertionError(f"{label}: stacked {array!r} differs from the generated values")
    step = max(1, n // ATTRIBUTE_SAMPLE)
    for i in range(0, n, step):
        attrs = store.open_dataset(names[i]).attributes()
        if int(attrs.get("cycle", -1)) != int(ref["cycle"][i]) or \
                attrs.get("platform") != ref["platform"][i]:
            raise AssertionError(f"{label}: attributes of {names[i]} are {attrs}")


def time_ingests(backend: Backend, src: Path, warm_src: Path, ref: dict, n: int, repeats: int,
                 scheduler: str, progress) -> dict[str, list[float]]:
    """Interleaved rounds of the four configurations (order rotated); every run verified."""
    samples: dict[str, list[float]] = {config: [] for config in CONFIGS}
    options = backend.options()
    harness.log(f"[writers] {backend.kind}: warm-up round on {WARMUP_FILES} files")
    for config in CONFIGS:
        location = backend.new_location(f"warm-{config}")
        seconds = run_ingest(config, warm_src, location, scheduler)
        verify_ingest(f"{config} warm-up ({backend.kind})", location, options, ref, WARMUP_FILES)
        backend.remove(location)
        if progress:
            progress(f"  warm-up {config:<32s} {seconds:8.2f} s")
    for round_index in range(repeats):
        for config in harness.rotated(list(CONFIGS), round_index):
            location = backend.new_location(config)
            seconds = run_ingest(config, src, location, scheduler)
            verify_ingest(f"{config} ({backend.kind})", location, options, ref, n)
            backend.remove(location)
            samples[config].append(seconds)
            harness.log(f"  {backend.kind:<5s} {config:<32s} round {round_index + 1}/{repeats}: "
                        f"{seconds:8.2f} s ({n / seconds:6.1f} files/s)")
    return samples


def start_cluster(env: dict[str, str]):
    """A LocalCluster of 2 single-threaded worker processes, its workers given ``env``
    (set in this process's environment before they start); returns (cluster, client, seconds)."""
    import dask
    from dask.distributed import Client, LocalCluster

    os.environ.update(env)
    begin = time.perf_counter()
    with dask.config.set({"distributed.worker.daemon": True}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=50)
        client = Client(cluster)
        client.wait_for_workers(2, timeout=120)
    seconds = time.perf_counter() - begin
    return cluster, client, seconds


# --- appenders ------------------------------------------------------------------------------------


def appender_name(who: int, i: int) -> str:
    return f"w{who:02d}-{i:03d}"


def appender_values(who: int, i: int) -> tuple[np.ndarray, float]:
    temp = (np.arange(DEPTH, dtype=np.float32) * 0.01 + who * 1000 + i).astype(np.float32)
    return temp, float(who) + i / 1000


def write_appended(store, who: int, i: int) -> None:
    temp, lat = appender_values(who, i)
    view = store.create_dataset(appender_name(who, i))
    view.define_array("temp", "float32", ["depth"], [DEPTH], fill_value=float("nan"))
    view.write_array("temp", [0], temp)
    view.define_array("lat", "float64", [], [])
    view.write_array("lat", [], np.asarray(lat))
    view.set_attribute("who", who)
    view.set_attribute("index", i)


def appender_process(location: str, options: dict, whos: list[int], count: int, scratch: str,
                     ready, go, results) -> None:
    """One appender: ``count`` datasets for each writer id in ``whos``, a flush after each,
    no retry loop. Warms up on a scratch store, reports ready, waits for ``go``."""
    report = {"whos": whos, "flushes": 0, "conflicts": 0, "other": 0, "errors": [],
              "fatal": None, "end": None}
    try:
        import atlas

        warm = atlas.Atlas.create(scratch)
        write_appended(warm, 99, 0)
        warm.flush("warm-up")
        store = atlas.Atlas.open(location, **options)
        store.list_datasets()
        ready.put(whos[0])
        go.wait(timeout=600)
        for i in range(count):
            for who in whos:
                try:
                    write_appended(store, who, i)
                    store.flush(f"{who}/{i}")
                    report["flushes"] += 1
                except atlas.ConflictError as err:  # surfaced to the caller: counted, not retried
                    report["conflicts"] += 1
                    report["errors"].append(f"ConflictError: {err}")
                    store = atlas.Atlas.open(location, **options)
                except Exception as err:  # noqa: BLE001 - any other error: counted, not retried
                    report["other"] += 1
                    report["errors"].append(f"{type(err).__name__}: {err}")
                    store = atlas.Atlas.open(location, **options)
        report["end"] = time.time()
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        report["fatal"] = f"{type(err).__name__}: {err}"
        ready.put(whos[0] if whos else -1)
    results.put(report)


def run_appenders(location: str, options: dict, processes: int, per_process: int, total: int,
                  workdir: Path) -> dict:
    """``processes`` appender processes (spawned) that together append ``total`` datasets under
    writer ids 0 ... K-1 (one process: all K ids in turn); returns the measurements."""
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    writers = total // per_process  # K writer ids
    if processes == 1:
        groups = [list(range(writers))]
    else:
        groups = [[who] for who in range(writers)]
    procs = []
    for index, whos in enumerate(groups):
        scratch = workdir / f"scratch-{uuid.uuid4().hex[:8]}-{index}"
        procs.append(ctx.Process(target=appender_process, args=(
            location, options, whos, per_process, str(scratch), ready, go, results)))
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=600)
    start = time.time()
    go.set()
    reports = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    fatal = [r["fatal"] for r in reports if r["fatal"]]
    if fatal:
        raise RuntimeError(f"appender failed: {fatal[0]}")
    wall = max(r["end"] for r in reports) - start
    return {"seconds": wall, "flushes": sum(r["flushes"] for r in reports),
            "conflicts": sum(r["conflicts"] for r in reports),
            "other": sum(r["other"] for r in reports),
            "messages": sorted((e for r in reports for e in r["errors"]),  # conflicts first
                               key=lambda e: not e.startswith("ConflictError"))[:5],
            "writers": writers}


def verify_appended(label: str, location: str, options: dict, writers: int,
                    per_process: int) -> int:
    """Datasets lost (expected minus listed); every listed one's values and attributes are
    checked, and each writer's datasets keep its order."""
    import atlas

    store = atlas.Atlas.open(location, read_only=True, **options)
    names = store.list_datasets()
    expected = [appender_name(w, i) for w in range(writers) for i in range(per_process)]
    listed = set(names)
    extra = listed - set(expected) - {"shared"}
    if extra:
        raise AssertionError(f"{label}: unexpected datasets {sorted(extra)[:5]}")
    present = [name for name in expected if name in listed]
    if present:
        temp = store.read_array_across_stacked("temp", present)
        lat = store.read_array_across_stacked("lat", present)
        for row, name in enumerate(present):
            who, i = int(name[1:3]), int(name[4:])
            want_temp, want_lat = appender_values(who, i)
            if not np.array_equal(temp[row], want_temp) or lat[row] != want_lat:
                raise AssertionError(f"{label}: values of {name} differ")
            attrs = store.open_dataset(name).attributes()
            if int(attrs["who"]) != who or int(attrs["index"]) != i:
                raise AssertionError(f"{label}: attributes of {name} are {attrs}")
    for w in range(writers):
        mine = [n for n in names if n.startswith(f"w{w:02d}-")]
        if mine != sorted(mine):
            raise AssertionError(f"{label}: writer {w}'s datasets are out of order")
    if not store.verify().ok:
        raise AssertionError(f"{label}: verify() found problems")
    return len(expected) - len(present)


def time_appenders(backend: Backend, writers: int, per_process: int, repeats: int,
                   workdir: Path, predefine: bool = False
                   ) -> tuple[dict[str, list[float]], dict]:
    """Interleaved rounds of one appender (K x M datasets) and K appenders (M each)."""
    import atlas

    total = writers * per_process
    many = f"{writers} processes"
    samples: dict[str, list[float]] = {SUBJECT: [], many: []}
    counts = {name: {"flushes": [], "conflicts": [], "other_errors": [], "lost": [],
                     "commits_per_s": []} for name in samples}
    options = backend.options()
    for round_index in range(repeats):
        for name in harness.rotated(list(samples), round_index):
            location = backend.new_location(f"append-{name}")
            with atlas.Atlas.create(location, **options) as store:
                shared = store.create_dataset("shared")
                shared.set_attribute("who", -1)
                if predefine:  # the arrays' schemas exist before the appenders start
                    shared.define_array("temp", "float32", ["depth"], [DEPTH],
                                        fill_value=float("nan"))
                    shared.define_array("lat", "float64", [], [])
            got = run_appenders(location, options, 1 if name == SUBJECT else writers,
                                per_process, total, workdir)
            lost = verify_appended(f"{name} ({backend.kind})", location, options, writers,
                                   per_process)
            backend.remove(location)
            samples[name].append(got["seconds"])
            c = counts[name]
            c["flushes"].append(got["flushes"])
            c["conflicts"].append(got["conflicts"])
            c["other_errors"].append(got["other"])
            c["lost"].append(lost)
            c["commits_per_s"].append(got["flushes"] / got["seconds"])
            if got["messages"]:
                c.setdefault("messages", []).extend(got["messages"][:3])
            harness.log(f"  {backend.kind:<5s} append {name:<12s} round {round_index + 1}/"
                        f"{repeats}: {got['seconds']:7.2f} s, {got['flushes']} commits "
                        f"({got['flushes'] / got['seconds']:.1f}/s), {got['conflicts']} "
                        f"ConflictErrors, {got['other']} other errors, {lost} lost")
            for message in got["messages"][:2]:
                harness.log(f"    {message[:200]}")
    return samples, counts


# --- the workload ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    n = args.n or (QUICK_N_FILES if args.quick else N_FILES)
    repeats = 1 if args.quick and args.repeats == harness.MIN_REPEATS else args.repeats
    writers, per_process = _pair(args.appenders) if args.appenders else (
        QUICK_APPENDERS if args.quick else APPENDERS)
    s3_writers, s3_per = _pair(args.s3_appenders)
    backends = ["local"] if args.no_s3 else ["local", "s3"]
    progress = harness.progress_printer(args.verbose)
    workdir = harness.make_workdir(args.workdir, "atlas_bench_writers")
    harness.log(f"[writers] N={n} files, repeats={repeats}, appenders {writers} x "
                f"{per_process}, workdir={workdir}")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    samples: dict[str, dict[str, list[float]]] = {}
    append_counts: dict[str, dict] = {}
    params_extra: dict = {}
    server = None
    try:
        if "s3" in backends:
            server = MotoServer()
        if not args.no_ingest:
            _ingest_phases(args, n, repeats, backends, workdir, server,
                           samples, params_extra, progress)
        appender_runs = [("local", writers, per_process)]
        if "s3" in backends and s3_writers:
            appender_runs.append(("s3", s3_writers, s3_per))
        for kind, k, m in appender_runs:
            backend = Backend(kind, workdir, server)
            phase = APPEND_PHASE.format(total=k * m, backend=kind)
            harness.log(f"[writers] {phase}: 1 process x {k * m} against {k} x {m}")
            samples[phase], append_counts[phase] = time_appenders(
                backend, k, m, repeats, workdir, args.predefine_schemas)
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            harness.log(f"kept the files under {workdir}")
        else:
            harness.remove_path(workdir)

    phases = {phase: harness.phase_summary(s) for phase, s in samples.items()}
    notes = [
        "ingest: wall time of a fresh `atlas ingest SRC STORE -q [option]` process (imports, "
        "reading, writing, the commit), each run into a fresh store; ratios are the "
        "configuration's median / one process's (< 1: faster than one process)",
        "--workers 2 starts and stops its own LocalCluster inside the timed call; --scheduler "
        "runs on a LocalCluster started once beforehand (cluster_start_s, not timed) and "
        "reused by every run",
        "appenders: from a common start signal (after each process imported atlas, opened the "
        "store and flushed a scratch store) to the last process's last flush; a flush after "
        "every dataset, no retry loop; ConflictErrors surfaced and datasets lost are summed "
        "over every round",
        "every ingest verified: N names in file order, stacked temp/sal/lat/lon equal to the "
        "generated values, attributes of 25 datasets; every appended dataset's values and "
        "attributes checked, and verify() of every appender store",
    ]
    if args.quick:
        notes.append("quick run: small N, not for reporting")
    result = {
        "workload": WORKLOAD,
        "name": args.name or f"{WORKLOAD}_n{n}" + ("_quick" if args.quick else ""),
        "subject": SUBJECT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "params": {
            "n_files": None if args.no_ingest else n,
            "file": f"temp, sal: ({DEPTH},) float32 along coordinate depth; lat, lon: 0-D "
                    "float64; attributes cycle (int), platform (str); xarray to_netcdf "
                    "(netCDF4, no compression)",
            **params_extra,
            "configurations": {c: " ".join(ingest_command(c, Path("SRC"), "STORE",
                                                          "ADDRESS")[3:]) for c in CONFIGS},
            "backends": backends,
            "appenders": f"{writers} x {per_process} local" + (
                f", {s3_writers} x {s3_per} s3" if "s3" in backends and s3_writers else ""),
            "appenders_predefined_schemas": bool(args.predefine_schemas),
            "repeats": repeats,
            "warmup": None if args.no_ingest else f"one untimed round of every configuration on the first "
                      f"{min(WARMUP_FILES, n)} files",
            "quick": bool(args.quick),
        },
        "versions": {**harness.library_versions(["distributed", "obstore", "moto"]),
                     "atlas": _atlas_version()},
        "phases": phases,
        "appender_counts": append_counts,
        "notes": notes,
    }
    harness.finish_result(result)
    result["metrics"] = _metrics(phases, append_counts, n)
    result["targets"] = _targets(result, n, append_counts, args.quick)
    return result


def _ingest_phases(args, n, repeats, backends, workdir, server, samples, params_extra,
                   progress):
    """Generate the files, start the cluster, time the four configurations per backend."""
    begin = time.perf_counter()
    ref = generate_files(workdir / "src", n)
    warm_src = link_subset(workdir / "src", workdir / "warm", min(WARMUP_FILES, n))
    params_extra["generate_s"] = round(time.perf_counter() - begin, 2)
    params_extra["src_bytes"] = harness.directory_size(workdir / "src")
    harness.log(f"[writers] generated {n} files ({params_extra['src_bytes'] / 2**20:.1f} "
                f"MiB) in {params_extra['generate_s']} s")
    env = server.env() if server is not None else {}
    cluster, client, cluster_s = start_cluster(env)
    try:
        params_extra["cluster_start_s"] = round(cluster_s, 2)
        scheduler = cluster.scheduler_address
        harness.log(f"[writers] LocalCluster (2 worker processes) started in {cluster_s:.2f} s "
                    f"at {scheduler}")
        for kind in backends:
            backend = Backend(kind, workdir, server)
            phase = INGEST_PHASE.format(n=n, backend=kind)
            harness.log(f"[writers] {phase}")
            samples[phase] = time_ingests(backend, workdir / "src", warm_src, ref, n, repeats,
                                          scheduler, progress)
    finally:
        client.close()
        cluster.close()


def _atlas_version() -> str | None:
    try:
        import atlas

        return getattr(atlas, "__version__", None)
    except Exception:  # noqa: BLE001
        return None


def _pair(text: str) -> tuple[int, int]:
    if text in ("0", "none", ""):
        return 0, 0
    k, m = text.lower().split("x")
    return int(k), int(m)


def _metrics(phases: dict, append_counts: dict, n: int) -> dict:
    throughput, speedup = {}, {}
    for phase, stats in phases.items():
        if not phase.startswith("ingest"):
            continue
        backend = phase.rsplit(", ", 1)[1]
        for config, s in stats.items():
            throughput[f"{config}, {backend}"] = round(n / s["median_s"], 1)
            if config != SUBJECT and SUBJECT in stats:
                speedup[f"{config}, {backend}"] = round(
                    stats[SUBJECT]["median_s"] / s["median_s"], 2)
    commits, surfaced, other, lost = {}, {}, {}, {}
    for phase, counts in append_counts.items():
        backend = phase.rsplit(", ", 1)[1]
        for name, c in counts.items():
            key = f"{name}, {backend}"
            commits[key] = round(statistics.median(c["commits_per_s"]), 1)
            surfaced[key] = sum(c["conflicts"])
            other[key] = sum(c["other_errors"])
            lost[key] = sum(c["lost"])
    return {"files/s (median)": throughput,
            "throughput / one process's (files/s ratio)": speedup,
            "commits/s (median)": commits,
            "ConflictErrors surfaced (all rounds)": surfaced,
            "other errors surfaced (all rounds)": other,
            "datasets lost (all rounds)": lost}


def _targets(result: dict, n: int, append_counts: dict, quick: bool) -> list[dict]:
    command = "python -m benchmarks.writers" + (" --quick" if quick else "")
    speedup = result["metrics"]["throughput / one process's (files/s ratio)"]
    t = harness.target
    out = []
    for backend, wanted in (("local", 1.7), ("s3", 1.5)):
        for config in (WORKERS, SCHEDULER):
            key = f"{config}, {backend}"
            if key in speedup:
                out.append(t(18, f"ingest {n} files {backend}, {config}: files/s / one "
                                 f"process's", speedup[key], wanted, True, command=command))
    for phase, counts in append_counts.items():
        backend = phase.rsplit(", ", 1)[1]
        many = next(name for name in counts if name != SUBJECT)
        c = counts[many]
        out.append(t(18, f"{many} appending ({backend}): ConflictErrors surfaced",
                     float(sum(c["conflicts"])), 0, False, unit="", command=command))
        out.append(t(18, f"{many} appending ({backend}): datasets lost",
                     float(sum(c["lost"])), 0, False, unit="", command=command))
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.writers",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None,
                        help=f"netCDF files to ingest (default {N_FILES}; quick {QUICK_N_FILES})")
    parser.add_argument("--appenders", default=None,
                        help="local appenders as KxM: K processes of M datasets (default "
                             f"{APPENDERS[0]}x{APPENDERS[1]}; quick "
                             f"{QUICK_APPENDERS[0]}x{QUICK_APPENDERS[1]})")
    parser.add_argument("--s3-appenders", default=f"{S3_APPENDERS[0]}x{S3_APPENDERS[1]}",
                        help="appenders on the moto server, KxM (0: none)")
    parser.add_argument("--no-s3", action="store_true", help="local store only")
    parser.add_argument("--predefine-schemas", action="store_true",
                        help="appenders: the store's first dataset defines temp and lat before "
                             "the appenders start (their schemas exist already)")
    parser.add_argument("--no-ingest", action="store_true", help="appenders only")
    harness.add_common_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> dict:
    return harness.cli(build_parser, run, argv)


if __name__ == "__main__":
    main()
