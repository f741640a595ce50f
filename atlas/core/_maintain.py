"""Keeping a store in shape: the size-tiered merge every flush runs, ``compact()``, ``verify()``
and the removal of files nothing references.

Files (catalog parts, and each array name's segments) have a level from their size: level L
holds files up to ``LEVEL_BASE * FANOUT ** (L + 1)`` bytes. When ``FANOUT`` files in a row of the
root's list are of level L (with only smaller files between them), a flush merges them into one
(the run of the smallest such L, at most one run per list per flush), so a store flushed a
thousand times keeps a few dozen files, and a byte is rewritten about once per level over its
life. ``compact()`` merges everything and drops what deleted datasets and arrays left.

Nothing a commit replaced is deleted at once: it is listed as ``retired`` in the root with the
generation that replaced it, because earlier versions still read it; it is deleted once every
version that reads it has expired (``atlas.core._versions``). The root keeps the newest
``RETIRED_INLINE`` such entries; a flush moves older ones into an immutable retired list
(``atlas.format.retired``) the root names, and merges those lists like parts.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas import codecs, kernels
from atlas._pools import io_pool
from atlas.core import _versions
from atlas.core._index import (
    ChunkIndex,
    IndexCache,
    SegmentSource,
    merge_indexes,
    slot_problem,
)
from atlas.core._read import CHECK_ONLY, BlockCache, fetch_block
from atlas.errors import (
    ConflictError,
    CorruptionError,
    FormatError,
    StoreNotFoundError,
    VersionNotFoundError,
)
from atlas.format import keys as key_grammar
from atlas.format import retired as retired_format
from atlas.format.catalog import (
    BLOOM,
    check_footer,
    check_ids,
    check_values,
    read_bloom,
    read_table,
    table_kind,
)
from atlas.format.catalog import MAGIC as PART_MAGIC
from atlas.format.catalog import write_part as write_file
from atlas.format.container import FILE_KEY, LockedFile
from atlas.format.root import FileRef, Root
from atlas.format.segment import MAGIC as SEGMENT_MAGIC
from atlas.format.segment import LINKED_LIVE_SHARE, OWN_BLOCK_SHARE, SegmentWriter
from atlas.format.tables import Table, merge
from atlas.storage import Storage, from_description

if TYPE_CHECKING:
    from atlas.core._atlas import Atlas

FANOUT = 4
# level 0 is every file under 64 KiB: each file costs a fresh reader a footer and an index
# or tables (~0.3-0.5 ms) whatever its size, so small files merge among themselves until they
# reach that size (after 1,000 one-dataset flushes a fresh stacked read was 1.5x a compacted
# store's with 4 KiB, 1.3x with 16 KiB, for ~2.4x the bytes rewritten: ~75 KB a flush)
LEVEL_BASE = 16 << 10
ORPHAN_GRACE_SECONDS = 3600.0  # an unreferenced file younger than this may be a live writer's
# retired entries a root keeps inline; a flush moves more into a retired list (so a commit
# costs what it changes, not what the versions kept have replaced)
RETIRED_INLINE = 256
AUTO_EXPIRE_EVERY_SECONDS = _versions.AUTO_EXPIRE_EVERY_SECONDS
_I64 = np.int64


def level_of(size: int) -> int:
    level, limit = 0, LEVEL_BASE * FANOUT
    while size >= limit:
        level += 1
        limit *= FANOUT
    return level


@dataclass
class Written:
    """A file written for a commit: referenced by ``ref``, kept locked until released."""

    storage: Storage
    ref: FileRef
    path: str
    file: LockedFile

    def release(self) -> None:
        self.storage.release_spill(self.ref.key, self.path)
        self.file.release()


def publish(storage: Storage, key: str, path: str, file: LockedFile,
            level: int | None = None) -> Written:
    """Make a finished file durable under ``key`` (fsync, or upload); on failure drop it. The
    one way a merge, a compaction or a catalog part is published (a flush publishes its pending
    segments together, concurrently: ``PendingWrites.finish``)."""
    try:
        storage.publish(key, path)
    except BaseException:
        file.release()
        storage.discard(key, path)
        raise
    return Written(storage, FileRef(key, file.size, level_of(file.size) if level is None
                                    else level), path, file)


def write_part(storage: Storage, root: Root, tables) -> Written:
    """Write and publish a catalog part holding ``tables`` ((section id, table) pairs) for the
    commit ``root``."""
    return start_part(storage, root, tables).publish()


@dataclass
class UnpublishedPart:
    """A catalog part written, not yet published: the flush starts its fsync
    (``Storage.sync_early``) and publishes it after its segments, so that the part's fsync
    overlaps theirs."""

    storage: Storage
    key: str
    path: str
    file: LockedFile

    def publish(self) -> Written:
        return publish(self.storage, self.key, self.path, self.file)

    def discard(self) -> None:
        self.file.release()
        self.storage.discard(self.key, self.path)


def start_part(storage: Storage, root: Root, tables) -> UnpublishedPart:
    """:func:`write_part` up to its publication."""
    key = key_grammar.new_part_key(root.generation)
    path = storage.spill_path(key)
    try:
        out = write_file(path, tables, **{FILE_KEY: key})
    except BaseException:
        storage.discard(key, path)
        raise
    return UnpublishedPart(storage, key, path, out)


def write_retired_list(store: "Atlas", root: Root, entries: list) -> Written:
    """Write and publish a retired list holding ``entries`` for the commit ``root``."""
    storage = store._storage
    key = key_grammar.new_retired_list_key(root.generation)
    path = storage.spill_path(key)
    try:
        out = LockedFile(path)
        try:
            out.write(retired_format.encode(entries))
        except BaseException:
            out.release()
            raise
    except BaseException:
        storage.discard(key, path)
        raise
    written = publish(storage, key, path, out)
    store._files.add_retired(written.ref, entries)
    return written


def all_retired(store: "Atlas", root: Root) -> list[tuple[str, float, int]]:
    """Every retired entry of ``root``: its retired lists' (oldest first), then its own."""
    out = [entry for ref in root.retired_lists for entry in store._files.retired(ref)]
    return [*out, *root.retired]


def newest_retired(store: "Atlas", root: Root) -> tuple[Root, list[tuple[str, float, int]]]:
    """(``root``, :func:`all_retired` of it), or of the newest root when a newer commit
    replaced a retired list of ``root`` and deleted it."""
    try:
        return root, all_retired(store, root)
    except FileNotFoundError:
        from atlas.core._atlas import load_root

        newest = load_root(store._storage)[0]
        return newest, all_retired(store, newest)


