"""``atlas ingest``: one dataset per netCDF file of a folder.

Files are opened and decoded by xarray, in worker processes with ``-j N`` (netCDF4/HDF5 is not
thread-safe, so parallel reading needs processes), and handed to the single writer, the main
thread, in sorted order. One flush at the end (or every K files) makes the ingest a batch:
an error or an interrupt keeps exactly what was flushed before it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import json
import os
import sys
import time
import traceback
import warnings
from collections import deque
from pathlib import Path
from typing import Any

from atlas.cli._common import (
    CommandError,
    check_new_store_folder,
    credentials_explained,
    emit,
    kept_note,
    log,
    plural,
    warn,
)
from atlas.cli._maintain import CODECS
from atlas.cli._progress import MB, Progress, human_bytes
from atlas.format.keys import RECORD_TEMP, ROOT_KEY, ROOT_TEMP, VERSIONS_PREFIX, is_data_key
from atlas.storage._local import LOCK_NAME

SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ingest", parents=[common], help="load a folder of netCDF files into a store",
        description="One dataset per netCDF file under SRC (" + ", ".join(SUFFIXES) + "), "
                    "named after the file without its suffix, in sorted order. STORE is created "
                    "when it does not exist. Nothing is kept unless it was flushed: once at the "
                    "end, or every K files with --flush-every.")
    p.add_argument("src", metavar="SRC", help="a folder of netCDF files, or one file")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--codec", choices=CODECS,
                   help="chunk compression of a new store (default: zstd); an existing store "
                        "keeps its own")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="a new store compresses values without the byte shuffle (format "
                        "version 2); an existing store keeps its own")
    p.add_argument("--chunks", metavar="JSON",
                   help='on-disk chunking: {"var": [n, ...]} per variable and/or {"dim": n} '
                        "per dimension (applied to every variable with that dimension)")
    p.add_argument("--no-recursive", dest="recursive", action="store_false",
                   help="only the files directly in SRC, not in its subfolders")
    p.add_argument("--skip-errors", action="store_true",
                   help="skip unreadable files and unsupported variables, report them and go on")
    p.add_argument("--skip-existing", action="store_true",
                   help="skip files whose dataset is already in STORE (resumes an ingest)")
    p.add_argument("--flush-every", metavar="K", type=int, default=0,
                   help="flush after every K ingested files (default: once at the end)")
    p.add_argument("-j", "--jobs", metavar="N", type=int, default=1,
                   help="read and decode files in N worker processes (0: one per CPU)")
    p.add_argument("--workers", metavar="N", type=int,
                   help="read and write on a local dask cluster of N worker processes: each "
                        "writes its files' data to STORE itself, one commit at the end")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="read and write on the workers of this dask scheduler "
                        "(tcp://host:port); STORE must be reachable from them")
    p.add_argument("--no-decode-times", dest="decode_times", action="store_false",
                   help="keep times as the numbers the files hold (xarray's "
                        "decode_times=False), with their units attribute")
    p.add_argument("--drop-variables", metavar="A,B", type=_name_list, default=(),
                   help="leave out these variables of every file (xarray's drop_variables; "
                        "also for variables that fail to decode)")
    p.set_defaults(func=cmd_ingest)


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated variable names, got "
                                         f"{text!r}")
    return names


# -- finding and naming files ----------------------------------------------------------------------

def find_files(src: Path, recursive: bool) -> list[Path]:
    if not src.exists():
        raise CommandError(f"source {src} does not exist")
    if src.is_file():
        return [src]
    pattern = _walk(src) if recursive else src.glob("*")
    # a link to nothing is listed too: reading it fails and says so, as for any unreadable file
    files = [p for p in pattern if p.suffix.lower() in SUFFIXES and (
        p.is_file() or p.is_symlink() and not p.exists())]
    return sorted(files, key=lambda p: p.relative_to(src).as_posix())


def _walk(src: Path):
    """Every entry under ``src``, into linked folders too (``rglob`` skips them), each real
    folder once (a link back to a folder above does not loop)."""
    seen = set()
    for folder, subfolders, names in os.walk(src, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        for name in names:
            yield Path(folder, name)


def dataset_names(files: list[Path]) -> list[str]:
    """The file names without suffix; two files giving one name is an error naming both."""
    seen: dict[str, Path] = {}
    for path in files:
        name = path.name[: -len(path.suffix)] if path.suffix else path.name
        if name in seen:
            raise CommandError(f"two files give the dataset name {name!r}: {seen[name]} and "
                               f"{path}; rename one of them")
        seen[name] = path
    return list(seen)


# -- chunking -----------------------------------------------------------------------------------

def parse_chunks(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    example = '\'{"sst": [1, 90, 180]}\' or \'{"lat": 90, "lon": 180}\''
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise CommandError(f"--chunks is not valid JSON ({err.msg} at character {err.pos}); "
                           f"expected e.g. {example}") from err
    if not isinstance(spec, dict) or not spec:
        raise CommandError(f"--chunks must be a non-empty JSON object, e.g. {example}; "
                           f"got {text}")
    for key, value in spec.items():
        ok = (isinstance(value, int) and not isinstance(value, bool) and (value >= 1 or
                                                                           value == -1)) or (
            isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                            and v >= 1 for v in value))
        if not ok:
            raise CommandError(f"--chunks[{key!r}] must be a positive int (a dimension) or a "
                               f"list of positive ints (a variable), got {json.dumps(value)}")
    return spec


def chunks_for(ds, spec: dict[str, Any] | None, path: Path, first: bool) -> dict | None:
    """Per-variable chunk shapes for ``add_xr_dataset`` from the ``--chunks`` spec."""
    if not spec:
        return None
    variables = {name: var for name, var in ds.variables.items() if var.ndim > 0}
    out: dict[str, list[int]] = {}
    dims = {k: v for k, v in spec.items() if isinstance(v, int)}
    for name, var in variables.items():
        if any(d in dims for d in var.dims):
            out[name] = [size if dims.get(d, -1) == -1 else min(dims[d], size)
                         for d, size in zip(var.dims, var.shape)]
    for key, value in spec.items():
        if isinstance(value, list) and key in variables:
            if len(value) != variables[key].ndim:
                raise CommandError(f"--chunks[{key!r}] has {len(value)} values, variable "
                                   f"{key!r} of {path} has rank {variables[key].ndim}")
            out[key] = value
    if first:  # typos are caught on the first file rather than silently ignored everywhere
        unknown = [k for k, v in spec.items()
                   if (k not in ds.sizes if isinstance(v, int) else k not in variables)]
        if unknown:
            raise CommandError(f"--chunks names {', '.join(map(repr, unknown))}, which "
                               f"{'is' if len(unknown) == 1 else 'are'} not a dimension or "
                               f"variable of {path} (the first file)")
    return out or None


# -- reading (in worker processes with -j) --------------------------------------------------------

# xr.open_dataset keywords of this ingest; set in each reader process by _use_options
_OPEN_OPTIONS: dict[str, Any] = {}


def _use_options(options: dict[str, Any]) -> None:
    _OPEN_OPTIONS.clear()
    _OPEN_OPTIONS.update(options)


class Loaded:
    """A file read into memory, with the warnings xarray gave while reading it."""

    def __init__(self, dataset, notes: list[str]):
        self.dataset = dataset
        self.notes = notes

    def close(self) -> None:
        self.dataset.close()


def read_file(path: str) -> Loaded:
    """Open, decode and load one file into memory (runs in a worker process with -j)."""
    import xarray as xr

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # no pandas indexes: ingest stores variables, and building an index per dimension
        # coordinate was a fifth of the time of a small file. No lock: every process reads
        # one file at a time on one thread, and a Ctrl-C that landed while xarray's HDF5 lock
        # was held left the close waiting on it forever
        with xr.open_dataset(path, engine=_engine(), create_default_indexes=False,
                             lock=False, **_OPEN_OPTIONS) as ds:
            return Loaded(ds.load(), notes(caught))


def notes(caught: list) -> list[str]:
    """Caught warnings as distinct one-line messages, in order."""
    out: list[str] = []
    for item in caught:
        text = " ".join(str(item.message).split())
        if text and text not in out:
            out.append(text)
    return out


def _engine() -> str | None:
    # netCDF4 reads every netCDF flavour and says "Unknown file format" for a broken file,
    # instead of xarray's long "no engine found" guess over all installed backends
    try:
        import netCDF4  # noqa: F401
    except ImportError:
        return None
    return "netcdf4"


class _ReadError(Exception):
    pass


def file_size(path) -> int:
    """The bytes of a listed file for the progress and the summary; 0 when it is gone (another
    program removed it since the listing: reading it is what fails, and says so)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _worker_context():
    """fork on Linux: workers start at once and re-import nothing. CPython forks them all at
    the first submit, before the pool starts its own threads, and the CLI has opened no netCDF
    file by then. spawn elsewhere (fork is unsafe on macOS)."""
    import multiprocessing

    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


