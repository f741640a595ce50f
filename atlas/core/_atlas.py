"""``Atlas``: one store handle — the catalog, pending writes, flush, bulk reads.

Compaction, the automatic merge of small files and verification live in
``atlas.core._maintain``; the read path in ``atlas.core._read``; the catalog in
``atlas.core._catalog``.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from atlas import codecs
from atlas.core import _maintain, _stats
from atlas.core._batches import batches
from atlas.core._catalog import Catalog
from atlas.core._dataset import DatasetView
from atlas.core._index import ChunkIndex, IndexCache, SegmentSource, merge_indexes
from atlas.core._pending import PendingWrites
from atlas.core._read import BlockCache, ReadPlan, _distinct, execute, plan_read, read_chunk
from atlas.core._validate import as_index_tuple, check_name, check_window
from atlas.core._write import write_window
from atlas.errors import (
    AlreadyExistsError,
    ArrayNotFoundError,
    CorruptionError,
    DatasetNotFoundError,
    FormatError,
    ReadOnlyError,
    StoreNotFoundError,
)
from atlas.format import root as root_format
from atlas.format.keys import ROOT_KEY
from atlas.format.root import DEFAULT_BLOCK_SIZE, FileRef, Root
from atlas.format.schema import Schema
from atlas.format.tables import Table
from atlas.storage import Storage, from_description, open_storage

VerifyReport = _maintain.VerifyReport
RETIRE_GRACE_SECONDS = _maintain.RETIRE_GRACE_SECONDS


class Atlas:
    """A store of many datasets. Changes stay in memory until :meth:`flush`."""

    def __init__(self, storage: Storage, root: Root | None, token: Any,
                 legacy: Any = None):
        self._storage = storage
        self._root_state = root
        self._token = token
        self._legacy = legacy  # a format-version-1 store opened for reading (atlas.format.legacy)
        self._files = IndexCache(storage)
        self._blocks = BlockCache()
        self._catalog_state: Catalog | None = None
        self._pending_state: PendingWrites | None = None
        self._inflight: _Inflight | None = None

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, location: Any, codec: str = "zstd", *, level: int | None = None,
               block_size: int = DEFAULT_BLOCK_SIZE, **store_options: Any) -> "Atlas":
        """Create a new, empty store (a missing directory is created). ``block_size``: the
        decoded size of the blocks small chunks are packed into."""
        codecs.check_codec(codec)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or not (
                1 << 12) <= block_size <= (1 << 30):
            raise ValueError(f"block_size must be an int from 4096 to 2**30 bytes, "
                             f"got {block_size!r}")
        storage = open_storage(location, **store_options)
        if storage.read_only:
            raise ReadOnlyError(f"cannot create a store at {storage.location}: it is read-only")
        if storage.read_manifest(ROOT_KEY) is not None:
            raise AlreadyExistsError(f"a store already exists at {storage.location}")
        root = Root(generation=0, codec=codec,
                    level=codecs.DEFAULT_LEVELS[codec] if level is None else level,
                    block_size=block_size)
        token = storage.commit(ROOT_KEY, root.encode(), None)
        return cls(storage, root, token)

    @classmethod
    def open(cls, location: Any, *, read_only: bool = False, **store_options: Any) -> "Atlas":
        """Open an existing store; raises StoreNotFoundError when there is none."""
        storage = open_storage(location, read_only=read_only, **store_options)
        root, token, legacy = load_root(storage)
        return cls(storage, root, token, legacy)

    @classmethod
    def _reopen(cls, description: tuple) -> "Atlas":
        # unpickling: the root is read on first use, in the process that uses the handle
        return cls(from_description(description), None, None)

    def __reduce__(self):
        return (Atlas._reopen, (self._storage.describe(),))

    @property
    def _root(self) -> Root:
        if self._root_state is None:
            self._root_state, self._token, self._legacy = load_root(self._storage)
        return self._root_state

    @functools.cached_property
    def _catalog(self) -> Catalog:
        # cached in the instance after the first use: the hot path reads it on every call
        root = self._root
        if self._legacy is not None:
            self._catalog_state = self._legacy.catalog(self._files)
        else:
            self._catalog_state = Catalog(self._storage, root, self._files)
        return self._catalog_state

    @property
    def _pending(self) -> PendingWrites:
        if self._pending_state is None:
            root = self._root
            self._pending_state = PendingWrites(self._storage, root.codec, root.level,
                                                root.block_size, self._catalog.schema,
                                                root.generation + 1)
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
        return self._root.codec

    @property
    def level(self) -> int:
        """The compression level new blocks are written with."""
        return self._root.level

    @property
    def generation(self) -> int:
        """The number of the last commit this handle made or read."""
        return self._root.generation

    @property
    def format_version(self) -> int:
        return 1 if self._legacy is not None else root_format.VERSION

    # -- datasets ------------------------------------------------------------------------------

    def create_dataset(self, name: str) -> DatasetView:
        check_name(name, "dataset")
        self._check_writable()
        return DatasetView(self, name, self._catalog.create(name))

    def open_dataset(self, name: str) -> DatasetView:
        self._did(name)
        return DatasetView(self, name)

    def delete_dataset(self, name: str) -> None:
        self._check_writable()
        did = self._did(name)
        catalog = self._catalog
        slots = {row[0] for row in (catalog.array_row(a, did) for a in catalog.arrays_of(did))
                 if row is not None}
        if self._pending_state is not None:
            self._pending_state.drop_slots(slots)
        catalog.delete(name, did)

    def list_datasets(self) -> list[str]:
        """Live datasets in creation order. Passing this list (unchanged) back to a bulk read
        means "every dataset" and costs nothing per name."""
        return self._catalog.names()

    def list_arrays(self) -> list[str]:
        """Sorted distinct array names over live datasets."""
        return self._catalog.array_names()

    def dataset_exists(self, name: str) -> bool:
        return isinstance(name, str) and self._catalog.did_of(name) is not None

    def __contains__(self, name: object) -> bool:
        return self.dataset_exists(name)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self._catalog.count()

    def __iter__(self):
        """The dataset names, in creation order."""
        return iter(self.list_datasets())

    def __getitem__(self, name: str) -> DatasetView:
        """``store[name]`` is ``store.open_dataset(name)`` (KeyError when there is none)."""
        return self.open_dataset(name)

    def _repr_html_(self) -> str:
        from atlas.core._html import atlas_html

        return atlas_html(self)

    # -- durability ----------------------------------------------------------------------------

    def _has_changes(self) -> bool:
        return bool(self._pending_state) or (self._catalog_state is not None and bool(
            self._catalog_state.pending_tables()))

    def flush(self, message: str | None = None) -> None:
        """Persist every change since the last flush, atomically: all of it or none of it."""
        if self._inflight is not None:
            self._settle_inflight()
        if not self._has_changes():
            return
        self._check_writable()
        root = self._root
        catalog = self._catalog
        generation = root.generation + 1
        pending = self._pending
        pending.prepare(generation)
        written = self._pending_tables(pending)
        finished = pending.finish(generation)
        segments = {name: list(refs) for name, refs in root.segments.items()}
        for seg in finished:
            ref = FileRef(seg.key, seg.size, _maintain.level_of(seg.size))
            self._files.add(ref, None, seg.index)
            segments.setdefault(seg.array, []).append(ref)
        new_root = root.successor(message=message, segments=segments, **catalog.counters())
        part = _maintain.write_part(self._storage, new_root, written) if written else None
        if part is not None:
            new_root.parts = [*root.parts, part.ref]
        merges = _maintain.tiered_merge(self, new_root)
        # until it is known to have landed or not, the attempt is kept (its files locked): a
        # commit whose response was lost is recognised by its commit id when retried
        marks = {sid: len(t.log) for sid, t in catalog.pending_tables().items()}
        self._inflight = _Inflight(new_root, written, part, merges, marks)
        self._token = self._storage.commit(ROOT_KEY, new_root.encode(), self._token)
        self._inflight = None
        self._committed(new_root, written, part, merges, marks)

    def _committed(self, root: Root, written: dict, part, merges, marks: dict) -> None:
        if part is not None:
            part.release()
        merges.release()
        self._root_state = root
        self._pending.committed(root.generation + 1)
        self._catalog.committed(root, written, marks)
        merges.committed(self)

    def _settle_inflight(self) -> None:
        """A flush raised while committing: find out whether its root landed."""
        inflight = self._inflight
        found = self._storage.read_manifest(ROOT_KEY)  # if this fails, the next retry asks again
        self._inflight = None
        landed = None
        if found is not None:
            try:
                landed = root_format.decode(found[0], f"{self.location}/{ROOT_KEY}")
            except (FormatError, CorruptionError):
                landed = None
        if landed is not None and landed.commit == inflight.root.commit:
            self._token = found[1]
            self._committed(inflight.root, inflight.written, inflight.part, inflight.merges,
                            inflight.marks)
            self._restate_written()
            return
        inflight.discard(self._storage)  # its files are orphans; this flush writes anew

    def _restate_written(self) -> None:
        """Arrays written since the attempt whose catalog rows went with it (a write logs a row
        only when its dataset has none pending): log them again, so that the next flush
        recomputes their statistics."""
        catalog = self._catalog
        for array, slots in self._pending.written_slots().items():
            table = catalog.table(("array", array)).view()
            for i in np.flatnonzero(np.isin(table.columns["slot"], list(slots)) & ~table.dead):
                catalog.stats_changed(array, int(table.key[i]), int(table.columns["slot"][i]),
                                      int(table.columns["schema"][i]))

    def close(self) -> None:
        """Alias for :meth:`flush` (the seed API's name for the durability boundary)."""
        self.flush()

    def __enter__(self) -> "Atlas":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # a block that raised keeps its writes pending: nothing half-done reaches disk
        if exc_type is None:
            self.close()

    def _pending_tables(self, pending: PendingWrites) -> dict[tuple, Table]:
        """The catalog's pending rows as tables, with the statistics of written arrays."""
        catalog = self._catalog
        out = {}
        for section_id, table in catalog.pending_tables().items():
            if section_id[0] != "array":
                out[section_id] = table.log.table()
                continue
            delta = table.log.table()
            live = ~delta.dead
            stats = _stats.compute(
                delta.columns["slot"][live], delta.columns["schema"][live], catalog.schemas(),
                pending.index(section_id[1]),
                lambda a=section_id[1]: self._committed_index(a),
                pending.string_partial(section_id[1]),
                lambda slot, chunk, extent, a=section_id[1]: self._current_chunk(
                    a, self._schema_of_slot(a, slot), slot, chunk, extent))
            for name, column in stats.items():
                delta.columns[name] = delta.columns[name].copy()
                delta.columns[name][live] = column
            out[section_id] = delta
            pending.forget_index(section_id[1])  # one array's index at a time in memory
        return out

    def _schema_of_slot(self, array: str, slot: int) -> Schema:
        table = self._catalog.table(("array", array)).view()
        pos = np.flatnonzero(table.columns["slot"] == slot)
        return self._catalog.schema(int(table.columns["schema"][pos[-1]]))

    # -- compaction and verification -----------------------------------------------------------

    def compact(self, grace: float = RETIRE_GRACE_SECONDS) -> None:
        """Merge every array name's segments into one and the catalog into one part, dropping
        deleted data, and commit.

        Pending changes are flushed first. The replaced files stay, listed as ``retired`` in the
        root, so that readers still holding the previous root keep working; a later compact
        deletes those retired more than ``grace`` seconds before (``grace=0`` deletes them at
        once). Unreferenced files left by crashed writers are removed once older than an hour
        (at once on a local store, where live writers lock theirs)."""
        self.flush()
        self._check_writable()
        _maintain.compact(self, grace)

    def verify(self, repair: bool = False) -> VerifyReport:
        """Check the root, every catalog part and every segment and block against its checksum.

        Unreferenced files are listed as ``orphans`` (not problems); ``repair=True`` removes them.
        """
        return _maintain.verify(self, repair)

    def usage(self) -> dict:
        """Files and bytes on disk: segments per array name, catalog parts, files kept for
        readers of older commits ("retired"), the root; codec, level and generation."""
        return _maintain.usage(self)

    # -- bulk reads and writes -----------------------------------------------------------------

    def read_array_across(self, array: str, dataset_names: Sequence[str],
                          start: Sequence[int] | None = None,
                          shape: Sequence[int] | None = None) -> list[np.ndarray | None]:
        """One array read from many datasets; None where a dataset lacks the array.

        Datasets that share a schema are read together through the stacked path.
        """
        names = _name_list(dataset_names)
        dids = self._dids(names)
        slots, schema_ids, found = self._catalog.rows(array, dids)
        out: list[np.ndarray | None] = [None] * len(names)
        if not found.any():
            return out
        present = np.flatnonzero(found)
        for schema_id in dict.fromkeys(schema_ids[present].tolist()):
            pick = present[schema_ids[present] == schema_id]
            schema = self._catalog.schema(schema_id)
            where = f"{array!r} in dataset {names[int(pick[0])]!r}"
            start_t, window = self._window(schema, start, shape, where)
            block = np.empty((len(pick), *window), dtype=schema.dtype.numpy)
            self._read(array, slots[pick], schema_ids[pick], start_t, window, block)
            for j, p in enumerate(pick.tolist()):
                out[p] = block[j]
        return out

    def read_array_across_stacked(self, array: str, dataset_names: Sequence[str] | None = None,
                                  start: Sequence[int] | None = None,
                                  shape: Sequence[int] | None = None,
                                  out: np.ndarray | None = None) -> np.ndarray:
        """One array from many datasets as one (len(dataset_names), *window) array.

        ``dataset_names`` None (or the unchanged list ``list_datasets()`` returned) means every
        dataset. Names may repeat and come in any order. A dataset without the array raises
        KeyError; windows that differ in shape or dtype raise ValueError naming the first
        mismatch.
        """
        names, slots, schema_ids = self._stack_rows(array, dataset_names)
        if not len(slots):
            raise ValueError("dataset_names is empty; nothing to stack")
        dtype, start_t, window = self._common_window(array, names, schema_ids, start, shape)
        expected = (len(slots), *window)
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

    def read_plan(self, array: str, dataset_names: Sequence[str] | None = None,
                  start: Sequence[int] | None = None,
                  shape: Sequence[int] | None = None) -> ReadPlan:
        """How :meth:`read_array_across_stacked` would read: the blocks it fetches and decodes,
        where each chunk lands, what is filled (``plan.blocks()`` fetches the stored blocks,
        ``plan.execute(out)`` carries the read out)."""
        names, slots, schema_ids = self._stack_rows(array, dataset_names)
        dtype, start_t, window = self._common_window(array, names, schema_ids, start, shape)
        return plan_read(self._indexes(array), slots, schema_ids, self._catalog.schemas(),
                         start_t, window, np.dtype(dtype).itemsize)

    def write_array_across_stacked(self, array: str, names: Sequence[str], data: np.ndarray,
                                   dims: Sequence[str] | None = None,
                                   chunk_shape: Sequence[int] | None = None,
                                   fill_value: Any = None) -> None:
        """The inverse of the stacked read: row i of ``data`` becomes ``array`` of dataset
        ``names[i]``, which is created if absent, with the array defined (shape
        ``data.shape[1:]``) if absent; an existing definition must match."""
        from atlas.core._stacked import write_stacked

        self._check_writable()
        write_stacked(self, array, names, data, dims, chunk_shape, fill_value)

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

    def _stack_rows(self, array: str, dataset_names) -> tuple[Any, np.ndarray, np.ndarray]:
        """(names or None, slots, schema ids) of ``array`` in the named datasets (None or the
        ``list_datasets()`` list: every dataset); KeyError naming the first miss."""
        catalog = self._catalog
        if dataset_names is None or catalog.is_all(dataset_names):
            dids = catalog.live_dids()
            slots, schema_ids, found = catalog.rows(array, dids, everything=True)
            names = dataset_names
        else:
            names = _name_list(dataset_names)
            dids = self._dids(names)
            slots, schema_ids, found = catalog.rows(array, dids)
        if not found.all():
            missing = int(np.flatnonzero(~found)[0])
            name = (names if names is not None else catalog.names())[missing]
            raise ArrayNotFoundError(f"dataset {name!r} has no array {array!r}")
        return names, slots, schema_ids

    def _holding(self, array: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(names, slots, schema ids) of every live dataset that has ``array``."""
        catalog = self._catalog
        slots, schema_ids, found = catalog.rows(array, catalog.live_dids(), everything=True)
        names = catalog.names()
        if found.all():
            return list(names), slots, schema_ids
        keep = np.flatnonzero(found)
        return [names[i] for i in keep.tolist()], slots[keep], schema_ids[keep]

    def _dids(self, names: list[str]) -> np.ndarray:
        """Dataset ids of ``names`` (one dict lookup each); KeyError naming the first miss."""
        dids = self._catalog.dids()
        try:
            return np.array([dids[n] for n in names], np.int64)
        except (KeyError, TypeError):
            for name in names:
                if not isinstance(name, str) or name not in dids:
                    raise DatasetNotFoundError(f"no dataset {name!r} in {self.location}") \
                        from None
            raise

    def _common_window(self, array, names, schema_ids, start, shape):
        """Check every distinct schema admits one window of one dtype; return it."""
        first = None
        for schema_id in _distinct(schema_ids):  # first mismatch first in errors
            schema = self._catalog.schema(schema_id)
            position = int(np.flatnonzero(schema_ids == schema_id)[0])
            name = (names if names is not None else self._catalog.names())[position]
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

    def to_xarray(self, name: str, **decode: Any) -> Any:
        """Dataset ``name`` as an ``xarray.Dataset`` (chunked variables lazy, dask-backed);
        ``decode_cf``, ``mask_and_scale``, ... and ``drop_variables`` as in xr.open_dataset."""
        from atlas.xarray._read import to_xarray

        return to_xarray(self, name, **decode)

    def open_as_xarray_dataset(self, name: str, **decode: Any) -> Any:
        """Alias of :meth:`to_xarray`."""
        return self.to_xarray(name, **decode)

    def to_xarray_many(self, names: Sequence[str], concat_dim: str = "dataset",
                       join: str = "exact") -> Any:
        """Many datasets stacked along a new dimension ``concat_dim``, lazily (dask);
        ``join="outer"`` aligns and pads datasets whose coordinates or sizes differ."""
        from atlas.xarray._many import to_xarray_many

        return to_xarray_many(self, names, concat_dim, join)

    def open_mfdataset(self, names: Sequence[Any], concat_dim: Any = None,
                       combine: str = "by_coords", **kwargs: Any) -> Any:
        """Datasets combined along real dimensions, lazily, as ``xr.open_mfdataset`` combines
        files (``combine="by_coords"`` or ``"nested"`` with ``concat_dim``)."""
        from atlas.xarray._combine import open_mfdataset

        return open_mfdataset(self, names, concat_dim, combine, **kwargs)

    def open_as_many_xarray_dataset(self, names: Sequence[str], concat_dim: str = "dataset",
                                    join: str = "exact") -> Any:
        """Alias of :meth:`to_xarray_many`."""
        return self.to_xarray_many(names, concat_dim, join)

    # -- what DatasetView and the bulk paths use -----------------------------------------------

    @property
    def _fast_writes(self) -> bool:
        """Whether writes may skip :meth:`_check_writable` (it would pass)."""
        return not self._storage.read_only and self._legacy is None

    def _check_writable(self, commits: bool = True) -> None:
        """ReadOnlyError on a read-only handle; FormatError for a commit to a version-1 store
        (``commits=False``: only files are removed, as an orphan sweep does)."""
        if self._storage.read_only:
            raise ReadOnlyError(f"store at {self.location} is open read-only")
        if commits and self._legacy is not None:
            raise FormatError(f"store at {self.location} is in format version 1, which this "
                              "atlas reads but does not write; convert it with "
                              f"`atlas upgrade {self.location}`")

    def _did(self, name: str) -> int:
        did = self._catalog.did_of(name) if isinstance(name, str) else None
        if did is None:
            raise DatasetNotFoundError(f"no dataset {name!r} in {self.location}")
        return did

    def _committed_index(self, array: str) -> ChunkIndex:
        if self._legacy is not None:
            return self._legacy.index(array, self._files)
        refs = self._root.segments.get(array, [])
        unsent = [] if self._pending_state is None else self._pending_state.unsent(array)
        if not unsent:
            return self._files.merged(array, refs)
        # a flush that failed after finishing its segments keeps them, newer than the root's:
        # reads, read-modify-writes and the retry's statistics must see them
        return merge_indexes([self._files.segment(r) for r in refs] + [i for i, _s in unsent],
                             [SegmentSource(self._storage, r) for r in refs] +
                             [s for _i, s in unsent])

    def _indexes(self, array: str) -> list[ChunkIndex]:
        """The chunk indexes of ``array``, newest first."""
        committed = self._committed_index(array)
        pending = None if self._pending_state is None else self._pending_state.index(array)
        return [committed] if pending is None else [pending, committed]

    def _read(self, array: str, slots: np.ndarray, schema_ids: np.ndarray, start, window,
              out: np.ndarray) -> None:
        """Fill ``out[i]`` with the window of (slots[i], schema_ids[i]) (the caller checked
        that every schema admits the window, in ``out``'s dtype)."""
        catalog = self._catalog
        schemas = catalog.schemas()
        plan = plan_read(self._indexes(array), slots, schema_ids, schemas, tuple(start),
                         tuple(window), out.dtype.itemsize)
        execute(plan, out, self._blocks)
        if self._pending_state is not None:
            self._overlay_dirty(array, slots, schema_ids, start, window, out)

    def _overlay_dirty(self, array, slots, schema_ids, start, window, out) -> None:
        """Partly written chunks not yet encoded are newer than anything indexed."""
        from atlas import kernels
        from atlas.core._read import chunk_plan

        dirty = self._pending_state.dirty_of(array)
        if not dirty:
            return
        rows_of = {}
        for i, slot in enumerate(slots.tolist()):
            rows_of.setdefault(slot, []).append(i)
        for (slot, chunk), held in dirty:
            for i in rows_of.get(slot, ()):
                plan = chunk_plan(self._catalog.schema(int(schema_ids[i])), tuple(start),
                                  tuple(window))
                k = np.flatnonzero(plan.chunk_ids == chunk)
                if not len(k):
                    continue
                k = int(k[0])
                values = held.values if out.dtype == object else \
                    np.require(held.values, requirements="C").view(out.dtype)
                kernels.copy_window(values, plan.src_starts[k], out[i, ...],
                                    plan.dst_starts[k], plan.boxes[k])

    def _current_chunk(self, array: str, schema: Schema, slot: int, chunk: int,
                       extent: tuple[int, ...]):
        """(values, written) of a chunk as this handle sees it now, or None if never written."""
        if self._pending_state is not None:
            hit = self._pending_state.lookup(array, schema, slot, chunk, extent)
            if hit is not None:
                return hit
        return read_chunk([self._committed_index(array)], schema, slot, chunk, extent,
                          self._blocks)

    def _write(self, array: str, slot: int, schema_id: int, schema: Schema,
               start: tuple[int, ...], values: np.ndarray) -> None:
        write_window(self._pending,
                     lambda s, c, e: self._current_chunk(array, schema, s, c, e),
                     array, slot, schema_id, schema, start, values, self._root.generation + 1)

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


@dataclass
class _Inflight:
    """A commit attempt that raised: what it would have committed, its files still locked."""

    root: Root
    written: dict
    part: Any
    merges: Any
    marks: dict

    def discard(self, storage: Storage) -> None:
        for w in ([self.part] if self.part is not None else []) + self.merges.written:
            w.release()


def _name_list(dataset_names: Sequence[str]) -> list[str]:
    if isinstance(dataset_names, str):
        raise TypeError("dataset_names must be a sequence of names, not a single str")
    return list(dataset_names)


def load_root(storage: Storage) -> tuple[Root, Any, Any]:
    """(root, version token, legacy reader or None) of the store at ``storage``."""
    found = storage.read_manifest(ROOT_KEY)
    if found is None:
        raise StoreNotFoundError(f"no atlas store at {storage.location} "
                                 f"(no {ROOT_KEY} found)")
    data, token = found
    where = f"{storage.location}/{ROOT_KEY}"
    if root_format.read_header(data, where) == 1:
        from atlas.format.legacy import LegacyStore

        legacy = LegacyStore.decode(storage, data, where)
        return legacy.root, token, legacy
    return root_format.decode(data, where), token, None