def referenced_keys(store: "Atlas", root: Root) -> set[str]:
    """Every file ``root`` keeps: :meth:`Root.keys` and the files its retired lists name."""
    out = root.keys()
    for ref in root.retired_lists:
        out.update(entry[0] for entry in store._files.retired(ref))
    return out


def _spill_retired(store: "Atlas", root: Root, merges: "Merges") -> None:
    """Move the inline retired entries of ``root`` (being committed) into a new retired list
    when there are more than ``RETIRED_INLINE``, and merge a run of lists like parts. The entry
    of the commit's own delta part stays inline: its version record names it."""
    if len(root.retired) > RETIRED_INLINE:
        moving = [e for e in root.retired if e[0] != root.delta]
        written = write_retired_list(store, root, moving)
        merges.written.append(written)
        root.retired = [e for e in root.retired if e[0] == root.delta]
        root.retired_lists = [*root.retired_lists, written.ref]
    run = _run_to_merge(root.retired_lists)
    if run is not None:
        lo, hi = run
        replaced = root.retired_lists[lo:hi]
        written = write_retired_list(store, root, [e for ref in replaced
                                                   for e in store._files.retired(ref)])
        merges.written.append(written)
        merges.dropped.extend(r.key for r in replaced)
        root.retired_lists = [*root.retired_lists[:lo], written.ref, *root.retired_lists[hi:]]


def drop_retired(store: "Atlas", root: Root, gone: set[str], merges: "Merges") -> None:
    """Remove the entries of the files ``gone`` from ``root`` (being committed): from its own
    list, and from its retired lists by writing each affected one again without them (the
    replaced lists are deleted after the commit: no version reads them)."""
    root.retired = [e for e in root.retired if e[0] not in gone]
    lists = []
    for ref in root.retired_lists:
        entries = store._files.retired(ref)
        rest = [e for e in entries if e[0] not in gone]
        if len(rest) == len(entries):
            lists.append(ref)
            continue
        merges.dropped.append(ref.key)
        if rest:
            written = write_retired_list(store, root, rest)
            merges.written.append(written)
            lists.append(written.ref)
    root.retired_lists = lists


# -- the merge every flush runs ---------------------------------------------------------------

@dataclass
class Merges:
    """What a flush's merges wrote and replaced; released (unlocked) after the commit."""

    written: list[Written] = field(default_factory=list)
    segments: dict[str, tuple[FileRef, Any]] = field(default_factory=dict)
    expired: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # retired lists replaced

    def release(self) -> None:
        for w in self.written:
            w.release()

    def discard(self, storage: Storage) -> None:
        """Drop what was written: the commit it was for did not happen."""
        for w in self.written:
            w.release()
            storage.discard(w.ref.key, w.path)

    def committed(self, store: "Atlas") -> None:
        for ref, index in self.segments.values():
            store._files.add(ref, None, index)
        gone = [*self.expired, *self.dropped]
        for key in gone:
            try:
                store._storage.delete(key)
            except OSError:
                pass  # committed already: the file is an orphan now, removed by a later sweep
        if gone:
            store._forget_files(gone)


def _run_to_merge(refs: list[FileRef]) -> tuple[int, int] | None:
    """[start, stop) of the run of ``refs`` to merge, or None: for the smallest level L that
    has one, the newest run of files of level at most L that holds ``FANOUT`` files of level L,
    cut after the ``FANOUT``-th of them from the newest end. Counting only files *at* L keeps a
    big file from being rewritten with a few small ones after it."""
    if len(refs) < FANOUT:
        return None
    levels = [r.level for r in refs]
    for limit in sorted(set(levels)):
        stop, at_limit = len(levels), 0
        for i in range(len(levels) - 1, -1, -1):  # newest first
            if levels[i] > limit:  # the run ends here: start the next one below it
                stop, at_limit = i, 0
                continue
            at_limit += levels[i] == limit
            if at_limit == FANOUT:
                return i, stop
    return None


def tiered_merge(store: "Atlas", root: Root, expire: bool = True) -> Merges:
    """Merge runs of small files in ``root`` (being committed), editing its lists in place;
    drop from its ``retired`` list what no retained version reads any more (``expire``; a
    rebase leaves that to a later flush: it judges versions from the handle's own root, which
    a rebase has left behind)."""
    merges = Merges()
    now = time.time()
    generation = root.generation
    try:
        run = _run_to_merge(root.parts)
        if run is not None:
            lo, hi = run
            written = _merge_parts(store, root, root.parts[lo:hi], drop_dead=lo == 0)
            merges.written.append(written)
            # this commit's own delta stays readable for its version (a rebase reads it)
            root.retired = [*root.retired, *((r.key, now, generation + (r.key == root.delta))
                                             for r in root.parts[lo:hi])]
            root.parts = [*root.parts[:lo], written.ref, *root.parts[hi:]]
        for array, refs in list(root.segments.items()):
            run = _run_to_merge(refs)
            if run is None:
                continue
            lo, hi = run
            run_refs = refs[lo:hi]
            run_indexes = [store._files.segment(r) for r in run_refs]
            index = merge_indexes(run_indexes,
                                  [SegmentSource(store._storage, r) for r in run_refs])
            written, seg_index = rewrite_segment(store._storage, root, index,
                                                 np.arange(index.rows), store._blocks,
                                                 link=_links(root))
            merges.written.append(written)
            merges.segments[array] = (written.ref, seg_index)
            gone = _relink(root, run_refs, run_indexes, seg_index)
            root.retired = [*root.retired, *((key, now, generation) for key in gone)]
            root.segments[array] = [*refs[:lo], written.ref, *refs[hi:]]
        _retired_upkeep(store, root, now, merges, expire)
    except BaseException:
        merges.discard(store._storage)
        raise
    return merges


def _retired_upkeep(store: "Atlas", root: Root, now: float, merges: Merges,
                    expire: bool = True) -> None:
    """Expire what the policy no longer keeps, then move and merge retired entries. A retired
    list that is gone means a newer commit replaced it: this commit will conflict and rebase,
    so all of it waits for a later flush; so it does while a list is damaged."""
    retired, lists = root.retired, root.retired_lists
    upkeep = Merges()
    try:
        upkeep.expired = _expired_by_policy(store, root, now) if expire else []
        if upkeep.expired:
            drop_retired(store, root, set(upkeep.expired), upkeep)
        _spill_retired(store, root, upkeep)
    except (FileNotFoundError, CorruptionError):
        # (a damaged list: expiry stops, keeping every file, and verify() reports it; the
        # flush itself goes on)
        upkeep.discard(store._storage)
        root.retired, root.retired_lists = retired, lists
        return
    merges.written += upkeep.written
    merges.expired, merges.dropped = upkeep.expired, upkeep.dropped