def _start_reader(options: dict[str, Any]) -> None:
    _ignore_interrupts()
    _use_options(options)


def _ignore_interrupts() -> None:
    """Ctrl-C reaches the whole process group; only the writer must act on it. A worker that
    died of it while holding the pool's queue lock would leave the others blocked forever."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _reader(paths: list[Path], jobs: int, options: dict[str, Any]):
    """Yield (path, Loaded or exception) in order, reading ahead with ``jobs`` processes;
    ``options`` are the ``xr.open_dataset`` keywords."""
    _use_options(options)
    if jobs <= 1:
        for path in paths:
            try:
                yield path, read_file(str(path))
            except Exception as err:  # noqa: BLE001 - reported per file by the caller
                yield path, err
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    import xarray  # noqa: F401  (imported once here, forked workers inherit it)

    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=_worker_context(),
                                   initializer=_start_reader, initargs=(options,))
    pending: deque = deque()
    todo = iter(paths)
    finished = False
    try:
        for path in todo:
            pending.append((path, executor.submit(read_file, str(path))))
            if len(pending) >= 2 * jobs:
                break
        while pending:
            path, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool as err:
                raise CommandError(f"a reader process died while reading {path} (or a file "
                                   "read beside it); rerun with -j 1 to find the file") from err
            except Exception as err:  # noqa: BLE001 - reported per file by the caller
                result = err
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, executor.submit(read_file, str(nxt))))
            yield path, result
        finished = True
    finally:
        if finished:
            executor.shutdown(wait=True)
        else:  # an error or Ctrl-C
            _stop_workers(executor)


READER_GRACE_SECONDS = 5.0  # a reader still busy this long after an error or Ctrl-C is killed


def _stop_workers(executor) -> None:
    """Stop the pool without waiting on a read that hangs (a dead network mount, say). The
    readers ignore Ctrl-C: told to stop, each finishes the file in hand and exits; one still
    busy after the grace period is killed. (Terminating them at once could kill one holding
    the pool's queue lock, and the pool's own thread then waited for it forever.)"""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + READER_GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror  # the path is already in our message
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0]
    return text


# -- the command --------------------------------------------------------------------------------

def _open_or_create(location: str, codec: str | None, shuffle: bool = True):
    import atlas
    from atlas.errors import AlreadyExistsError, ConflictError, StoreNotFoundError

    try:
        with credentials_explained(location):
            store = atlas.Atlas.open(location)
    except StoreNotFoundError:
        check_new_store_folder(location)
        try:
            with credentials_explained(location):
                store = atlas.Atlas.create(location, codec=codec or "zstd", shuffle=shuffle)
        except (AlreadyExistsError, ConflictError):  # another ingest created it meanwhile
            return _open_or_create(location, codec, shuffle)
        log.info("created store %s (codec %s)", store.location, codec or "zstd")
        return store, True
    if codec is not None and codec != store.codec:
        raise CommandError(f"store {store.location} uses codec {store.codec}; --codec {codec} "
                           "only applies when ingest creates the store")
    if not shuffle and store.shuffle:
        raise CommandError(f"store {store.location} shuffles its blocks; --no-shuffle only "
                           "applies when ingest creates the store")
    return store, False


def cmd_ingest(args) -> int:
    from atlas.names import check_name

    if args.flush_every < 0:
        raise CommandError(f"--flush-every must be >= 0, got {args.flush_every}")
    if args.jobs < 0:
        raise CommandError(f"-j must be >= 0, got {args.jobs}")
    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers must be >= 1, got {args.workers}")
    if args.workers is not None and args.scheduler is not None:
        raise CommandError("give --workers (a local cluster) or --scheduler, not both")
    if (args.workers or args.scheduler) and args.jobs != 1:
        raise CommandError("-j reads files for this process's writer; with --workers or "
                           "--scheduler the workers read and write: leave -j out")
    jobs = args.jobs or os.cpu_count() or 1
    chunk_spec = parse_chunks(args.chunks)
    src = Path(args.src)
    files = find_files(src, args.recursive)
    if not files:
        where = "in" if not args.recursive else "under"
        raise CommandError(f"no netCDF files ({', '.join('*' + s for s in SUFFIXES)}) {where} "
                           f"{src}")
    names = dataset_names(files)

    skipped: list[dict] = []
    valid: list[tuple[Path, str]] = []
    for path, name in zip(files, names):
        try:
            check_name(name, "dataset")
        except ValueError as err:
            if not args.skip_errors:
                raise CommandError(f"{path}: {err}") from err
            # the error names the file, as a read error does
            skipped.append({"file": str(path), "dataset": name, "error": f"{path}: {err}"})
            warn(f"skipped {path}: {err}")
            continue
        valid.append((path, name))

    if args.workers or args.scheduler:
        from atlas.cli import _distributed

        # before the store is opened: local workers are forked from this process
    # A store this ingest created is removed again when the ingest fails before committing
    # anything: left behind empty, it would only make the corrected rerun ask for
    # --skip-existing or another name. After the cluster stopped: its workers' files are free
    made: dict[str, bool] = {}
    try:
        if args.workers or args.scheduler:
            client, cluster = _distributed.start_client(args.workers, args.scheduler)
            try:
                return _ingest(args, src, valid, skipped, jobs, chunk_spec, client, made)
            finally:
                _distributed.stop_client(client, cluster)
        return _ingest(args, src, valid, skipped, jobs, chunk_spec, None, made)
    except BaseException as err:
        if made.get("created") and "://" not in args.store:
            _drop_frames(err)  # the failed ingest's handle goes, and its pending files' locks
            gc.collect()
            _remove_unused_store(args.store, keep_folder=made["existed"])
        raise


def _drop_frames(err: BaseException | None) -> None:
    """Clear the locals of the frames an error (and the errors it chains) went through."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        traceback.clear_frames(err.__traceback__)
        _drop_frames(err.__cause__)
        err = err.__context__


