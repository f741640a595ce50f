"""``write_array_across_stacked``: row i of an (N, ...) array becomes one array of dataset i.

The inverse of the stacked read, and the fast way in for many small datasets: names are checked
and datasets created in bulk (the names scanned joined, as bytes when ASCII; repeats found by
sorting their hashes; the handle's name -> id dict filled when next used), and rows of one
chunk each are packed straight into blocks (the rows of the input are already the blocks'
bytes), compressed on the worker pool, with their statistics partials from one kernel call per
block; the first blocks are compressed while the names are checked. Arrays of more than one
chunk per row go through the per-dataset write path.
"""

from __future__ import annotations

from itertools import repeat
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from atlas import codecs, kernels
from atlas._pools import worker_pool
from atlas.core import _chunks
from atlas.core._dataset import make_schema
from atlas.core._pending import _bits
from atlas.dtypes import check_data, dtype_of_numpy
from atlas.format import bloom
from atlas.format.segment import own_block
from atlas.names import MAX_NAME_BYTES

if TYPE_CHECKING:
    from atlas.core._atlas import Atlas

_I64 = np.int64
EARLY_SYNC_BYTES = 1 << 24  # a stacked write of this many bytes starts syncing its segment
# ... and syncs again each time this much more is written (a sync during the writes slows them:
# at 16 MB apart a stacked write of 10^6 profiles gained little, at 64 MB ~7%)
SYNC_AGAIN_BYTES = 1 << 26


def write_stacked(store: "Atlas", array: str, names: Sequence[str], data: np.ndarray,
                  dims: Sequence[str] | None, chunk_shape: Sequence[int] | None,
                  fill_value: Any) -> None:
    from atlas.core._validate import check_name

    check_name(array, "array")
    if isinstance(names, str) or not hasattr(names, "__len__"):
        raise TypeError(f"names must be a sequence of dataset names, got {type(names).__name__}")
    names = names.tolist() if isinstance(names, np.ndarray) else list(names)  # str, not np.str_
    if not isinstance(data, np.ndarray):
        raise TypeError(f"data must be a numpy.ndarray, got {type(data).__name__}")
    if data.ndim < 1 or data.shape[0] != len(names):
        raise ValueError(f"data must have one row per name: {len(names)} names, data of "
                         f"shape {list(data.shape)}")
    if not names:
        return
    atlas_dtype = dtype_of_numpy(data.dtype)
    if atlas_dtype is None:
        raise TypeError(f"{array!r}: unsupported dtype {data.dtype} for a stacked write")
    row_shape = data.shape[1:]
    where = f"{array!r} (stacked write)"
    if dims is None:
        dims = [f"dim_{i}" for i in range(len(row_shape))]
    elif not isinstance(dims, str) and hasattr(dims, "__len__") and \
            len(dims) != len(row_shape):
        raise ValueError(f"{where}: dims {list(dims)} name {len(dims)} dimensions; each row of "
                         f"data has {len(row_shape)} (shape {list(row_shape)})")
    schema = make_schema(atlas_dtype, dims, row_shape, chunk_shape, fill_value, where)
    values = check_data(atlas_dtype, data, where)
    catalog = store._catalog
    schema_id = catalog.intern(schema)
    packer = None
    if schema.n_chunks == 1 and not schema.dtype.is_string and values.size:
        # the workers compress the first blocks while this thread checks the names and
        # definitions (nothing is written before they pass)
        packer = _RowPacker(store, array, schema, values)
    try:
        slots = _define(store, array, names, schema, schema_id)
    except BaseException:
        if packer is not None:
            packer.cancel()
        raise
    if packer is not None:
        packer.run(schema_id, slots)
    else:
        start = (0,) * schema.ndim
        for i in range(len(names)):
            # values[i, ...]: an array also for 0-D rows (values[i] of an object array is a str)
            store._write(array, int(slots[i]), schema_id, schema, start, values[i, ...])