def _links(root: Root) -> bool:
    """Whether merges link full blocks rather than copy them: when the store keeps earlier
    versions, which read those blocks anyway (a copy would store their bytes twice). A store
    that keeps none copies: once the old files are gone, no block is kept for a few chunks."""
    older_than, keep_last = root.retention
    return older_than > 0 or keep_last > 1


def _relink(root: Root, run: list[FileRef], run_indexes, merged) -> list[str]:
    """Update ``root.linked`` for a merge of the segments ``run`` into one whose index is
    ``merged``; returns the keys it retires. A run's file whose blocks the merged segment links
    is kept as linked; one it does not, and a file the run linked that it no longer does, is
    retired. (Only the one live segment made from a file ever links it, so what the run no
    longer links nothing does.)"""
    kept = {key for key, _size in merged.linked}
    before = {key for ix in run_indexes for key, _size in ix.linked}
    dropped = before - kept
    root.linked = [*(r for r in root.linked if r.key not in dropped),
                   *(FileRef(r.key, r.size, r.level) for r in run if r.key in kept)]
    return [*(r.key for r in run if r.key not in kept), *sorted(dropped)]


def _expired_by_policy(store: "Atlas", root: Root, now: float) -> list[str]:
    """Retired files of ``root`` that no version the store's policy keeps reads (their version
    records are removed here, before the commit: a crash then leaves only unread files)."""
    older_than, keep_last = root.retention
    if now - store._expiry_checked < AUTO_EXPIRE_EVERY_SECONDS:
        return []
    retired = all_retired(store, root)
    if not any(now - entry[1] >= older_than for entry in retired):
        return []  # everything retired is younger than the policy: nothing can go yet
    store._expiry_checked = now
    plan = _versions.plan_expiry(store._storage, store._root, older_than, keep_last, now,
                                 retired=retired, committing=root.generation,
                                 keep_from=store._fork_floor)
    if not _versions.drop_records(store._storage, plan.records):
        return []  # a version was tagged meanwhile: its files stay
    live = root.live_keys()
    return [key for key in plan.files if key not in live]


def _merge_parts(store: "Atlas", root: Root, refs: list[FileRef], drop_dead: bool,
                 keep: dict[str, np.ndarray] | None = None) -> Written:
    """One part holding the merge of the tables of ``refs`` (oldest first). ``keep`` (compact):
    the live dataset ids (``"did"``) and, per array name, its live slots."""
    storage = store._storage
    footers = store._files.footers(refs, PART_MAGIC)
    ids = dict.fromkeys(sid for footer in footers for sid in footer.sections if sid != BLOOM)
    tables = {}
    for sid in ids:
        found = []
        for ref, footer in zip(refs, footers):
            table = read_table(footer, sid, footer.reader(lambda o, n, r=ref: storage.get_range(
                r.key, o, n, r.size)), f"{storage.location}/{ref.key}")
            if table is not None:
                found.append(table)
        table = merge(table_kind(sid), found, drop_dead)
        if keep is not None:
            table = _live_rows(sid, table, keep)
        if len(table) or not drop_dead:
            tables[sid] = table
    return write_part(storage, root, tables.items())


def _live_rows(sid: tuple, table: Table, keep: dict[str, np.ndarray]) -> Table:
    if sid[0] in ("array", "attr"):
        live = np.isin(table.key, keep["did"])
    elif sid[0] == "array_attr":
        live = np.isin(table.key, keep.get(sid[1], np.zeros(0, _I64)))
    else:
        return table
    if live.all():
        return table
    return Table(table.kind, table.key[live], table.dead[live],
                 {n: c[live] for n, c in table.columns.items()})


def rewrite_segment(storage: Storage, root: Root, index: ChunkIndex, rows: np.ndarray,
                    cache: BlockCache | None, link: bool = False) -> tuple[Written, Any]:
    """A new segment holding the chunk rows ``rows`` of ``index`` (sorted by slot, chunk), small
    chunks repacked into full blocks, big ones copied as they are. ``link``: full blocks
    (:func:`_linkable`) stay where they are, listed as the new segment's (the merge every flush
    runs; ``compact()`` copies everything)."""
    key = key_grammar.new_segment_key(root.generation)
    path = storage.spill_path(key)
    writer = SegmentWriter(path, key)
    try:
        _repack(index, rows, writer, root.block_size, codecs.CODEC_IDS[root.codec], root.level,
                cache, link, root.shuffle)
        seg_index = writer.finish()
    except BaseException:
        writer.release()
        storage.discard(key, path)
        raise
    # its level from the blocks it lists, linked ones included, as if it held them: a merge
    # that links much writes a small file that must not be merged again soon
    b = seg_index.blocks
    linked_bytes = int(b["stored"][b["file"] > 0].sum())
    return publish(storage, key, path, writer, level_of(writer.size + linked_bytes)), seg_index


def _in_segments(index: ChunkIndex) -> np.ndarray:
    """Per block of ``index``: whether it lies in a committed segment (what can be linked)."""
    segment = np.array([isinstance(src, SegmentSource) for src in index.sources], bool)
    return segment[index.block_source] if len(index.block_offset) else np.zeros(0, bool)


def _linkable(index: ChunkIndex, blocks: np.ndarray, sizes: np.ndarray,
              block_size: int) -> np.ndarray:
    """Per block of ``index``: whether a merge keeping the chunks of ``blocks`` (their sizes
    ``sizes``) links it rather than copy them: a committed segment's block of at least a
    quarter of ``block_size`` decoded, at least 1/LINKED_LIVE_SHARE of it kept, in a file of
    which the blocks so linked keep at least that share. Linking costs no copy (old versions
    read the same bytes) and reads decode a little more; copying a block that is mostly gone,
    or the rest of a file that is, lets the file go once its versions expire. Smaller blocks
    are copied so that a store flushed often keeps few files."""
    n = len(index.block_offset)
    kept = np.bincount(blocks, weights=sizes, minlength=n)
    decoded = index.block_decoded
    ok = (decoded * 4 >= block_size) & (kept * LINKED_LIVE_SHARE >= decoded) & _in_segments(
        index)
    source = index.block_source
    kept_stored = np.where(ok, index.block_stored * kept / np.maximum(decoded, 1), 0.0)
    file_kept = np.bincount(source, weights=kept_stored, minlength=len(index.sources))
    file_size = np.array([getattr(src, "size", 0) for src in index.sources], np.float64)
    return ok & (file_kept * LINKED_LIVE_SHARE >= file_size)[source]