def _ingest(args, src: Path, valid: list[tuple[Path, str]], skipped: list[dict], jobs: int,
            chunk_spec, client, made: dict[str, bool]) -> int:
    """The ingest once the files are listed (``client``: a dask client, or None); ``made``
    says whether it created the store, and whether its folder ``existed`` before."""
    made["existed"] = "://" not in args.store and os.path.exists(args.store)
    store, made["created"] = _open_or_create(args.store, args.codec, args.shuffle)
    return _ingest_into(args, store, made["created"], src, valid, skipped, jobs, chunk_spec,
                        client)


def _remove_unused_store(location: str, keep_folder: bool) -> None:
    """Remove the local store at ``location`` if it still holds only what creating it wrote
    (its first root and that version's record) and files no live writer holds (what the failed
    ingest left): no commit since, and no other writer's pending files (a second ingest into the
    same new store). Under the store's commit lock, so that no commit lands between the check
    and the removal. Only atlas's own files and folders go: anything else put there meanwhile
    stays, and so does the folder with it, or when it existed before (it was empty then)."""
    import atlas
    from atlas.errors import AtlasError
    from atlas.storage import LocalStorage

    try:
        storage = LocalStorage(location)
        with storage.commit_lock():
            current = atlas.Atlas.open(location, read_only=True)
            keys = storage.keys()
            records = [k for k in keys if k.startswith(VERSIONS_PREFIX + "/")]
            others = set(keys) - {ROOT_KEY, LOCK_NAME, *records}
            if len(current) or len(current.history()) != 1 or len(records) != 1:
                return
            foreign = [key for key in others if not _atlas_file(key)]
            held = [key for key in sorted(set(others) - set(foreign))
                    if not storage.remove_unused(key)]
            if held:  # another writer's pending files
                return
            os.remove(os.path.join(location, ROOT_KEY))  # first: a removal cut short leaves
            for key in records:                          # no store
                os.remove(os.path.join(location, *key.split("/")))
            _remove_empty_folders(location)
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(location, LOCK_NAME))
            if foreign:
                log.warning("left %d files atlas did not write in %s (%s)", len(foreign),
                            location, ", ".join(sorted(foreign)[:3]))
            elif not keep_folder:
                os.rmdir(location)
    except (AtlasError, OSError) as err:
        log.warning("left the store %s, created by this ingest: %s", location, err)
        return
    log.info("removed the store %s, created by this ingest and never committed to", location)


