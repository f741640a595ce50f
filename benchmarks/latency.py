"""Request counts of reads from an object store, and what 20 ms per request does to them.

A store of N gridded datasets, written in F flushes (so "temperature" lives in F segments), sits
in an obstore ``MemoryStore`` (or a local moto S3 server with ``--backend s3``) behind
``LatencyStorage`` (a sleep per request, as a round trip to a remote store) and
``CountingStorage``. Each read is measured with no added latency and with ``--latency``:

- ``stacked, cold``: open + ``read_array_across_stacked`` of the first 25% of every dimension
  of every dataset on a fresh handle (manifest, one footer per segment, then the data);
- ``stacked, warm``: the same read again on that handle (footers cached);
- ``per dataset, warm``: the same data read with one ``read_array`` per dataset.

"round trips" is the added time over the latency: requests made one after the other (footers of
several segments are fetched concurrently, so they cost one round trip together).

    .venv/bin/python -m benchmarks.latency                 # N=200, F=4, 20 ms
    .venv/bin/python -m benchmarks.latency --quick
    .venv/bin/python -m benchmarks.latency --backend s3 --n 100
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import (
    RESULTS_DIR,
    format_seconds,
    library_versions,
    render_table,
    write_json,
)

SHAPE = (48, 100, 100)  # (time, lat, lon), as the upstream "gridded" case
CHUNKS = (24, 50, 50)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="datasets (default 200)")
    parser.add_argument("--flushes", type=int, default=4, help="segments per array (default 4)")
    parser.add_argument("--latency", type=float, default=0.020, help="seconds per request")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds")
    parser.add_argument("--backend", choices=["memory", "s3"], default="memory")
    parser.add_argument("--quick", action="store_true", help="N=20, one repeat: smoke run")
    parser.add_argument("--no-json", action="store_true", help="do not write a result JSON")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    return parser


def _backend(kind: str):
    """(obstore store, stop) for the chosen backend."""
    if kind == "memory":
        from obstore.store import MemoryStore

        return MemoryStore(), (lambda: None)
    import logging

    import boto3
    from moto.server import ThreadedMotoServer
    from obstore.store import S3Store

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing",
                 ).create_bucket(Bucket="bench")
    store = S3Store("bench", prefix="latency", endpoint=endpoint, region="us-east-1",
                    access_key_id="testing", secret_access_key="testing",
                    virtual_hosted_style_request=False, client_options={"allow_http": True})
    return store, server.stop


def _fill(store, n: int, flushes: int) -> list[str]:
    """N datasets; flush k rewrites the k-th quarter of the time axis of every dataset."""
    import atlas

    names = [f"d{i:05d}" for i in range(n)]
    writer = atlas.Atlas.create(store)
    rng = np.random.default_rng(0)
    for name in names:
        ds = writer.create_dataset(name)
        ds.define_array("temperature", "float32", ["time", "lat", "lon"], list(SHAPE),
                        chunk_shape=list(CHUNKS))
        ds.write_array("temperature", [0, 0, 0],
                       (15 + 5 * rng.standard_normal(SHAPE)).astype(np.float32))
    writer.flush()
    for k in range(1, flushes):
        block = (SHAPE[0] // flushes, *SHAPE[1:])
        for name in names:
            writer.open_dataset(name).write_array(
                "temperature", [k * block[0] % SHAPE[0], 0, 0],
                (15 + 5 * rng.standard_normal(block)).astype(np.float32))
        writer.flush()
    return names


def _measure(store, names: list[str], latencies: list[float], repeats: int) -> list[dict]:
    """Per latency: {read label: counts, median and min seconds}; rounds interleave latencies."""
    import atlas
    from atlas.storage import CountingStorage, LatencyStorage, open_storage

    start = [0, 0, 0]
    window = [s // 4 for s in SHAPE]
    labels = ("stacked, cold", "stacked, warm", "per dataset, warm")
    samples = [{label: [] for label in labels} for _ in latencies]
    counts: dict[str, dict] = {}

    def record(which: int, label: str, counting: CountingStorage, seconds: float) -> None:
        samples[which][label].append(seconds)
        counts[label] = {"requests": counting.requests, "ranges": counting.ranges,
                         "bytes": counting.bytes_read, "by_call": dict(counting.counts)}

    for _ in range(repeats):
        for which, latency in enumerate(latencies):
            counting = CountingStorage(LatencyStorage(open_storage(store, read_only=True),
                                                      latency))
            begin = time.perf_counter()
            handle = atlas.Atlas.open(counting)
            stacked = handle.read_array_across_stacked("temperature", names, start, window)
            record(which, labels[0], counting, time.perf_counter() - begin)

            counting.reset()
            begin = time.perf_counter()
            again = handle.read_array_across_stacked("temperature", names, start, window)
            record(which, labels[1], counting, time.perf_counter() - begin)

            counting.reset()
            begin = time.perf_counter()
            rows = [handle.open_dataset(n).read_array("temperature", start, window)
                    for n in names]
            record(which, labels[2], counting, time.perf_counter() - begin)
            assert np.array_equal(stacked, again) and np.array_equal(stacked, np.stack(rows))
    return [{label: {**counts[label], "median_s": statistics.median(values),
                     "min_s": min(values), "samples_s": values}
             for label, values in per_latency.items()} for per_latency in samples]


def run(args: argparse.Namespace) -> dict:
    if args.quick:
        args.n, args.repeats = 20, 1
    store, stop = _backend(args.backend)
    try:
        names = _fill(store, args.n, args.flushes)
        import atlas

        segments = atlas.Atlas.open(store).usage()["per_array"]["temperature"]["segments"]
        # warm-up: compile the kernels before timing
        _measure(store, names[:2], [0.0], 1)
        base, slow = _measure(store, names, [0.0, args.latency], args.repeats)
    finally:
        stop()
    return {
        "workload": "latency", "name": f"latency_{args.backend}_n{args.n}",
        "params": {"n": args.n, "flushes": args.flushes, "segments": segments,
                   "latency_s": args.latency, "repeats": args.repeats,
                   "backend": args.backend, "shape": SHAPE, "chunks": CHUNKS},
        "versions": library_versions(["obstore"]),
        "reads": {label: {"requests": base[label]["requests"],
                          "ranges": base[label]["ranges"], "bytes": base[label]["bytes"],
                          "by_call": base[label]["by_call"],
                          "no_latency": base[label], "with_latency": slow[label]}
                  for label in base},
    }


def render(result: dict) -> str:
    params = result["params"]
    ms = params["latency_s"] * 1e3
    headers = ["read", "requests", "ranges", "MiB", "no latency", f"{ms:g} ms/request",
               "added", "round trips"]
    rows = []
    for label, read in result["reads"].items():
        fast, slow = read["no_latency"], read["with_latency"]
        # the fastest rounds carry the least noise from other processes
        added = slow["min_s"] - fast["min_s"]
        rows.append([label, str(read["requests"]), str(read["ranges"]),
                     f"{read['bytes'] / 2**20:.1f}", format_seconds(fast["median_s"]),
                     format_seconds(slow["median_s"]), format_seconds(added),
                     f"{added / params['latency_s']:.1f}" if params["latency_s"] else "-"])
    title = (f"{params['n']} datasets x 'temperature' {list(params['shape'])} in "
             f"{params['segments']} segments, backend {params['backend']}; times: median of "
             f"{params['repeats']}, added: difference of the fastest rounds")
    return title + "\n" + render_table(headers, rows)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    result = run(args)
    print(render(result), flush=True)
    if not args.no_json:
        print(f"wrote {write_json(result, Path(args.results_dir))}")
    return result


if __name__ == "__main__":
    main()