def _repack(index: ChunkIndex, rows: np.ndarray, writer: SegmentWriter, block_size: int,
            codec_id: int, level: int, cache: BlockCache | None, link: bool = False,
            shuffle: bool = False) -> None:
    sizes = index.length[rows] + index.mask[rows]
    blocks = index.block[rows]
    # a chunk big enough for a block of its own, and alone in its block, keeps its stored frame
    per_block = np.bincount(index.block, minlength=len(index.block_offset)) if index.rows else \
        np.zeros(0, _I64)
    verbatim = (sizes * OWN_BLOCK_SHARE >= block_size) & (per_block[blocks] == 1)
    linked = np.zeros(len(rows), bool)
    if link and len(rows):
        linked = _linkable(index, blocks, sizes, block_size)[blocks]
        verbatim &= ~linked
    out_block = np.empty(len(rows), _I64)
    out_offset = np.zeros(len(rows), _I64)
    # assign small chunks to new blocks in order, keeping each chunk's offset modulo 8 so that
    # values stay aligned for their dtype
    src_mod = (index.offset[rows] % 8).tolist()
    size_list = sizes.tolist()
    plan: list[list[int]] = []  # rows (positions in ``rows``) of each new packed block
    used = 0
    for i, as_is in enumerate((verbatim | linked).tolist()):
        if as_is:
            continue
        size = size_list[i]
        offset = used + (src_mod[i] - used) % 8
        if plan and offset + size > block_size and used > 0:
            plan.append([])
            used, offset = 0, src_mod[i]
        elif not plan:
            plan.append([])
            used, offset = 0, src_mod[i]
        plan[-1].append(i)
        out_offset[i] = offset
        used = offset + size
    n_written = 0
    for i in np.flatnonzero(verbatim).tolist():
        n = int(blocks[i])
        source = index.sources[int(index.block_source[n])]
        stored = source.fetch([int(index.block_offset[n])], [int(index.block_stored[n])])[0]
        if codecs.block_checksum(int(index.block_codec[n]), stored) != int(index.block_crc[n]):
            raise CorruptionError(f"{source.where()}: block at offset "
                                  f"{int(index.block_offset[n])} fails its checksum; not merging")
        out_block[i] = writer.write_block(stored, int(index.block_decoded[n]),
                                          int(index.block_codec[n]))
        out_offset[i] = int(index.offset[rows[i]])
        n_written += 1
    if linked.any():
        at = np.flatnonzero(linked)
        numbers = {}
        for n in dict.fromkeys(blocks[at].tolist()):
            source = index.sources[int(index.block_source[n])]
            numbers[n] = writer.link_block(
                source.key, source.size, int(index.block_offset[n]), int(index.block_stored[n]),
                int(index.block_decoded[n]), int(index.block_codec[n]), int(index.block_crc[n]))
        out_block[at] = [numbers[n] for n in blocks[at].tolist()]
        out_offset[at] = index.offset[rows[at]]
    for members in plan:
        members_a = np.array(members, _I64)
        end = int((out_offset[members_a] + sizes[members_a]).max())
        buffer = np.zeros(end, np.uint8)
        src_blocks = blocks[members_a]
        for n in dict.fromkeys(src_blocks.tolist()):
            mine = members_a[src_blocks == n]
            decoded = fetch_block(index, n, cache)
            kernels.scatter_runs(np.frombuffer(decoded, np.uint8), index.offset[rows[mine]],
                                 buffer, out_offset[mine], sizes[mine])
        # a new block shuffles as the block of its first chunk did (values of one array name)
        width = codecs.split_codec(int(index.block_codec[src_blocks[0]]))[1] if shuffle else 1
        codec = codecs.block_codec(codec_id, width)
        number = writer.write_block(codecs.encode(codec, buffer, level), end, codec)
        out_block[members_a] = number
    writer.chunks.extend(slot=index.slot[rows], chunk=index.chunk[rows], block=out_block,
                         offset=out_offset, length=index.length[rows], mask=index.mask[rows])
    has = np.flatnonzero(index.has_partial[rows])
    writer.partials.extend(row=has, nulls=index.nulls[rows][has], valid=index.valid[rows][has],
                           min=index.min[rows][has], max=index.max[rows][has])


# -- compact ------------------------------------------------------------------------------------

def compact(store: "Atlas", older_than: float | None, last_try: bool = False) -> bool:
    """Merge everything into one part and one segment per array name, without dead rows; then
    expire what the retention (or ``older_than``) no longer keeps. When other writers commit
    meanwhile, the compaction is re-applied on top of their commits (:func:`_reapplied`);
    when another compaction took the files it replaced, it deletes what it wrote and returns
    False (the caller compacts the newest commit); so it does when a merge took a whole list,
    but on the ``last_try``."""
    catalog = store._catalog
    root = store._root
    storage = store._storage
    live = catalog.live_dids()
    keep: dict[str, Any] = {"did": live}
    grids: dict[str, np.ndarray] = {}  # chunks in the grid of each live slot (same order)
    chunk_counts = np.array([s.n_chunks for s in catalog.schemas()], _I64)
    for sid in catalog.section_ids("array"):
        table = catalog.table(sid).committed().live()
        mine = np.isin(table.key, live)
        keep[sid[1]] = table.columns["slot"][mine]
        grids[sid[1]] = chunk_counts[table.columns["schema"][mine]]
    new_root = root.successor(message="compact")
    written: list[Written] = []
    segments_done: dict[str, tuple[FileRef, Any]] = {}
    retired = []
    # what replaced what, to re-apply on a newer root: list name -> (replaced, replacement)
    replaced: dict[Any, tuple[list[FileRef], list[FileRef]]] = {}
    landed = True
    committing = False  # a failure before the commit: what was written is nobody's
    try:
        if len(root.parts) > 1 or root.parts and _has_dead(store, root.parts[0], keep):
            part = _merge_parts(store, new_root, root.parts, drop_dead=True, keep=keep)
            written.append(part)
            retired += [r.key for r in root.parts]
            new_root.parts = [part.ref]
            replaced[None] = (list(root.parts), [part.ref])
        segments = {}
        for array, refs in root.segments.items():
            index = store._committed_index(array)
            # the files its segments link blocks of: the copy replaces them too
            links = [src.key for src in index.sources[len(refs):]]
            rows = _live_chunks(index, keep.get(array, np.zeros(0, _I64)),
                                grids.get(array, np.zeros(0, _I64)))
            if len(rows) == 0:
                retired += [r.key for r in refs] + links
                replaced[array] = (list(refs), [])
                continue
            if len(refs) == 1 and not links and len(rows) == index.rows and _segment_rows(
                    store, refs[0]) == index.rows:
                segments[array] = refs  # already compact
                continue
            part, seg_index = rewrite_segment(storage, new_root, index, rows, store._blocks)
            written.append(part)
            segments_done[array] = (part.ref, seg_index)
            segments[array] = [part.ref]
            retired += [r.key for r in refs] + links
            replaced[array] = (list(refs), [part.ref])
        new_root.segments = segments
        new_root.linked = _unlinked(root.linked, retired)
        now = time.time()
        new_root.retired = [*root.retired, *((key, now, new_root.generation) for key in retired)]
        unused: set[str] = set()  # files written that the landed commit does not list
        if retired:
            committing = True
            committed = store._commit_maintenance(
                lambda latest: new_root if latest.commit == root.commit else
                _reapplied(store, root, latest, replaced, retired, now, last_try))
            landed = committed is not None
            if landed:
                unused = {w.ref.key for w in written} - committed.live_keys()
    except BaseException:
        # (a failed commit may have landed, its response lost: its files then stay, orphans
        # at worst, which a later sweep removes)
        landed = landed and committing
        raise
    finally:
        for w in written:
            w.release()
            if not landed or w.ref.key in unused:
                storage.discard(w.ref.key, w.path)
    if not landed:
        return False
    for ref, index in segments_done.values():
        if ref.key not in unused:
            store._files.add(ref, None, index)
    try:
        # a grace keeps only what is younger (and tagged, and the latest): not the policy's
        # last versions either (also sweeps orphans)
        _versions.expire(store, older_than, None if older_than is None else 1)
    except (OSError, ConflictError, CorruptionError):
        # committed already: what the expiry would free waits for a later one (a damaged
        # retired list stops it until repaired: verify() reports it)
        pass
    return True