def _atlas_file(key: str) -> bool:
    """Whether a failed ingest may have left ``key`` in the store it created: a writer's
    segment, part or retired list, or a root or record interrupted while written."""
    return is_data_key(key) or bool(ROOT_TEMP.fullmatch(key) or RECORD_TEMP.fullmatch(key))


def _remove_empty_folders(location: str) -> None:
    """The folders atlas makes in a store, where nothing is left in them."""
    for folder in ("segments", "catalog", VERSIONS_PREFIX, "tags"):
        path = os.path.join(location, folder)
        with contextlib.suppress(OSError):  # not there, or something is left in it
            for entry in os.scandir(path):
                if entry.is_dir(follow_symlinks=False):
                    os.rmdir(entry.path)
            os.rmdir(path)


def _ingest_into(args, store, created: bool, src: Path, valid: list[tuple[Path, str]],
                 skipped: list[dict], jobs: int, chunk_spec, client) -> int:
    existing = [(p, n) for p, n in valid if store.dataset_exists(n)]
    if existing and not args.skip_existing:
        path, name = existing[0]
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise CommandError(f"dataset {name!r} from {path} is already in {store.location}{more}; "
                           "use --skip-existing to resume an ingest")
    todo = [(p, n) for p, n in valid if not store.dataset_exists(n)]
    log.info("ingest %d files from %s into %s (%d already there, %d invalid names, -j %d)",
             len(todo), src, store.location, len(existing), len(skipped), jobs)

    ingested: list[str] = []
    flushed = 0
    since_flush = 0
    total_bytes = 0
    progress = Progress(len(todo), enabled=not args.quiet)
    names_of = {p: n for p, n in todo}
    first = True
    options = {"drop_variables": list(args.drop_variables) or None}
    if not args.decode_times:
        options["decode_times"] = False
    if args.drop_variables and todo:
        _check_drop(todo[0][0], args.drop_variables, progress)
    if client is not None and todo:
        from atlas.cli import _distributed

        try:
            done = _distributed.run(client, store, todo, args, chunk_spec, options, progress)
        finally:
            progress.close()
        return _report(args, store, created, done["ingested"], existing,
                       skipped + done["skipped"], done["bytes"], progress.elapsed())
    results = _reader([p for p, _ in todo], min(jobs, len(todo)), options)
    try:
        for path, result in results:
            name = names_of[path]
            nbytes = file_size(path)
            try:
                if isinstance(result, BaseException):
                    raise _ReadError(f"{path}: cannot read it as netCDF: {_one_line(result)}")
                try:
                    for note in result.notes:
                        warn(f"{path}: {note}", progress)
                    chunks = chunks_for(result.dataset, chunk_spec, path, first)
                    first = False
                    for note in _add(store, result.dataset, name, chunks, path):
                        warn(f"{path}: {note}", progress)
                finally:
                    result.close()
            except _ReadError as err:
                if not args.skip_errors:
                    raise CommandError(f"{err}{kept_note(flushed)}") from err.__cause__
                skipped.append({"file": str(path), "dataset": name, "error": str(err)})
                warn(f"skipped {err}", progress)
                progress.advance(1, nbytes)
                continue
            ingested.append(name)
            total_bytes += nbytes
            since_flush += 1
            log.debug("ingested %s as %r (%d bytes)", path, name, nbytes)
            if args.flush_every and since_flush >= args.flush_every:
                store.flush(f"atlas ingest: {plural(since_flush, 'file')} from {args.src}")
                flushed += since_flush
                since_flush = 0
                log.info("flushed after %d files", flushed)
            progress.advance(1, nbytes)
        store.flush(f"atlas ingest: {plural(since_flush, 'file')} from {args.src}")
        flushed += since_flush
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted{kept_note(flushed)}") from None
    finally:
        results.close()  # stops the reader processes now, not when the traceback is freed
        progress.close()
    return _report(args, store, created, ingested, existing, skipped, total_bytes,
                   progress.elapsed())