def _define(store: "Atlas", array: str, names: list[str], schema, schema_id: int
            ) -> np.ndarray:
    """The slots of ``array`` in the datasets ``names`` (created when absent); the array is
    defined where absent, and must have ``schema`` where defined. Everything is checked
    before anything is created or defined."""
    catalog = store._catalog
    dids = _known_dids(catalog, names)  # -1 for the names to create

    # existing definitions must match; the others are defined now
    slots, schema_ids, found = catalog.rows(array, dids)
    differ = found & (schema_ids != schema_id)
    if differ.any():  # another id may hold the same definition (two writers interned it)
        key = schema.key()
        same = [s for s in dict.fromkeys(schema_ids[differ].tolist())
                if catalog.schema(s).key() == key]
        differ &= ~np.isin(schema_ids, same)
    for i in np.flatnonzero(differ)[:1].tolist():
        other = catalog.schema(int(schema_ids[i]))
        kind = TypeError if other.dtype != schema.dtype else ValueError
        raise kind(f"{array!r} in dataset {names[i]!r} is defined as {other.dtype.name} "
                   f"{list(other.shape)} (dims {list(other.dims)}, chunks "
                   f"{list(other.chunk_shape)}, fill {other.fill!r}); the stacked write gives "
                   f"{schema.dtype.name} {list(schema.shape)} (dims {list(schema.dims)}, chunks "
                   f"{list(schema.chunk_shape)}, fill {schema.fill!r})")
    if dids.min(initial=0) < 0:
        dids = _create_missing(catalog, names, dids)
    table = catalog.table(("array", array))
    if not found.any():  # the array is new to every dataset: no row to pick
        slots = catalog.next_slot + np.arange(len(names), dtype=_I64)
        catalog.next_slot += len(names)
        table.log.extend(dids, slot=slots, schema=np.full(len(names), schema_id, _I64))
        return slots
    new = np.flatnonzero(~found)
    slots = slots.copy()
    slots[new] = catalog.next_slot + np.arange(len(new))
    catalog.next_slot += len(new)
    table.log.extend(dids[new], slot=slots[new], schema=np.full(len(new), schema_id, _I64))
    old = np.flatnonzero(found)
    pending_rows = np.array([table.log.find(int(d)) >= 0 for d in dids[old].tolist()], bool) \
        if len(old) else np.zeros(0, bool)
    restate = old[~pending_rows]
    table.log.extend(dids[restate], slot=slots[restate],
                     schema=np.full(len(restate), schema_id, _I64))
    return slots


def _known_dids(catalog, names: list[str]) -> np.ndarray:
    """Dataset ids of ``names``, -1 for those that do not exist: one dict lookup each, or none
    for the list the last stacked write resolved (every name of it exists since)."""
    last = catalog.last_resolved
    # valid while no dataset was deleted (every delete moves the epoch; creating others does
    # not change these names' ids); ``names`` is the caller's own copy, so it cannot change
    if last is not None and last[2] == catalog.epoch and _same(last[0], names):
        return last[1]
    # a name that is not a str is not found (the dict holds str), so _create_missing's join
    # of the names to create refuses it
    known = catalog.dids()
    if known:
        try:
            dids = np.array(list(map(known.get, names, repeat(-1))), _I64)
        except TypeError:  # unhashable
            bad = next((n for n in names if type(n).__hash__ is None), None)
            _raise_not_str(bad)
    else:  # nothing to look up (a new store)
        dids = np.full(len(names), -1, _I64)
    if _has_repeats(dids[dids >= 0], catalog.next_did):
        _raise_repeat(names)
    if dids.min(initial=0) >= 0:
        _remember(catalog, names, dids)
    return dids


def _create_missing(catalog, names: list[str], dids: np.ndarray) -> np.ndarray:
    """``dids`` with the names at -1 created (checked in bulk, none given twice)."""
    missing = np.flatnonzero(dids < 0)
    new_names = names if len(missing) == len(names) else [names[i] for i in missing.tolist()]
    if set(map(type, new_names)) - {str}:  # names kept as plain str (np.str_ from a list(array))
        new_names = [str(n) if isinstance(n, str) else n for n in new_names]
    try:
        joined = bloom.join(new_names)  # one scan of the names, checked and hashed from it
    except TypeError:
        _raise_not_str(next((n for n in new_names if not isinstance(n, str)), None))
    _check_names(new_names, joined)
    hashes = bloom.hashes_of(joined)
    if _has_repeated_names(new_names, hashes):
        _raise_repeat(names)
    first = catalog.next_did
    new_dids = np.arange(first, first + len(new_names), dtype=_I64)
    catalog.create_many(new_names, new_dids, hashes, joined)
    dids = dids.copy()
    dids[missing] = new_dids
    _remember(catalog, names, dids)
    return dids