def _reapplied(store: "Atlas", base: Root, latest: Root, replaced: dict, retired: list[str],
               now: float, whole_lists: bool) -> Root | None:
    """The compaction (of ``base``) re-applied on top of ``latest``, or None when another
    compaction took the files it replaced, or (unless ``whole_lists``) a merge took a whole
    list: compacting the newest commit then gives fewer files.

    Writers that flush all the time merge their newest files, and a merge may take the newest
    of the files being compacted (in a small store, all of them) together with files committed
    since. The compacted copy then goes first and the merged file after it, as every later file
    does: where both hold a chunk or a row, the later one wins, and it holds the same. What such
    a file links (blocks of the files it merged) stays linked rather than retired. A merge of
    the whole catalog list is the exception: it dropped the tombstones of datasets deleted
    since ``base``, so the catalog stays as it left it."""
    out = latest.successor(message="compact", segments=dict(latest.segments))
    still_linked: set[str] = set()
    compacted = functools.cache(lambda: _compacted_since(store, base, latest))  # read once
    for name, (old, new) in replaced.items():
        current = latest.parts if name is None else latest.segments.get(name, [])
        kept = 0  # the files of ``old`` still first in the list
        while kept < min(len(old), len(current)) and current[kept] == old[kept]:
            kept += 1
        rest = current[kept:]
        if kept < len(old):
            gone = {r.key for r in old[kept:]}
            if any(r.key in gone for r in rest) or kept == 0 and (
                    not whole_lists or compacted()):
                return None
            if name is None and kept == 0:
                # that merge began at the oldest part, so it dropped the tombstones of the
                # datasets deleted since ``base``: the compacted copy laid under it would
                # bring them back. The catalog stays as the merge left it (compact() deletes
                # the unused copy)
                out.parts = list(current)
                continue
            if name is not None:  # parts link nothing
                for ref in rest:
                    still_linked.update(key for key, _size in store._files.segment(ref).linked)
        if name is None:
            out.parts = [*new, *rest]
        elif new or rest:
            out.segments[name] = [*new, *rest]
        else:
            out.segments.pop(name, None)
    listed = {entry[0] for entry in latest.retired}  # the merge retired its own files
    retiring = [key for key in retired if key not in still_linked and key not in listed]
    out.retired = [*latest.retired, *((key, now, out.generation) for key in retiring)]
    out.linked = _unlinked(latest.linked, retiring)
    return out


def _compacted_since(store: "Atlas", base: Root, latest: Root) -> bool:
    """Whether a commit after ``base`` up to ``latest`` is another compaction (or their
    records expired: then assume so)."""
    newer = _versions.newer_commits(store._storage, base, latest)
    return not newer or newer[-1].parent != base.commit or any(
        root.message == "compact" and root.delta is None for root in newer)


def _unlinked(linked: list[FileRef], retired: list[str]) -> list[FileRef]:
    gone = set(retired)
    return [r for r in linked if r.key not in gone]


def _segment_rows(store: "Atlas", ref: FileRef) -> int:
    return store._files.segment(ref).rows


def _live_chunks(index: ChunkIndex, slots: np.ndarray, grid_chunks: np.ndarray) -> np.ndarray:
    """Rows of ``index`` of the live ``slots`` whose chunk numbers lie in their grid
    (``grid_chunks``, per slot): a resize may leave chunks beyond it."""
    rows = np.flatnonzero(np.isin(index.slot, slots))
    if not len(rows):
        return rows
    order = np.argsort(slots, kind="stable")
    limit = grid_chunks[order][np.searchsorted(slots[order], index.slot[rows])]
    return rows[index.chunk[rows] < limit]


def _has_dead(store: "Atlas", ref: FileRef, keep: dict[str, Any]) -> bool:
    """Whether the one part of a store holds rows a compaction would drop."""
    catalog = store._catalog
    for sid in store._files.footer(ref, PART_MAGIC).sections:
        if sid == BLOOM:
            continue
        table = catalog.table(sid).committed()
        if table.dead.any() or len(_live_rows(sid, table, keep)) != len(table):
            return True
    return False


# -- orphans ------------------------------------------------------------------------------------

def remove_orphans(store: "Atlas", grace: float | None = None) -> list[str]:
    """Delete unreferenced data files and temp files of interrupted commits older than
    ``grace`` seconds (default: none on a store whose live writers lock their files, else an
    hour) that no writer holds. Judged against the newest commit, under the commit lock, so
    that a file another handle just committed is never taken for an orphan (and no commit is
    writing its temp file meanwhile)."""
    storage = store._storage
    if grace is None:
        grace = 0.0 if storage.locks_spills else ORPHAN_GRACE_SECONDS
    now = time.time()
    removed = []
    try:
        with storage.commit_lock():
            for key, _size, mtime in orphans(store, strict=True):
                # a version record's temp file may be a live writer's: only old ones go
                wait = ORPHAN_GRACE_SECONDS if key_grammar.RECORD_TEMP.fullmatch(key) else grace
                if now - mtime >= wait:
                    try:
                        if storage.remove_unused(key):
                            removed.append(key)
                    except OSError:
                        pass  # left for the next sweep
    except (CorruptionError, FormatError):
        pass  # no sweeping against a root that does not decode
    try:  # crashed writers' multipart uploads and spill files (they hold no store key)
        removed += storage.remove_leftovers(ORPHAN_GRACE_SECONDS)
    except OSError:
        pass  # left for the next sweep
    return removed