def _report(args, store, created: bool, ingested: list[str], existing: list, skipped: list,
            total_bytes: int, elapsed: float) -> int:
    log.info("ingested %d files (%d bytes) in %.2f s; skipped %d", len(ingested), total_bytes,
             elapsed, len(skipped))
    summary = {
        "store": store.location, "created": created, "ingested": ingested,
        "existing": [n for _, n in existing], "skipped": skipped, "files": len(ingested),
        "bytes": total_bytes, "seconds": round(elapsed, 3),
        "files_per_s": round(len(ingested) / elapsed, 2) if elapsed > 0 else None,
        "mb_per_s": round(total_bytes / MB / elapsed, 2) if elapsed > 0 else None,
    }
    emit(args, summary, lambda: _render(summary))
    return 0


def _check_drop(path: Path, names: tuple[str, ...], progress) -> None:
    """Warn about --drop-variables names the first file does not have (typos, mostly)."""
    import xarray as xr

    try:
        with xr.open_dataset(path, engine=_engine(), decode_cf=False) as ds:
            missing = [n for n in names if n not in ds.variables]
    except Exception:  # noqa: BLE001 - the real read reports the file's problem
        return
    if missing:
        warn(f"--drop-variables names {', '.join(map(repr, missing))}, which "
             f"{'is' if len(missing) == 1 else 'are'} not a variable of {path} (the first file)",
             progress)


