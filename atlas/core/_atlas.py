"""``Atlas``: one store handle — the dataset registry, pending writes, flush, compact, bulk reads."""

from __future__ import annotations

import re
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from atlas import codecs
from atlas.core import _chunks, _stats
from atlas.core._batches import batches
from atlas.core._dataset import DatasetView
from atlas.core._index import IndexCache, ResolvedIndex
from atlas.core._pending import PendingWrites, segment_key
from atlas.core._reader import ReadContext, distinct_values, read_rows
from atlas.core._validate import as_index_tuple, check_name, check_window
from atlas.errors import (
    AlreadyExistsError,
    ArrayNotFoundError,
    CorruptionError,
    DatasetNotFoundError,
    FormatError,
    ReadOnlyError,
    StoreNotFoundError,
)
from atlas.format.manifest import MANIFEST_KEY, Manifest, Schema
from atlas.format.segment import HEADER as SEGMENT_HEADER
from atlas.format.segment import TRAILER, SegmentWriter
from atlas.storage import Storage, from_description, open_storage
from atlas.storage._base import TEMP_SUFFIX

# what a commit interrupted between writing and renaming leaves (only commits write with put),
# exactly: other *.tmp files in the store folder are not atlas's to delete
_MANIFEST_TEMP = re.compile(re.escape(MANIFEST_KEY) + r"\.[0-9a-f]{32}" + re.escape(TEMP_SUFFIX))
ORPHAN_GRACE_SECONDS = 3600.0  # an unreferenced file younger than this may be a live writer's
RETIRE_GRACE_SECONDS = 600.0  # how long compact() keeps replaced segments for older readers