def orphans(store: "Atlas", strict: bool = False) -> list[tuple[str, int, float]]:
    """Data files that neither this handle's root nor the newest one references, and temp
    files that interrupted commits left (``strict``: raise when the newest root does not
    decode)."""
    from atlas.core._atlas import load_root

    referenced = _referenced(store)
    try:
        newest, _token, legacy = load_root(store._storage)
        referenced |= legacy.keys() if legacy is not None else referenced_keys(store, newest)
    except (CorruptionError, FormatError, StoreNotFoundError):
        if strict:
            raise
    listing = store._storage.list("")
    # a store kept inside this one (its root in a sub-folder) owns everything under it: its
    # segments can look like this store's (format 1 named segments/<array>/<file>.seg)
    nested = {key[: -len(key_grammar.ROOT_KEY)] for key, _size, _mtime in listing
              if key.endswith("/" + key_grammar.ROOT_KEY)}
    return [item for item in listing
            if not (nested and _inside(item[0], nested)) and (
                key_grammar.ROOT_TEMP.fullmatch(item[0]) or key_grammar.RECORD_TEMP.fullmatch(
                    item[0]) or (
                    key_grammar.is_data_key(item[0]) and item[0] not in referenced))]


def _inside(key: str, folders: set[str]) -> bool:
    """Whether ``key`` lies under one of ``folders`` (each ending in '/')."""
    at = key.find("/")
    while at != -1:
        if key[: at + 1] in folders:
            return True
        at = key.find("/", at + 1)
    return False


def _referenced(store: "Atlas") -> set[str]:
    if store._legacy is not None:
        return store._legacy.keys()
    root = store._root
    try:
        return referenced_keys(store, root)
    except FileNotFoundError:
        # a newer commit replaced a retired list of this handle's root and deleted it: what
        # it listed that is still kept, the newest root's lists hold
        return root.keys()


# -- verify -------------------------------------------------------------------------------------

@dataclass
class VerifyReport:
    """What :meth:`Atlas.verify` found. ``problems`` is empty exactly when the store is sound."""

    location: str = ""  # the store checked
    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    # what crashed writers left outside the store's keys: incomplete multipart uploads, local
    # spill files (not problems; repair removes those older than the orphan grace period)
    leftovers: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    segments: int = 0
    chunks: int = 0
    parts: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store: "Atlas", repair: bool) -> VerifyReport:
    from atlas.core._atlas import load_root

    # a fresh backend and caches: nothing cached from before the damage may hide it
    storage = from_description(store._storage.describe())
    report = VerifyReport(storage.location)
    files = IndexCache(storage)
    try:
        root, _token, legacy = load_root(storage)
    except (CorruptionError, FormatError, StoreNotFoundError) as err:
        hint = "" if isinstance(err, StoreNotFoundError) else _versions.damaged_root_hint(
            _versions.newest_intact_record(storage))
        report.problems.append(f"{err}{hint}")
        root, legacy = None, None
    if legacy is not None:
        legacy.verify(storage, report)
        if not report.problems:
            try:
                catalog = legacy.catalog(files)
                _verify_chunks(storage, legacy.segments, lambda a, _refs: legacy.index(a, files),
                               catalog, report.problems)
            except (CorruptionError, OSError, ValueError) as err:
                _problem(report.problems, storage.location, err)
    elif root is not None:
        for ref in root.parts:
            report.parts += 1
            _verify_part(storage, files, root, ref, report.problems)
        linked = {r.key for r in root.linked}
        for refs in root.segments.values():
            for ref in refs:
                report.segments += 1
                report.chunks += _verify_segment(storage, files, ref, linked, report.problems)
        for ref in root.linked:  # no read uses their index, but a damaged byte is reported
            _verify_segment(storage, files, ref, None, report.problems)
        _verify_retired_lists(storage, files, root, report.problems)
        _verify_version_records(storage, root, report.problems)
        _verify_folders(storage, report.problems)
        if not report.problems:
            _verify_catalog(storage, root, files, report.problems)
    report.problems += storage.layout_problems()  # links, FIFOs, ... inside the store
    try:
        report.orphans = [item[0] for item in orphans(store)]
    except (CorruptionError, FormatError):
        pass  # the damaged root is reported above
    report.leftovers = [what for what, _age in storage.leftovers()]
    if repair and (report.orphans or report.leftovers):
        store._check_writable(commits=False)
        report.removed = remove_orphans(store)
    return report


def _verify_retired_lists(storage: Storage, files: IndexCache, root: Root,
                          problems: list[str]) -> None:
    """Every retired list of ``root`` reads, and none names a file ``root`` reads. A list
    that is gone is a problem only while the newest root still names it: a flush replaces
    and deletes lists right after its commit."""
    from atlas.core._atlas import load_root

    live = root.live_keys()
    for ref in root.retired_lists:
        where = f"{storage.location}/{ref.key}"
        try:
            entries = files.retired(ref)
        except FileNotFoundError:
            try:
                newest = load_root(storage)[0]
            except (CorruptionError, FormatError, StoreNotFoundError):
                newest = root
            if ref in newest.retired_lists:
                problems.append(f"{where}: retired list is missing")
            continue
        except (CorruptionError, OSError) as err:
            _problem(problems, where, err)
            continue
        named = sorted({key for key, _when, _generation in entries} & live)
        if named:
            problems.append(f"{where}: retired list names {named[0]!r}, which the root reads "
                            "(a live file is never retired)")


def _verify_folders(storage: Storage, problems: list[str]) -> None:
    """Atlas's folders are not files, and ``tags/`` holds tags only: a file in their place
    hides the tags or versions they hold (``tags()`` would list none, and an expire would then
    remove the versions the tags kept)."""
    folders = {key_grammar.TAGS_PREFIX, key_grammar.VERSIONS_PREFIX, "segments", "catalog"}
    for key, _size, _mtime in storage.list(""):
        top, _, rest = key.partition("/")
        if not rest and top in folders:
            problems.append(f"{storage.location}/{key}: is a file where atlas keeps a folder")
        elif top == key_grammar.TAGS_PREFIX and rest and key_grammar.tag_name(key) is None \
                and not key_grammar.RECORD_TEMP.fullmatch(key):
            problems.append(f"{storage.location}/{key}: is not a tag (a tag is the file "
                            "tags/<name>)")