def _add(store, ds, name: str, chunks: dict | None, path: Path) -> list[str]:
    """``add_xr_dataset`` with failures (unsupported variables...) as a per-file _ReadError;
    returns its warnings as one-line notes."""
    from atlas.errors import ConflictError, CorruptionError, ReadOnlyError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if chunks:
                store.add_xr_dataset(ds, name, chunks=chunks)
            else:
                store.add_xr_dataset(ds, name)
        return notes(caught)
    except (TypeError, ValueError, NotImplementedError, OverflowError, KeyError,
            OSError) as err:
        if isinstance(err, (ConflictError, CorruptionError, ReadOnlyError, PermissionError)) \
                or getattr(err, "errno", None) == errno.EROFS:
            # the store's problem, not the file's: the file was opened and read already, so
            # permission to read it is not what is missing
            raise
        # a failed add must leave no trace of the dataset
        if store.dataset_exists(name):
            store.delete_dataset(name)
        raise _ReadError(f"{path}: {_one_line(err)}") from err


def _render(s: dict) -> str:
    line = (f"ingested {plural(s['files'], 'file')} ({human_bytes(s['bytes'])}) into "
            f"{s['store']} in {s['seconds']:.1f} s")
    if s["files"] and s["files_per_s"] is not None:
        line += f": {s['files_per_s']:.1f} files/s, {s['mb_per_s']:.1f} MB/s"
    lines = [line]
    if s["existing"]:
        lines.append(f"skipped {plural(len(s['existing']), 'file')} already in the store")
    if s["skipped"]:
        lines.append(f"skipped {plural(len(s['skipped']), 'file')} with errors:")
        lines += [f"  {item['error']}" for item in s["skipped"]]
    return "\n".join(lines)