@dataclass
class VerifyReport:
    """What :meth:`Atlas.verify` found. ``problems`` is empty exactly when the store is sound."""

    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    # what crashed writers left outside the store's keys: incomplete multipart uploads, local
    # spill files (not problems; repair removes those older than the orphan grace period)
    leftovers: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    segments: int = 0
    chunks: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class Atlas:
    """A store of many datasets. Changes stay in memory until :meth:`flush`."""

    def __init__(self, storage: Storage, manifest: Manifest | None, token: Any):
        self._storage = storage
        self._manifest_state = manifest
        self._token = token
        self._index = IndexCache(storage)
        self._pending_state: PendingWrites | None = None
        self._changed = False

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, location: Any, codec: str = "zstd", *, level: int | None = None,
               **store_options: Any) -> "Atlas":
        """Create a new, empty store (a missing directory is created)."""
        codecs.check_codec(codec)
        storage = open_storage(location, **store_options)
        if storage.read_only:
            raise ReadOnlyError(f"cannot create a store at {storage.location}: it is read-only")
        if storage.read_manifest(MANIFEST_KEY) is not None:
            raise AlreadyExistsError(f"a store already exists at {storage.location}")
        manifest = Manifest.new(codec, codecs.DEFAULT_LEVELS[codec] if level is None else level)
        token = storage.commit(MANIFEST_KEY, manifest.encode(), None)
        return cls(storage, manifest, token)

    @classmethod
    def open(cls, location: Any, *, read_only: bool = False, **store_options: Any) -> "Atlas":
        """Open an existing store; raises StoreNotFoundError when there is none."""
        storage = open_storage(location, read_only=read_only, **store_options)
        manifest, token = _load_manifest(storage)
        return cls(storage, manifest, token)

    @classmethod
    def _reopen(cls, description: tuple) -> "Atlas":
        # unpickling: the manifest is read on first use, in the process that uses the handle
        return cls(from_description(description), None, None)

    def __reduce__(self):
        return (Atlas._reopen, (self._storage.describe(),))

    @property
    def _manifest(self) -> Manifest:
        if self._manifest_state is None:
            self._manifest_state, self._token = _load_manifest(self._storage)
        return self._manifest_state

    @property
    def _pending(self) -> PendingWrites:
        if self._pending_state is None:
            m = self._manifest
            self._pending_state = PendingWrites(self._storage, m.doc["codec"], m.doc["level"])
            # a handle dropped without flushing removes its spill files
            weakref.finalize(self, self._pending_state.abandon)
        return self._pending_state

    def __repr__(self) -> str:
        return f"<atlas.Atlas {self._storage.location}>"

    @property
    def location(self) -> str:
        return self._storage.location

    @property
    def codec(self) -> str:
        return self._manifest.doc["codec"]

    @property
    def generation(self) -> int:
        """The number of the last commit this handle made or read."""
        return self._manifest.generation

    # -- datasets ------------------------------------------------------------------------------

    def create_dataset(self, name: str) -> DatasetView:
        check_name(name, "dataset")
        self._check_writable()
        datasets = self._manifest.datasets
        if name in datasets:
            raise AlreadyExistsError(f"dataset {name!r} already exists in {self.location}")
        datasets[name] = {"attrs": {}, "arrays": {}}
        self._changed = True
        return DatasetView(self, name)

    def open_dataset(self, name: str) -> DatasetView:
        self._dataset_record(name)
        return DatasetView(self, name)

    def delete_dataset(self, name: str) -> None:
        record = self._dataset_record(name)
        self._check_writable()
        self._drop_slots({a["slot"] for a in record["arrays"].values()})
        del self._manifest.datasets[name]
        self._changed = True

    def list_datasets(self) -> list[str]:
        """Live datasets in creation order."""
        return list(self._manifest.datasets)

    def list_arrays(self) -> list[str]:
        """Sorted distinct array names over live datasets."""
        names: set[str] = set()
        for record in self._manifest.datasets.values():
            names.update(record["arrays"])
        return sorted(names)

    def dataset_exists(self, name: str) -> bool:
        return name in self._manifest.datasets

    def __contains__(self, name: object) -> bool:
        return name in self._manifest.datasets

    def __len__(self) -> int:
        return len(self._manifest.datasets)

    # -- durability ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Persist every change since the last flush, atomically: all of it or none of it."""
        if not self._changed:
            return
        self._check_writable()
        manifest = self._manifest
        generation = manifest.generation + 1
        finished = self._pending.finish(generation)
        segments = {name: list(refs) for name, refs in manifest.segments.items()}
        for seg in finished:
            self._index.add_footer(seg.key, seg.index)
            segments.setdefault(seg.array, []).append([seg.key, seg.size, seg.index.rows])
        self._refresh_stats(segments)
        doc = dict(manifest.doc, generation=generation, segments=segments)
        self._token = self._storage.commit(MANIFEST_KEY, Manifest(doc).encode(), self._token)
        manifest.doc["generation"] = generation
        manifest.doc["segments"] = segments
        self._pending.committed()
        self._changed = False

    def close(self) -> None:
        """Alias for :meth:`flush` (the seed API's name for the durability boundary)."""
        self.flush()

    def __enter__(self) -> "Atlas":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # a block that raised keeps its writes pending: nothing half-done reaches disk
        if exc_type is None:
            self.close()

    def _refresh_stats(self, segments: dict[str, list]) -> None:
        """Compute stats of every array whose stats were invalidated since the last flush.

        Committed records always carry stats, so only records this handle parsed (and so may
        have changed) are looked at: a flush does not parse every dataset's record."""
        for record in self._manifest.datasets.parsed():
            for name, entry in record["arrays"].items():
                if entry["stats"] is None:
                    ctx = ReadContext(self._storage,
                                      self._index.resolved(name, segments.get(name, [])), None)
                    schema = self._manifest.schemas[entry["schema"]]
                    entry["stats"] = _stats.compute(ctx, schema, entry["slot"])

    # -- compaction and verification -----------------------------------------------------------

    def compact(self, grace: float = RETIRE_GRACE_SECONDS) -> None:
        """Rewrite each array name's segments into one without dead chunks and commit.

        Pending changes are flushed first. The replaced files stay, listed as ``retired`` in the
        manifest, so that readers still holding the previous manifest keep working; a later
        compact deletes those retired more than ``grace`` seconds before (``grace=0`` deletes
        them at once). Unreferenced files left by crashed writers are removed once older than an
        hour (at once on a local store, where live writers lock theirs)."""
        self.flush()
        self._check_writable()
        manifest = self._manifest
        live: dict[str, set[int]] = {}
        for record in manifest.datasets.values():
            for name, entry in record["arrays"].items():
                live.setdefault(name, set()).add(entry["slot"])
        generation = manifest.generation + 1
        segments: dict[str, list] = {}
        retired: list[str] = []
        spills: list[tuple[str, str]] = []
        held: list[SegmentWriter] = []
        for name, refs in manifest.segments.items():
            resolved = self._index.resolved(name, refs)
            keep = np.flatnonzero(np.isin(resolved.columns["slot"],
                                          np.fromiter(live.get(name, ()), np.int64)))
            if len(keep) == 0:
                retired.extend(r[0] for r in refs)
                continue
            if len(refs) == 1 and len(keep) == resolved.rows == refs[0][2]:
                segments[name] = refs  # already compact
                continue
            key = segment_key(name, generation)
            path = self._storage.spill_path(key)
            writer = SegmentWriter(path)
            try:
                _copy_rows(self._storage, resolved, keep, writer)
                index = writer.finish()
                self._storage.publish(key, path)
            except BaseException:
                writer.abandon()
                self._storage.discard(key, path)
                raise
            spills.append((key, path))
            held.append(writer)
            self._index.add_footer(key, index)
            segments[name] = [[key, writer.size, index.rows]]
            retired.extend(r[0] for r in refs)
        now = time.time()
        waiting = manifest.doc.get("retired", []) + [[key, now] for key in retired]
        expired = [key for key, since in waiting if now - since >= grace]
        waiting = [[key, since] for key, since in waiting if now - since < grace]
        if not retired and not expired:
            self._remove_orphans()
            return
        doc = dict(manifest.doc, generation=generation, segments=segments, retired=waiting)
        try:
            self._token = self._storage.commit(MANIFEST_KEY, Manifest(doc).encode(), self._token)
        finally:
            # object stores uploaded a local copy of each new segment: drop it
            for key, path in spills:
                self._storage.release_spill(key, path)
            for writer in held:
                writer.release()
        manifest.doc["generation"] = generation
        manifest.doc["segments"] = segments
        manifest.doc["retired"] = waiting
        self._index.forget(retired)
        for key in expired:
            try:
                self._storage.delete(key)
            except OSError:
                pass  # committed already: the file is an orphan now, removed by a later sweep
        self._remove_orphans()

    def _remove_orphans(self, grace: float | None = None) -> list[str]:
        """Delete unreferenced segment files and temp files of interrupted commits older than
        ``grace`` seconds (default: none on a store whose live writers lock their files, else an
        hour) that no writer holds. Judged against the newest commit, under the commit lock, so
        that a file another handle just committed is never taken for an orphan (and no commit
        is writing its temp file meanwhile)."""
        storage = self._storage
        if grace is None:
            grace = 0.0 if storage.locks_spills else ORPHAN_GRACE_SECONDS
        now = time.time()
        removed = []
        try:
            with storage.commit_lock():
                for key, _size, mtime in self._orphans(strict=True):
                    if now - mtime >= grace:
                        try:
                            if storage.remove_unused(key):
                                removed.append(key)
                        except OSError:
                            pass  # left for the next sweep
        except (CorruptionError, FormatError):
            pass  # no sweeping against a manifest that does not decode
        try:  # crashed writers' multipart uploads and spill files (they hold no store key)
            removed += storage.remove_leftovers(ORPHAN_GRACE_SECONDS)
        except OSError:
            pass  # left for the next sweep
        return removed

    def _orphans(self, strict: bool = False) -> list[tuple[str, int, float]]:
        """Segment files that neither this handle's manifest nor the newest one references, and
        temp files that interrupted commits left (``strict``: raise when the newest manifest
        does not decode)."""
        referenced = _referenced(self._manifest.doc)
        found = self._storage.read_manifest(MANIFEST_KEY)
        if found is not None:
            try:
                newest = Manifest.decode(found[0], f"{self.location}/{MANIFEST_KEY}")
                referenced |= _referenced(newest.doc)
            except (CorruptionError, FormatError):
                if strict:
                    raise
        return [item for item in self._storage.list("")
                if _MANIFEST_TEMP.fullmatch(item[0]) or (
                    item[0].startswith("segments/") and item[0].endswith(".seg")
                    and item[0] not in referenced)]

    def verify(self, repair: bool = False) -> VerifyReport:
        """Check the manifest and every referenced segment and chunk against its checksum.

        Unreferenced files are listed as ``orphans`` (not problems); ``repair=True`` removes them.
        """
        report = VerifyReport()
        # a fresh backend and index: nothing cached from before the damage may hide it
        storage = from_description(self._storage.describe())
        index = IndexCache(storage)
        try:
            _load_manifest(storage)
        except (CorruptionError, FormatError, StoreNotFoundError) as err:
            report.problems.append(str(err))
        schemas = self._slot_schemas()
        for refs in self._manifest.segments.values():
            for key, size, rows in refs:
                report.segments += 1
                report.chunks += _verify_segment(storage, index, key, size, rows,
                                                 report.problems, schemas)
        report.problems += storage.layout_problems()  # links, FIFOs, ... inside the store
        try:
            report.orphans = [item[0] for item in self._orphans()]
        except (CorruptionError, FormatError):
            pass  # the damaged manifest is reported above
        report.leftovers = [what for what, _age in storage.leftovers()]
        if repair and (report.orphans or report.leftovers):
            self._check_writable()
            report.removed = self._remove_orphans()
        return report

    # -- bulk reads ----------------------------------------------------------------------------

    def read_array_across(self, array: str, dataset_names: Sequence[str],
                          start: Sequence[int] | None = None,
                          shape: Sequence[int] | None = None) -> list[np.ndarray | None]:
        """One array read from many datasets; None where a dataset lacks the array.

        Datasets that share a schema are read together through the stacked path.
        """
        names = _name_list(dataset_names)
        found = [i for i, n in enumerate(names) if array in self._dataset_record(n)["arrays"]]
        out: list[np.ndarray | None] = [None] * len(names)
        if not found:
            return out
        slots, schema_ids = self._rows(array, [names[i] for i in found])
        for schema_id in distinct_values(schema_ids):
            pick = np.flatnonzero(schema_ids == schema_id)
            schema = self._manifest.schemas[schema_id]
            where = f"{array!r} in dataset {names[found[pick[0]]]!r}"
            start_t, window = self._window(schema, start, shape, where)
            block = np.empty((len(pick), *window), dtype=schema.dtype.numpy)
            self._read(array, slots[pick], schema_ids[pick], start_t, window, block)
            for j, p in enumerate(pick):
                out[found[p]] = block[j]
        return out

    def read_array_across_stacked(self, array: str, dataset_names: Sequence[str],
                                  start: Sequence[int] | None = None,
                                  shape: Sequence[int] | None = None,
                                  out: np.ndarray | None = None) -> np.ndarray:
        """One array from many datasets as one (len(dataset_names), *window) array.

        Names may repeat and come in any order. A dataset without the array raises KeyError;
        windows that differ in shape or dtype raise ValueError naming the first mismatch.
        """
        names = _name_list(dataset_names)
        if not names:
            raise ValueError("dataset_names is empty; nothing to stack")
        slots, schema_ids = self._rows(array, names)
        dtype, start_t, window = self._common_window(array, names, schema_ids, start, shape)
        expected = (len(names), *window)
        if out is None:
            out = np.empty(expected, dtype=dtype)
        else:
            if not isinstance(out, np.ndarray):
                raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
            if out.shape != expected or out.dtype != dtype or not out.flags.c_contiguous:
                raise ValueError(f"out must be a C-contiguous {dtype} array of shape "
                                 f"{list(expected)}, got a {out.dtype} array of shape "
                                 f"{list(out.shape)}")
        self._read(array, slots, schema_ids, start_t, window, out)
        return out

    def batches(self, array: str, dataset_names: Sequence[str] | None = None,
                batch_size: int = 64, shuffle: bool = True, seed: int | None = None,
                start: Sequence[int] | None = None, shape: Sequence[int] | None = None,
                drop_last: bool = False, prefetch: int = 1):
        """Yield (names, array of shape (len(names), *window)) batches for training loops.

        ``dataset_names`` defaults to every dataset holding ``array``; with ``shuffle`` the
        order is a permutation drawn from ``seed``. ``prefetch`` batches are read ahead on a
        background thread while the caller works on the current one. A batch's array is reused
        for a later batch once nothing refers to it any more (not the array, nor a view or a
        ``torch.from_numpy`` tensor of it), so holding on to a batch keeps it intact.
        """
        return batches(self, array, dataset_names, batch_size, shuffle, seed, start, shape,
                       drop_last, prefetch)

    def _rows(self, array: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(slots, schema ids) of ``array`` in each named dataset; KeyError naming a miss."""
        get_record = self._manifest.datasets.get
        slots, schema_ids = [], []
        for name in names:
            record = get_record(name)
            if record is None:
                raise DatasetNotFoundError(f"no dataset {name!r} in {self.location}")
            entry = record["arrays"].get(array)
            if entry is None:
                raise ArrayNotFoundError(f"dataset {name!r} has no array {array!r}")
            slots.append(entry["slot"])
            schema_ids.append(entry["schema"])
        return np.array(slots, np.int64), np.array(schema_ids, np.int64)

    def _common_window(self, array, names, schema_ids, start, shape):
        """Check every distinct schema admits one window of one dtype; return it."""
        first = None
        for schema_id in distinct_values(schema_ids):  # first mismatch first in errors
            schema = self._manifest.schemas[schema_id]
            name = names[int(np.flatnonzero(schema_ids == schema_id)[0])]
            start_t, window = self._window(schema, start, shape,
                                           f"{array!r} in dataset {name!r}")
            if first is None:
                first = (schema.dtype, start_t, window, name)
            elif schema.dtype != first[0] or window != first[2]:
                raise ValueError(
                    f"cannot stack {array!r}: dataset {name!r} gives a {schema.dtype.name} "
                    f"window of shape {list(window)}, dataset {first[3]!r} gave a "
                    f"{first[0].name} window of shape {list(first[2])}")
        return first[0].numpy, first[1], first[2]

    # -- xarray (atlas.xarray holds the logic; imported on first use) ---------------------------

    def add_xr_dataset(self, ds: Any, name: str, chunks: Any = None) -> DatasetView:
        """Write an ``xarray.Dataset`` as the new dataset ``name`` (does not flush)."""
        from atlas.xarray._ingest import add_xr_dataset

        return add_xr_dataset(self, ds, name, chunks)

    def add_xarray_dataset(self, ds: Any, name: str, chunks: Any = None) -> DatasetView:
        """Alias of :meth:`add_xr_dataset`."""
        return self.add_xr_dataset(ds, name, chunks)

    def to_xarray(self, name: str) -> Any:
        """Dataset ``name`` as an ``xarray.Dataset`` (chunked variables lazy, dask-backed)."""
        from atlas.xarray._read import to_xarray

        return to_xarray(self, name)

    def open_as_xarray_dataset(self, name: str) -> Any:
        """Alias of :meth:`to_xarray`."""
        return self.to_xarray(name)

    def to_xarray_many(self, names: Sequence[str], concat_dim: str = "dataset") -> Any:
        """Data variables of many datasets stacked along ``concat_dim``."""
        from atlas.xarray._read import to_xarray_many

        return to_xarray_many(self, names, concat_dim)

    def open_as_many_xarray_dataset(self, names: Sequence[str],
                                    concat_dim: str = "dataset") -> Any:
        """Alias of :meth:`to_xarray_many`."""
        return self.to_xarray_many(names, concat_dim)

    # -- internals used by DatasetView ---------------------------------------------------------

    def _slot_schemas(self) -> dict[int, Schema]:
        """The schema of every live slot (what bounds the decoded size of its chunks)."""
        schemas = self._manifest.schemas
        return {entry["slot"]: schemas[entry["schema"]]
                for record in self._manifest.datasets.values()
                for entry in record["arrays"].values()}

    def _check_writable(self) -> None:
        if self._storage.read_only:
            raise ReadOnlyError(f"store at {self.location} is open read-only")

    def _dataset_record(self, name: str) -> dict:
        record = self._manifest.datasets.get(name)
        if record is None:
            raise DatasetNotFoundError(f"no dataset {name!r} in {self.location}")
        return record

    def _array_entry(self, dataset: str, array: str) -> dict:
        entry = self._dataset_record(dataset)["arrays"].get(array)
        if entry is None:
            raise ArrayNotFoundError(f"dataset {dataset!r} has no array {array!r}")
        return entry

    def _drop_slots(self, slots: set[int]) -> None:
        if self._pending_state is not None:
            self._pending_state.drop_slots(slots)

    def _context(self, array: str) -> ReadContext:
        resolved: ResolvedIndex = self._index.resolved(
            array, self._manifest.segments.get(array, []))
        return ReadContext(self._storage, resolved, self._pending_state)

    def _read(self, array: str, slots: np.ndarray, schema_ids: np.ndarray, start, window,
              out: np.ndarray) -> None:
        read_rows(self._context(array), slots, schema_ids, self._manifest.schemas, start,
                  window, out)

    @staticmethod
    def _window(schema: Schema, start, shape, where: str):
        start_t = (0,) * schema.ndim if start is None else \
            as_index_tuple(start, "start", schema.ndim, where)
        if shape is None:
            # a start past the end gives an empty window there, so the bounds check names it
            window = tuple(max(0, s - b) for s, b in zip(schema.shape, start_t))
        else:
            window = as_index_tuple(shape, "shape", schema.ndim, where)
        check_window(start_t, window, schema.shape, where)
        return start_t, window


def _name_list(dataset_names: Sequence[str]) -> list[str]:
    if isinstance(dataset_names, str):
        raise TypeError("dataset_names must be a sequence of names, not a single str")
    return list(dataset_names)


def _referenced(doc: dict) -> set[str]:
    """Keys a manifest document needs: its segments and the retired ones older readers use."""
    keys = {ref[0] for refs in doc["segments"].values() for ref in refs}
    keys.update(key for key, _since in doc.get("retired", ()))
    return keys


def _load_manifest(storage: Storage) -> tuple[Manifest, Any]:
    found = storage.read_manifest(MANIFEST_KEY)
    if found is None:
        raise StoreNotFoundError(f"no atlas store at {storage.location} "
                                 f"(no {MANIFEST_KEY} found)")
    data, token = found
    return Manifest.decode(data, f"{storage.location}/{MANIFEST_KEY}"), token


def _copy_rows(storage: Storage, resolved: ResolvedIndex, keep: np.ndarray,
               writer: SegmentWriter) -> None:
    """Append the kept chunk records, verbatim, to a new segment (no re-encoding)."""
    cols = resolved.columns
    for i in keep:
        seg = int(resolved.segment[i])
        stored_len = int(cols["stored_length"][i])
        mask_len = int(cols["mask_length"][i])
        record = bytes(storage.get_range(resolved.keys[seg], int(cols["offset"][i]),
                                         stored_len + mask_len, resolved.sizes[seg]))
        if codecs.checksum(record) != int(cols["checksum"][i]):
            raise CorruptionError(f"{storage.location}/{resolved.keys[seg]}: chunk at offset "
                                  f"{int(cols['offset'][i])} fails its checksum; not compacting")
        partial = tuple(int(cols[c][i]) for c in ("nulls", "valid", "min", "max"))
        writer.append(int(cols["slot"][i]), int(cols["chunk"][i]), record[:stored_len],
                      int(cols["decoded_length"][i]), record[stored_len:],
                      int(cols["codec"][i]), partial)


def _layout_problem(storage, key, size, cols) -> str | None:
    """What is wrong with the bytes no checksum covers: the header, and the records having to
    tile the file from the header to the index with no gap or overlap."""
    try:
        if bytes(storage.get_range(key, 0, len(SEGMENT_HEADER), size)) != SEGMENT_HEADER:
            return "segment header is damaged"
    except OSError as err:
        return f"segment header does not read ({err})"
    order = np.argsort(cols["offset"], kind="stable")
    offsets = cols["offset"][order]
    ends = (cols["offset"] + cols["stored_length"] + cols["mask_length"])[order]
    bounds = np.concatenate([[len(SEGMENT_HEADER)], ends])
    index_offset = size - TRAILER.size - 8 * len(cols) * len(offsets)
    if not np.array_equal(offsets, bounds[:-1]) or bounds[-1] != index_offset:
        return "chunk records do not tile the file (bytes outside every checksum)"
    return None


def _verify_segment(storage, index, key, size, rows, problems, schemas) -> int:
    where = f"{storage.location}/{key}"
    try:
        footer = index.footer(key, size)
    except FileNotFoundError:
        problems.append(f"{where}: segment file is missing")
        return 0
    except (CorruptionError, OSError, ValueError) as err:
        problems.append(str(err) if where in str(err) else f"{where}: {err}")
        return 0
    if footer.rows != rows:
        problems.append(f"{where}: index has {footer.rows} rows, the manifest records {rows}")
    cols = footer.columns
    layout = _layout_problem(storage, key, size, cols)
    if layout:
        problems.append(f"{where}: {layout}")
    bad = misfit = 0
    for i in range(footer.rows):
        stored_len = int(cols["stored_length"][i])
        length = stored_len + int(cols["mask_length"][i])
        # a live chunk decodes to exactly its chunk's size (never more: a forged length would
        # allocate it); a dead one (deleted dataset or array) is only checksummed
        schema = schemas.get(int(cols["slot"][i]))
        extent = None if schema is None else _chunks.chunk_extent(schema, int(cols["chunk"][i]))
        expected = None if extent is None else _chunks.raw_length(schema, extent)
        if schema is not None and (extent is None or (
                expected is not None and int(cols["decoded_length"][i]) != expected)):
            misfit += 1
            continue
        try:
            record = storage.get_range(key, int(cols["offset"][i]), length, size)
            if len(record) != length or codecs.checksum(record) != int(cols["checksum"][i]):
                raise CorruptionError("checksum mismatch")
            if schema is not None:
                codecs.decode(int(cols["codec"][i]), record[:stored_len],
                              int(cols["decoded_length"][i]), expected)
        except (CorruptionError, OSError):
            bad += 1
    if bad:
        problems.append(f"{where}: {bad} of {footer.rows} chunks fail their checksum")
    if misfit:
        problems.append(f"{where}: {misfit} of {footer.rows} chunks claim a chunk id or decoded "
                        "size their array's schema does not have")
    return footer.rows