def _verify_version_records(storage: Storage, root: Root, problems: list[str]) -> None:
    """Every version record decodes and holds the version its key names (``history()`` and
    ``Atlas.open(version=...)`` read them); one that is gone was expired meanwhile. No
    retention removes the newest version's record nor a tagged version's: those must be there
    (else the version reads as expired)."""
    found = _versions.records(storage)
    for generation, commits in sorted(found.items()):
        for commit in sorted(commits):
            try:
                _versions.read_record(storage, generation, commit)
            except VersionNotFoundError:
                continue
            except (CorruptionError, FormatError, OSError) as err:
                _problem(problems, storage.location, err)
    needed = {}
    if not _recorded(found, root.generation, root.commit) and not _superseded(storage, root):
        needed[root.generation, root.commit] = "the newest version"
    try:
        for name, (generation, commit) in _versions.all_tags(storage).items():
            if not _recorded(found, generation, commit):
                needed.setdefault((generation, commit), f"version {generation}, tagged "
                                                        f"{name!r},")
    except CorruptionError as err:
        _problem(problems, storage.location, err)
    for (generation, commit), what in needed.items():
        problems.append(f"{storage.location}/{key_grammar.version_key(generation, commit)}: "
                        f"the record of {what} is missing (no retention removes it; "
                        "history() leaves the version out and opening it says expired)")


def _recorded(found: dict[int, dict[str, float]], generation: int, commit: str) -> bool:
    return commit in found.get(generation, {})


def _superseded(storage: Storage, root: Root) -> bool:
    """Whether a newer commit than ``root`` landed (an expiry may then have removed its
    record since it was read)."""
    from atlas.core._atlas import load_root

    try:
        return load_root(storage, head=True)[0].commit != root.commit
    except (CorruptionError, FormatError, OSError):
        return False


def _problem(problems: list[str], where: str, err: BaseException) -> None:
    text = str(err)
    problems.append(text if where in text else f"{where}: {text}")


def _check_magic(storage: Storage, ref: FileRef, magic: bytes, where: str) -> None:
    if bytes(storage.get_range(ref.key, 0, len(magic), ref.size)) != magic:
        raise CorruptionError(f"{where}: file header is damaged")


def _verify_part(storage: Storage, files: IndexCache, root: Root, ref: FileRef,
                 problems: list[str]) -> None:
    where = f"{storage.location}/{ref.key}"
    try:
        _check_magic(storage, ref, PART_MAGIC, where)
        footer = files.footer(ref, PART_MAGIC)
        check_footer(footer, where)
        read = footer.reader(lambda o, n: storage.get_range(ref.key, o, n, ref.size))
        for sid in footer.sections:
            if sid == BLOOM:
                read_bloom(footer, read, where)
                continue
            table = read_table(footer, sid, read, where)
            # every row, also those a newer part replaced: what a reader would refuse
            check_ids(sid, table.key, table.columns, root, where)
            if table.kind == "attr":
                check_values(table.live(), f"{where} {list(sid)}")
    except FileNotFoundError:
        problems.append(f"{where}: catalog part is missing")
    except (CorruptionError, OSError, ValueError) as err:
        _problem(problems, where, err)


def _verify_segment(storage: Storage, files: IndexCache, ref: FileRef, linked: set[str] | None,
                    problems: list[str]) -> int:
    """Check one segment: its index, that its blocks tile it, that every block (also those it
    links in other files, which the root must list in ``linked``) passes its checksum and
    decodes. Returns its chunk count. ``linked`` None: a linked file, whose own blocks only
    are checked (what it links itself may be gone: the segment that replaced it links what
    is still read)."""
    where = f"{storage.location}/{ref.key}"
    try:
        _check_magic(storage, ref, SEGMENT_MAGIC, where)
        index = files.segment(ref)
        footer = files.footer(ref, SEGMENT_MAGIC)
    except FileNotFoundError:
        problems.append(f"{where}: segment file is missing")
        return 0
    except (CorruptionError, OSError, ValueError) as err:
        _problem(problems, where, err)
        return 0
    b = index.blocks
    own = b["file"] == 0
    order = np.argsort(b["offset"][own], kind="stable")
    starts, ends = b["offset"][own][order], (b["offset"] + b["stored"])[own][order]
    bounds = np.concatenate([[len(SEGMENT_MAGIC)], ends])
    if not np.array_equal(starts, bounds[:-1]) or bounds[-1] != footer.end_of_payload:
        problems.append(f"{where}: blocks do not tile the file (bytes outside every checksum)")
    for key, _size in index.linked if linked is not None else ():
        if key not in linked:
            problems.append(f"{where}: links blocks of {key}, which the root does not list as "
                            "linked (a sweep would delete it)")
    source = SegmentSource(storage, ref)
    merged = merge_indexes([index], [source])
    bad: dict[int, int] = {}  # source number -> its blocks that fail
    missing = set()
    blocks = list(range(index.n_blocks)) if linked is not None else np.flatnonzero(own).tolist()
    for s, failure in _checked_blocks(storage, merged, blocks):
        if failure is FileNotFoundError:
            missing.add(merged.sources[s].where())
        elif failure is not None:
            bad[s] = bad.get(s, 0) + 1
    for what in sorted(missing):
        problems.append(f"{where}: links blocks of {what}, which is missing")
    for s, count in sorted(bad.items()):
        if s == 0:
            problems.append(f"{where}: {count} of {int(own.sum())} blocks fail their "
                            "checksum or do not decode")
        else:  # the damage is in the linked file: name it first
            problems.append(f"{merged.sources[s].where()}: {count} blocks that {where} links "
                            "fail their checksum or do not decode")
    return index.rows


VERIFY_BYTES_IN_FLIGHT = 64 << 20  # decoded bytes of the blocks a remote verify checks at once


def _checked_blocks(storage: Storage, merged: ChunkIndex, blocks: list[int]):
    """(source number, None or the failure's class) of each block of ``blocks``, checked
    (fetched, checksum, decoded). On a remote store many requests are in flight at once (one
    after the other, a segment of a thousand blocks waited a thousand round trips), in groups
    of at most ``VERIFY_BYTES_IN_FLIGHT`` decoded bytes, so memory stays bounded."""
    def check(n: int) -> tuple[int, Any]:
        s = int(merged.block_source[n])
        try:
            fetch_block(merged, n, CHECK_ONLY)
        except FileNotFoundError:
            return s, FileNotFoundError
        except (CorruptionError, OSError) as err:
            return s, type(err)
        return s, None

    if not storage.remote or len(blocks) < 2:
        yield from map(check, blocks)
        return
    sizes = merged.block_decoded[blocks].tolist()
    group: list[int] = []
    held = 0
    for n, size in zip(blocks, sizes):
        if group and held + size > VERIFY_BYTES_IN_FLIGHT:
            yield from io_pool().map(check, group)
            group, held = [], 0
        group.append(n)
        held += size
    yield from io_pool().map(check, group)