def _remember(catalog, names: list[str], dids: np.ndarray) -> None:
    dids.flags.writeable = False
    catalog.last_resolved = (names, dids, catalog.epoch)


def _has_repeats(dids: np.ndarray, bound: int) -> bool:
    """Whether ids in [0, bound) repeat: a mark per possible id when they cover much of that
    range (one pass), else a sort."""
    if len(dids) * 16 >= bound:
        seen = np.zeros(bound, bool)
        seen[dids] = True
        return int(np.count_nonzero(seen)) != len(dids)
    ordered = np.sort(dids)
    return bool((ordered[1:] == ordered[:-1]).any())


def _raise_not_str(bad) -> None:
    raise TypeError(f"dataset names must be hashable str, got {type(bad).__name__} {bad!r}")


def _has_repeated_names(names: list[str], hashes: np.ndarray) -> bool:
    """Whether a name is given twice: names with equal 64-bit hashes (sorted, side by side)
    are compared, not all of them (a set of a million fresh strings costs twice as much)."""
    ordered = np.sort(hashes)
    equal = ordered[1:] == ordered[:-1]
    if not equal.any():
        return False
    suspects = [names[i] for i in np.flatnonzero(np.isin(hashes, ordered[1:][equal])).tolist()]
    return len(set(suspects)) != len(suspects)


def _same(known: list[str], names: list) -> bool:
    try:
        return known == names  # names are compared by identity first: the same list is cheap
    except Exception:  # an element whose == raises is not one of the known names
        return False


def _raise_repeat(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"dataset name {name!r} appears more than once in names")
        seen.add(name)


def _check_names(names: list[str], joined: "bloom.Joined | None") -> None:
    """check_name for many names in a few scans of their bytes joined (``bloom.join``; None
    when a name holds a NUL); only when one looks wrong does the one-by-one check run, to say
    which name and why. ASCII names are checked on the bytes; other names are suspects when
    unprintable (control characters, lone surrogates) or long, and the exact check passes
    what is allowed."""
    from atlas.core._validate import check_name

    if joined is None:
        suspect = True
    elif joined.data.max() < 0x80:
        suspect = _ascii_suspect(joined)
    else:
        text = "/".join(names)
        framed = f"/{text}/"
        suspect = (text.count("/") != len(names) - 1 or not all(names) or "\\" in text
                   or not text.isprintable() or "/_" in framed or "/./" in framed
                   or "/../" in framed or joined.lengths.max() > MAX_NAME_BYTES)
    if suspect:
        for name in names:
            check_name(name, "dataset")


def _ascii_suspect(joined: "bloom.Joined") -> bool:
    """Whether one of some ASCII names (joined, each followed by a NUL) breaks a rule of
    check_name."""
    data, starts, lengths = joined.data, joined.starts, joined.lengths
    if np.count_nonzero(data < 0x20) != len(starts):  # control characters besides the NULs
        return True
    if (data == ord("/")).any() or (data == ord("\\")).any():
        return True
    if lengths.min() == 0 or lengths.max() > MAX_NAME_BYTES:
        return True
    first = data[starts]
    second = data[starts + 1]  # the NUL after a name of one byte
    dot = ord(".")
    return bool((first == ord("_")).any() or ((first == dot) & (
        (lengths == 1) | (lengths == 2) & (second == dot))).any())


