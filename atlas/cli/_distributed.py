"""``atlas ingest --workers N`` / ``--scheduler ADDRESS``: the files are read and written on a
dask cluster.

The client forks the store (``Atlas.fork``) and sends batches of files to the workers; each
task reads its files, writes their segments straight to the store through a forked writer and
returns the writer's change set (catalog rows only) with a report per file. The client merges
change sets as they arrive and flushes at the end (or every K files): no array data passes
through it. A worker that dies mid-task leaves only orphan segments (the task is retried on
another worker, or the ingest stops keeping what was flushed before).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from atlas.cli._common import CommandError, kept_note, log, plural, warn
from atlas.errors import AtlasError

TASKS_PER_WORKER = 4  # batches per worker: enough to balance, few enough to keep tasks cheap
# files per task at most: each task writes a segment per array (a PUT each on an object
# store) and pays a writer's set-up; 2,000 small files on 2 workers ingest ~7% faster in
# batches of 250 than of 64 (here); more files than this still spread over many tasks
MAX_BATCH = 256


def ingest_batch(fork, items: list[tuple[str, str]], chunk_spec: dict | None,
                 options: dict[str, Any], check_chunks: bool) -> tuple[Any, list[dict]]:
    """(change set, per-file reports) of ingesting ``items`` ((path, name) pairs): runs on a
    worker. A file that fails leaves no trace in the change set; its report says why."""
    from atlas.cli import _ingest

    _ingest._use_options(options)
    writer = fork.writer()
    reports = []
    for path, name in items:
        report: dict[str, Any] = {"file": path, "dataset": name, "notes": [], "error": None,
                                  "bytes": _ingest.file_size(path)}
        try:
            try:
                loaded = _ingest.read_file(path)
            except Exception as err:  # noqa: BLE001 - reported per file
                raise _ingest._ReadError(
                    f"{path}: cannot read it as netCDF: {_ingest._one_line(err)}") from None
            try:
                report["notes"] += loaded.notes
                chunks = _ingest.chunks_for(loaded.dataset, chunk_spec, Path(path),
                                            check_chunks)
                check_chunks = False
                report["notes"] += _ingest._add(writer, loaded.dataset, name, chunks,
                                                Path(path))
            finally:
                loaded.close()
        except _ingest._ReadError as err:
            report["error"] = str(err)
        except CommandError as err:  # a --chunks mistake: the same for every file
            report["error"] = str(err)
            report["fatal"] = True
        reports.append(report)
    return writer.changes(), reports


def batches(items: list, workers: int, flush_every: int = 0) -> list[list]:
    """The files in tasks; with ``flush_every`` K no task spans a multiple of K, so that the
    commits fall every K files as without a cluster (not after the batch that passes K)."""
    size = max(1, min(MAX_BATCH, math.ceil(len(items) / (workers * TASKS_PER_WORKER))))
    step = flush_every or len(items) or 1
    return [items[i:min(i + size, g + step)] for g in range(0, len(items), step)
            for i in range(g, min(g + step, len(items)), size)]


def start_client(workers: int | None, scheduler: str | None):
    """(dask.distributed Client, its LocalCluster or None): of an existing scheduler, or of a
    local cluster of ``workers`` single-threaded processes (netCDF/HDF5 is not thread-safe).

    On Linux the local workers are forked from this process, so they start with atlas,
    xarray and netCDF4 already imported (spawned, each imports them again: ~2.5 s of CPU per
    worker on a small machine). Call this before opening the store: a fork must not inherit
    an open netCDF file, nor an object store client's runtime threads (obstore's calls hang in
    a forked child): a process that has imported obstore spawns its workers."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise CommandError("--workers and --scheduler need dask.distributed: pip install "
                           "'dask[distributed]'") from None
    if scheduler is not None:
        try:
            return Client(scheduler, timeout="20s"), None
        except (OSError, TimeoutError) as err:
            raise CommandError(f"cannot reach the dask scheduler at {scheduler}: "
                               f"{' '.join(str(err).split())}") from None
    method = "spawn"
    if sys.platform.startswith("linux") and "obstore" not in sys.modules:
        method = "fork"
        _import_for_workers()
    with dask.config.set({"distributed.worker.multiprocessing-method": method}), \
            warnings.catch_warnings(), _interrupts_ignored(method == "fork"):
        # Python 3.12+ warns of any fork beside threads (here the cluster's event loop)
        warnings.filterwarnings("ignore", "This process .* is multi-threaded",
                                DeprecationWarning)
        # no dashboard; the scheduler's HTTP routes on a free loopback port (on the default
        # one a second ingest warned that it was taken)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=50,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        return Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise


@contextlib.contextmanager
def _interrupts_ignored(when: bool):
    """Ctrl-C ignored while the workers are forked: they inherit that, and only this process
    acts on a Ctrl-C, which reaches the whole process group (a forked worker would print the
    traceback of its own KeyboardInterrupt)."""
    if not when or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _import_for_workers() -> None:
    """What every ingest task imports, imported once here for forked workers to inherit."""
    import xarray  # noqa: F401

    import atlas.xarray  # noqa: F401
    from atlas.cli._ingest import _engine

    _engine()  # imports netCDF4 where installed


def stop_client(client, cluster) -> None:
    client.close()
    if cluster is not None:
        cluster.close()


def run(client, store, todo: list[tuple[Path, str]], args, chunk_spec, options,
        progress) -> dict:
    """Ingest ``todo`` on the cluster of ``client``; returns the counters the summary needs."""
    from dask.distributed import as_completed

    workers = max(1, len(client.scheduler_info().get("workers", {})) or (args.workers or 1))
    log.info("ingest on %d dask workers (%s)", workers, args.scheduler or "local cluster")
    fork = store.fork()
    # absolute: a scheduler's workers may run in another folder
    jobs = batches([(str(Path(p).absolute()), n) for p, n in todo], workers, args.flush_every)
    futures = [client.submit(ingest_batch, fork, batch, chunk_spec, options, i == 0,
                             pure=False) for i, batch in enumerate(jobs)]
    position = {future.key: i for i, future in enumerate(futures)}
    arrived: dict[int, tuple] = {}
    done: dict[str, Any] = {"ingested": [], "skipped": [], "bytes": 0, "flushed": 0}
    since_flush = 0
    following = 0  # the batch to merge next
    try:
        for future in as_completed(futures):
            try:
                arrived[position[future.key]] = future.result()
            except Exception as err:  # noqa: BLE001 - a worker died, or the task raised
                raise CommandError(f"a dask task failed: {' '.join(str(err).split())}"
                                   f"{kept_note(done['flushed'])}") from err
            # merged in the order of the files, so the datasets keep it
            while following in arrived:
                changes, reports = arrived.pop(following)
                following += 1
                since_flush = _take(store, changes, reports, args, done, since_flush, progress)
        store.flush(f"atlas ingest: {plural(since_flush, 'file')} from {args.src}")
        done["flushed"] += since_flush
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted{kept_note(done['flushed'])}") from None
    except AtlasError as err:  # a merge or flush refused (a conflict with another writer)
        raise CommandError(f"{err}{kept_note(done['flushed'])}") from None
    finally:
        client.cancel(futures)
    return done


def _take(store, changes, reports: list[dict], args, done: dict, since_flush: int,
          progress) -> int:
    """Merge one batch's change set and report its files; flush every K files."""
    failed = [r for r in reports if r["error"]]
    for report in reports:
        for note in report["notes"]:
            warn(f"{report['file']}: {note}", progress)
    fatal = [r for r in failed if r.get("fatal") or not args.skip_errors]
    if fatal:
        raise CommandError(f"{fatal[0]['error']}{kept_note(done['flushed'])}")
    store.merge(changes)
    for report in reports:
        if report["error"]:
            done["skipped"].append({k: report[k] for k in ("file", "dataset", "error")})
            warn(f"skipped {report['error']}", progress)
        else:
            done["ingested"].append(report["dataset"])
            done["bytes"] += report["bytes"]
            since_flush += 1
        progress.advance(1, report["bytes"])
    if args.flush_every and since_flush >= args.flush_every:
        store.flush(f"atlas ingest: {plural(since_flush, 'file')} from {args.src}")
        done["flushed"] += since_flush
        since_flush = 0
    return since_flush