def _verify_catalog(storage: Storage, root: Root, files: IndexCache,
                    problems: list[str]) -> None:
    """The catalog's own consistency: schemas that decode, rows naming existing schemas, no
    name held by two live datasets."""
    from atlas.core._catalog import Catalog

    catalog = Catalog(storage, root, files)
    try:
        n_schemas = len(catalog.schemas())
        for sid in catalog.section_ids("array"):
            table = catalog.table(sid).committed()
            schema = table.columns["schema"]
            if len(schema) and (schema.min() < 0 or schema.max() >= n_schemas):
                problems.append(f"{storage.location}: array table {sid[1]!r} names a schema "
                                f"outside the {n_schemas} the catalog holds")
        names = catalog.names()
        if len(set(names)) != len(names):
            seen: set[str] = set()
            twice = next(n for n in names if n in seen or seen.add(n))
            problems.append(f"{storage.location}: two live datasets are named {twice!r}")
        if not problems:
            _verify_chunks(storage, root.segments, files.merged, catalog, problems)
    except (CorruptionError, OSError, ValueError) as err:
        _problem(problems, storage.location, err)


def _verify_chunks(storage: Storage, segments: dict, index_of, catalog,
                   problems: list[str]) -> None:
    """The chunks reads reach, against their arrays' schemas: a chunk outside its array's
    grid, a length its extent does not have, a written mask of the wrong size, a string chunk
    that does not decode (what a read refuses, or silently misses, verify() reports)."""
    from atlas.core._chunks import decode_values
    from atlas.core._read import _distinct

    live = catalog.live_dids()
    blocks = BlockCache()
    next_slot = getattr(catalog, "next_slot", None)  # a format-1 catalog has no counter
    for array, refs in segments.items():
        slots, schema_ids, found = catalog.rows(array, live)
        if not found.any():
            continue
        slots, schema_ids = slots[found], schema_ids[found]
        index = index_of(array, refs)
        problem = None if next_slot is None else slot_problem(index, next_slot)
        if problem:
            problems.append(f"{storage.location}: array {array!r}: {problem}")
        for sid in _distinct(schema_ids):
            schema = catalog.schema(sid)
            rows = np.flatnonzero(np.isin(index.slot, slots[schema_ids == sid]))
            # rows beyond the grid are what a shrink left behind: dead, never read
            rows = rows[index.chunk[rows] < schema.n_chunks]
            position = np.unravel_index(index.chunk[rows], schema.grid) if schema.ndim else ()
            extent = np.array([np.minimum(c, n - p * c) for p, c, n in
                               zip(position, schema.chunk_shape, schema.shape)], _I64
                              ).reshape(schema.ndim, len(rows)).T
            cells = np.prod(extent, axis=1) if schema.ndim else np.ones(len(rows), _I64)
            mask = index.mask[rows]
            wrong = (mask != 0) & (mask != (cells + 7) // 8)
            if wrong.any():
                problems.append(f"{_file_of(index, rows[wrong])}: array {array!r}: "
                                f"{int(wrong.sum())} chunks carry a written mask of the wrong "
                                "size")
            if not schema.dtype.is_string:
                wrong = index.length[rows] != cells * schema.dtype.itemsize
                if wrong.any():
                    problems.append(f"{_file_of(index, rows[wrong])}: array {array!r}: "
                                    f"{int(wrong.sum())} chunks hold a number of bytes their "
                                    "extent does not")
                continue
            for r, shape in zip(rows.tolist(), extent.tolist()):
                try:
                    view = memoryview(fetch_block(index, int(index.block[r]), blocks))
                    start = int(index.offset[r])
                    decode_values(schema, view[start : start + int(index.length[r])],
                                  tuple(shape), f"{_file_of(index, [r])}: array {array!r}")
                except (CorruptionError, OSError) as err:
                    problems.append(str(err))


def _file_of(index, rows) -> str:
    """The file holding the first of chunk ``rows`` of ``index``, for messages."""
    block = int(index.block[rows[0]])
    return index.sources[int(index.block_source[block])].where()


# -- what is on disk ----------------------------------------------------------------------------

def usage(store: "Atlas") -> dict:
    """Files and bytes of the commit this handle is at: segments per array name, catalog
    parts (and retired lists), files kept for earlier versions ("retired", sizes from a
    listing), the root, and the version records and tags of the store. A segment or retired
    list that cannot be read is listed under ``problems`` (a segment's array's chunk count is
    None), not raised."""
    storage = store._storage
    root, legacy = store._root, store._legacy
    if legacy is not None:
        found = storage.read_manifest(key_grammar.ROOT_KEY)
        root_bytes = len(found[0]) if found else 0
    else:
        root_bytes = len(root.encode())
    segments = legacy.segments if legacy is not None else root.segments
    per_array, problems = {}, []
    for name, refs in segments.items():
        chunks: int | None = 0
        for ref in refs:
            try:
                rows = legacy.segment_index(ref)[0].rows if legacy is not None else \
                    store._files.chunk_rows(ref)
            except CorruptionError as err:  # a damaged or lost file: the rest is still told
                problems.append(str(err))
                chunks = None
                continue
            chunks = None if chunks is None else chunks + rows
        per_array[name] = {"segments": len(refs), "bytes": sum(r.size for r in refs),
                           "chunks": chunks}
    try:
        entries = root.retired if legacy is not None else newest_retired(store, root)[1]
    except CorruptionError as err:  # a damaged retired list: what the root holds inline
        problems.append(str(err))
        entries = root.retired
    retired_keys = {entry[0] for entry in entries}
    listing = storage.list("")
    retired = [size for key, size, _mtime in listing if key in retired_keys]
    records = [size for key, size, _mtime in listing
               if key_grammar.parse_version_key(key) or key_grammar.tag_name(key)]
    linked_bytes = sum(r.size for r in root.linked)
    segment_bytes = sum(a["bytes"] for a in per_array.values())
    # the retired lists live beside the parts (catalog/*.ret)
    catalog_bytes = sum(p.size for p in root.parts) + sum(r.size for r in root.retired_lists)
    return {
        "format": 1 if legacy is not None else root.format_version,
        "codec": root.codec, "level": root.level, "block_size": root.block_size,
        "shuffle": root.shuffle, "generation": root.generation,
        "segments": sum(a["segments"] for a in per_array.values()),
        "segment_bytes": segment_bytes,
        "parts": len(root.parts), "catalog_bytes": catalog_bytes,
        "linked": len(root.linked), "linked_bytes": linked_bytes,
        "retired": len(retired), "retired_bytes": sum(retired),
        "root_bytes": root_bytes,
        "version_records": len(records), "version_bytes": sum(records),
        "bytes_on_disk": segment_bytes + linked_bytes + catalog_bytes + sum(retired) +
        root_bytes + sum(records),
        "per_array": per_array,
        "problems": problems,
    }