class _RowPacker:
    """Rows of one chunk each straight into blocks of the pending segment of an array: the
    workers compress blocks (and compute their partials) a batch ahead of this thread, which
    writes them and their rows. Compression starts when the packer is made; nothing is
    written before :meth:`run`."""

    def __init__(self, store: "Atlas", array: str, schema, values: np.ndarray):
        self.store, self.array, self.schema = store, array, schema
        pending = store._pending
        self.n = n = len(values)
        cells = schema.cells
        self.row_bytes = row_bytes = cells * schema.dtype.itemsize
        per_block = 1 if own_block(row_bytes, pending.block_size) else \
            max(1, pending.block_size // row_bytes)
        flat = np.ascontiguousarray(values).reshape(n, cells)
        storage_dtype = schema.dtype.storage
        fill = _chunks.fill_scalar(schema.dtype, schema.fill)
        has = _chunks.has_fill(schema)
        rule = _chunks.null_rule(schema.dtype)
        level = pending.level
        codec_id = codecs.block_codec(pending.codec_id,
                                      schema.dtype.itemsize if pending.shuffle else 1)

        # the rows' columns that differ from row to row but for slot and block, filled by
        # the workers in place (this thread then only numbers the blocks)
        self.columns = columns = {name: np.empty(n, _I64)
                                  for name in ("offset", "nulls", "valid", "min", "max")}

        def block(lo: int, hi: int):
            """A block of rows [lo, hi) compressed, its rows' columns filled (on a worker)."""
            rows = flat[lo:hi]
            raw = rows.reshape(-1).view(np.uint8)
            starts = np.arange(hi - lo, dtype=_I64) * cells
            counts, extremes = kernels.block_partials(
                rows.reshape(-1).view(storage_dtype), starts, np.full(hi - lo, cells, _I64),
                np.full(hi - lo, fill, storage_dtype), np.full(hi - lo, has, np.uint8), rule)
            stored = codecs.encode(codec_id, raw, level)
            valid = counts[:, 1]
            np.multiply(starts, schema.dtype.itemsize, out=columns["offset"][lo:hi])
            columns["nulls"][lo:hi] = counts[:, 0]
            columns["valid"][lo:hi] = valid
            for k, name in enumerate(("min", "max")):
                columns[name][lo:hi] = np.where(valid > 0, _bits(extremes[:, k], schema.dtype), 0)
            return stored, len(raw), codec_id, codecs.block_checksum(codec_id, stored), hi - lo

        self.pool = worker_pool()
        self.block = block
        bounds = list(range(0, n, per_block)) + [n]
        size = 4 * self.pool._max_workers  # blocks of a batch
        self.batches = [list(zip(bounds[b : b + size], bounds[b + 1 : b + size + 1]))
                        for b in range(0, len(bounds) - 1, size)]
        self.queued: list[tuple[list, list]] = []  # batches submitted, not recorded yet
        self.next_batch = 0
        for _ in range(min(2, len(self.batches))):
            self._submit()

    def _submit(self) -> None:
        spans = self.batches[self.next_batch]
        self.next_batch += 1
        self.queued.append((spans, [self.pool.submit(self.block, lo, hi) for lo, hi in spans]))

    def cancel(self) -> None:
        """A failed write: what is still queued is not worth compressing."""
        for _spans, futures in self.queued:
            for future in futures:
                future.cancel()
        self.queued = []

    def run(self, schema_id: int, slots: np.ndarray) -> None:
        """Write every block and its rows (``slots``: the row's array slot, in row order)."""
        store, row_bytes = self.store, self.row_bytes
        pending = store._pending
        segment = pending._segment(self.array, store._root.generation + 1)
        rows = segment.start_bulk(self.n, {"chunk": 0, "length": row_bytes, "mask": 0,
                                           "schema": schema_id}, self.columns)
        synced = 0  # bytes of the segment when its last early sync started
        try:
            while self.queued:
                spans, futures = self.queued.pop(0)
                if self.next_batch < len(self.batches):
                    self._submit()  # batches ahead: the workers compress while this writes
                lo, hi = spans[0][0], spans[-1][1]
                segment.add_blocks(rows, [future.result() for future in futures],
                                   slots[lo:hi])
                if pending._dirty:  # chunks of these rows written earlier, not encoded yet
                    for slot in slots[lo:hi].tolist():
                        pending._forget_dirty((slot, 0))
                if segment.path and segment.writer.size - synced >= SYNC_AGAIN_BYTES:
                    # the disk writes what is written while the rest compresses
                    store._storage.sync_early([segment.path])
                    synced = segment.writer.size
        except BaseException:
            self.cancel()
            raise
        if segment.path and self.n * row_bytes >= EARLY_SYNC_BYTES:
            # the disk writes these blocks while the caller writes the next array (the
            # flush's own fsync of the file then finds little left)
            store._storage.sync_early([segment.path])
