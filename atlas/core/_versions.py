"""Versions: every commit's root is kept, so any retained commit can be opened again.

A commit writes its root twice: as the version record ``versions/<generation>-<commit>.root``
(immutable, written first) and as ``manifest.atlas`` (the conditional commit that makes it the
latest). A commit that loses the race deletes its record; one that crashed leaves a record no
root descends from, which history ignores and ``expire`` removes. Tags are small files
``tags/<name>`` naming a generation and commit id.

Files a commit replaces (merges, compaction) stay listed in the root as ``retired`` with the
generation that replaced them. A file written at generation k and retired at generation r is read
by versions k .. r-1 only (its key carries k), so it is deleted once no retained version lies in
that range: no old root needs to be read to know what may go. (A segment whose blocks a live
segment links is listed as ``linked``, not retired, until no live segment links it.)

Retention: a version is kept when it is among the last ``keep_last``, younger than
``older_than`` seconds (by the time its record was written), or tagged. ``docs/durability.md``
describes the policy and its defaults.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import json
import math
import re
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from atlas.errors import (
    AlreadyExistsError,
    ConflictError,
    CorruptionError,
    FormatError,
    VersionExpiredError,
    VersionNotFoundError,
)
from atlas.format import keys as key_grammar
from atlas.format import root as root_format
from atlas.format.root import Root, RootHead
from atlas.storage import Storage

if TYPE_CHECKING:
    from atlas.core._atlas import Atlas

_FILE_GENERATION = re.compile(r"(?:catalog|segments)/([0-9]{8,12})-")
AUTO_EXPIRE_EVERY_SECONDS = 60.0  # a writer looks for expired versions at most this often


@dataclass(frozen=True)
class Version:
    """One commit of a store, as :meth:`atlas.Atlas.history` lists it."""

    generation: int
    commit: str
    time: _dt.datetime
    message: str | None
    added: int
    changed: int
    deleted: int
    tags: tuple[str, ...] = ()


# -- committing ---------------------------------------------------------------------------------

def commit_root(storage: Storage, root: Root, expected: Any) -> Any:
    """Write ``root``'s version record, then make it the latest (conditional on ``expected``,
    the token of the root it replaces; None for a new store). Returns the new token."""
    twice = root.twice_listed()
    if twice is not None:  # readers refuse such a root: never commit one (a bug upstream)
        raise ConflictError(f"store at {storage.location}: this commit would list {twice} "
                            "twice (a change set merged twice?); nothing was committed")
    key = key_grammar.version_key(root.generation, root.commit)
    storage.put(key, record_of(root).encode())
    try:
        return storage.commit(key_grammar.ROOT_KEY, root.encode(), expected)
    except ConflictError:
        forget_record(storage, root)  # this attempt will never be a version
        raise


def record_of(root: Root) -> Root:
    """The version record of ``root``: the root without its retired entries and lists, which
    grow with every version kept and which only the newest root's writers use (a version's
    reader reads its parts and segments, a rebase its delta), but for its own delta part when
    the same commit merged that away (the root names it there)."""
    if not root.retired and not root.retired_lists:
        return root
    return replace(root, retired=[e for e in root.retired if e[0] == root.delta],
                   retired_lists=[])


def forget_record(storage: Storage, root: Root) -> None:
    try:
        storage.delete(key_grammar.version_key(root.generation, root.commit))
    except OSError:
        pass  # an orphan record: history ignores it, expire removes it


# -- reading versions ---------------------------------------------------------------------------

def records(storage: Storage) -> dict[int, dict[str, float]]:
    """{generation: {commit id: time its record was written}} of every version record."""
    out: dict[int, dict[str, float]] = {}
    for key, _size, mtime in storage.list(key_grammar.VERSIONS_PREFIX):
        parsed = key_grammar.parse_version_key(key)
        if parsed is not None:
            out.setdefault(parsed[0], {})[parsed[1]] = mtime
    return out


def record_names(storage: Storage, keys: list[str] | None = None
                 ) -> dict[int, dict[str, float]]:
    """:func:`records` from the keys alone (times 0): what finding a version needs."""
    out: dict[int, dict[str, float]] = {}
    for key in storage.keys(key_grammar.VERSIONS_PREFIX) if keys is None else keys:
        parsed = key_grammar.parse_version_key(key)
        if parsed is not None:
            out.setdefault(parsed[0], {})[parsed[1]] = 0.0
    return out


def read_record(storage: Storage, generation: int, commit: str) -> Root:
    key = key_grammar.version_key(generation, commit)
    try:
        data = storage.get(key)
    except FileNotFoundError:
        raise VersionExpiredError(
            f"version {generation} of {storage.location} expired: its record is gone") from None
    where = f"{storage.location}/{key}"
    root_format.read_header(data, where)
    root = root_format.decode(data, where)
    if root.generation != generation or root.commit != commit:
        raise CorruptionError(f"{where}: holds generation {root.generation} commit "
                              f"{root.commit}, not what its key says")
    return root


def newest_intact_record(storage: Storage, tries: int = 8) -> Root | None:
    """The version record of the highest generation that reads (of the ``tries`` newest):
    what a damaged ``manifest.atlas`` held, or the attempt of a writer that crashed before
    its commit (whose files are all written, so reading it is reading a whole commit). None
    when none reads, or the records cannot be listed."""
    try:
        found = record_names(storage)
    except OSError:
        return None
    for generation in sorted(found, reverse=True)[:tries]:
        for commit in sorted(found[generation]):
            try:
                return read_record(storage, generation, commit)
            except (CorruptionError, FormatError, VersionExpiredError):
                continue
    return None


def damaged_root_hint(record: Root | None) -> str:
    """What to do about a root that does not read: ``record``, the newest version that still
    does (:func:`newest_intact_record`)."""
    if record is None:
        return ""
    return (f"; the version records read up to version {record.generation}: "
            f"Atlas.open(..., version={record.generation}) (or --version "
            f"{record.generation} on the command line) reads that one")


def chain(storage: Storage, top: Root, found: dict[int, dict[str, float]] | None = None,
          skip_expired: bool = False):
    """The versions ``top`` descends from, newest first (``top`` included): each parent's
    record by its key; across a gap that expiry left, the newest older record (the one a
    later record names as parent where several were left at one generation).
    ``skip_expired``: a record that an expiry removed after the listing is one more gap (what
    is kept is listed); otherwise its read raises VersionExpiredError."""
    found = records(storage) if found is None else found
    parents = _parents_named(storage, found)
    current: Root | None = top
    while current is not None:
        yield current
        current = _parent_record(storage, current, found, parents, skip_expired)


def newer_commits(storage: Storage, base: Root, latest: Root,
                  known: dict[str, Root] | None = None) -> list[Root]:
    """The commits after ``base`` up to ``latest``, newest first, each read by the key its
    child names (no listing of every record: a rebase retrying against fast writers reads
    only what landed since its last try, through ``known``, records by commit id); stops at a
    record that expired, so the oldest returned names another parent than ``base``."""
    known = {} if known is None else known
    newer = []
    current = latest
    while current.generation > base.generation:
        newer.append(current)
        if current.parent is None:
            break
        parent = known.get(current.parent)
        if parent is None:
            try:
                parent = read_record(storage, current.generation - 1, current.parent)
            except VersionExpiredError:
                break
            known[current.parent] = parent
        current = parent
    return newer


def _parent_record(storage: Storage, root: Root, found: dict, parents: dict,
                   skip_expired: bool) -> Root | None:
    """The record of ``root``'s parent or, across a gap, of the newest older version; None
    below the oldest. ``found`` loses the records found gone (``skip_expired``)."""
    generation, commit = root.generation - 1, root.parent
    if commit is not None and commit in found.get(generation, {}):
        try:
            return read_record(storage, generation, commit)
        except VersionExpiredError:
            if not skip_expired:
                raise
            del found[generation][commit]
            if not found[generation]:
                del found[generation]
    while True:
        older = [g for g in found if g < root.generation]
        if not older:
            return None
        generation = max(older)
        candidates = sorted(found[generation])
        named = [c for c in candidates if c in parents.get(generation, ())]
        try:
            return _first_record(storage, generation, named or candidates)
        except VersionExpiredError:
            if not skip_expired:
                raise
            del found[generation]


def _first_record(storage: Storage, generation: int, commits: list[str]) -> Root:
    """The first of these records at ``generation`` that is still there."""
    for commit in commits[:-1]:
        try:
            return read_record(storage, generation, commit)
        except VersionExpiredError:
            continue  # a losing writer's record, deleted since the listing
    return read_record(storage, generation, commits[-1])


def _parents_named(storage: Storage, found: dict[int, dict[str, float]]) -> dict[int, set]:
    """For generations holding several records (a crashed commit left one, or a writer that
    lost the race to commit has not deleted its own yet): the commit ids that the records one
    generation up name as their parent."""
    out: dict[int, set] = {}
    for generation, commits in found.items():
        if len(commits) > 1:
            for commit in found.get(generation + 1, {}):
                try:
                    parent = read_record(storage, generation + 1, commit).parent
                except VersionExpiredError:
                    continue  # a losing writer's record, deleted since the listing
                out.setdefault(generation, set()).add(parent)
    return out


def resolve(storage: Storage, latest: Root | RootHead, spec: Any) -> Root:
    """The root of version ``spec``: a generation (int), a tag name (str), or a time (a
    datetime, numpy datetime64 or pandas Timestamp: the newest version committed at or
    before it). ``latest``: the newest root, or its head (decoded whole only when the
    version asked for is the latest)."""
    if isinstance(spec, (bool, np.bool_, np.timedelta64)):  # a timedelta64 is an np.integer
        raise TypeError(f"version must be a generation (int), a tag (str) or a time "
                        f"(datetime), got {spec!r}")
    if isinstance(spec, (int, np.integer)):
        return _by_generation(storage, latest, int(spec))
    if isinstance(spec, str):
        generation, commit = read_tag(storage, spec)
        if generation == latest.generation and commit == latest.commit:
            return _whole(latest)
        return read_record(storage, generation, commit)
    if isinstance(spec, (_dt.datetime, _dt.date, np.datetime64)):
        return _by_time(storage, latest, as_timestamp(spec), spec)
    raise TypeError(f"version must be a generation (int), a tag (str) or a time (datetime), "
                    f"got {type(spec).__name__} {spec!r}")


def as_timestamp(when: Any) -> float:
    """Seconds since the epoch; naive datetimes are local time, as ``datetime`` has them."""
    if isinstance(when, np.datetime64) and np.isnat(when) or when != when:  # pandas' NaT too
        raise ValueError("version time must not be NaT")
    if isinstance(when, np.datetime64):
        return _datetime64_seconds(when)
    if not isinstance(when, _dt.datetime):
        when = _dt.datetime(when.year, when.month, when.day)
    try:
        return when.timestamp()
    except (ValueError, OverflowError, OSError):
        # a naive time at the ends of the calendar, where local time is not defined: centuries
        # away from any commit, so the zone does not matter
        return (when.replace(tzinfo=_dt.timezone.utc) - _EPOCH).total_seconds()


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_UNIT_SECONDS = {"W": 604800, "D": 86400, "h": 3600, "m": 60, "s": 1}
_UNITS_PER_SECOND = {"ms": 10**3, "us": 10**6, "ns": 10**9, "ps": 10**12, "fs": 10**15,
                     "as": 10**18}


def _datetime64_seconds(when: np.datetime64) -> float:
    """Seconds since the epoch of any datetime64, in Python integers (a cast to another unit
    wraps around in int64: a year in the trillions came out as a time last week)."""
    unit, count = np.datetime_data(when.dtype)
    ticks = int(when.astype(np.int64)) * count
    if unit in _UNIT_SECONDS:
        return float(ticks * _UNIT_SECONDS[unit])
    if unit in _UNITS_PER_SECOND:
        return ticks / _UNITS_PER_SECOND[unit]
    # years or months: numpy's calendar while the seconds fit int64, else ages from any commit
    if abs(ticks) < (2 * 10**11 if unit == "Y" else 2 * 10**12):
        return float(np.datetime64(ticks, unit).astype("datetime64[s]").astype(np.int64))
    return math.copysign(math.inf, ticks)


def _as_listed(seconds: float) -> float:
    """A commit time as :func:`history` lists it, to the microsecond: a caller opening a
    version at the time listed for it must find that version, not the one before."""
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).timestamp()


def _whole(root: Root | RootHead) -> Root:
    return root.full() if isinstance(root, RootHead) else root


def _by_generation(storage: Storage, latest: Root | RootHead, generation: int,
                   found: dict[int, dict[str, float]] | None = None) -> Root:
    if generation == latest.generation:
        return _whole(latest)
    if generation < 0 or generation > latest.generation:
        raise VersionNotFoundError(f"{storage.location} has no version {generation}: versions "
                                   f"go from 0 to {latest.generation}")
    if found is None:
        keys = storage.keys(key_grammar.VERSIONS_PREFIX)
        # the usual case, one record of that generation, without parsing every key
        at = key_grammar.version_prefix(generation)
        mine = record_names(storage, [key for key in keys if key.startswith(at)])
        found = mine if len(mine.get(generation, ())) == 1 else record_names(storage, keys)
    if generation not in found:
        raise VersionExpiredError(f"version {generation} of {storage.location} expired "
                                  f"(versions kept: {_kept_text(found, latest)})")
    if len(found[generation]) == 1:  # the usual case: one read
        return read_record(storage, generation, next(iter(found[generation])))
    for root in chain(storage, _whole(latest), found):  # a crashed commit left a second record
        if root.generation == generation:
            return root
        if root.generation < generation:
            break
    raise VersionExpiredError(f"version {generation} of {storage.location} expired")


def _by_time(storage: Storage, latest: Root | RootHead, when: float, asked: Any) -> Root:
    """The newest version committed at or before ``when``: a binary search over the records
    (commit times grow with the generation). VersionExpiredError when versions expired right
    after it: one of them may have been the newest at ``when``."""
    if _as_listed(latest.time) <= when:
        return _whole(latest)
    # records up to the head read: one committed since then is newer than anything asked
    found = {g: c for g, c in record_names(storage).items() if g <= latest.generation}
    generations = sorted(found)
    lo, hi = 0, len(generations)  # versions below lo are at or before when; from hi after
    while lo < hi:
        mid = (lo + hi) // 2
        if _as_listed(_by_generation(storage, latest, generations[mid], found).time) <= when:
            lo = mid + 1
        else:
            hi = mid
    if lo:
        before = generations[lo - 1]
        after = generations[lo] if lo < len(generations) else latest.generation
        if after > before + 1:
            gone = f"{before + 1}" if after == before + 2 else f"{before + 1} to {after - 1}"
            raise VersionExpiredError(
                f"cannot tell which version of {storage.location} was the latest at {asked}: "
                f"version {before}, or one committed after it that expired ({gone}); open "
                f"version {before} by its number if it is the one")
        return _by_generation(storage, latest, before, found)
    created = _whole(latest).created
    existed = created is None or when >= created
    if existed and (not found or min(found) > 0):
        raise VersionExpiredError(f"the versions of {storage.location} at {asked} expired "
                                  f"(versions kept: {_kept_text(found, latest)})")
    raise VersionNotFoundError(f"{storage.location} has no version at {asked}: its first "
                               "commit is later")


def _kept_text(found: dict, latest: Root) -> str:
    generations = sorted(set(found) | {latest.generation})
    if len(generations) > 6:
        return f"{len(generations)} from {generations[0]} to {generations[-1]}"
    return ", ".join(map(str, generations))


def describe(root: Root, named: tuple[str, ...]) -> Version:
    """The :class:`Version` of ``root``, tagged ``named``."""
    return Version(generation=root.generation, commit=root.commit,
                   time=_dt.datetime.fromtimestamp(root.time, _dt.timezone.utc),
                   message=root.message, added=root.changes.get("added", 0),
                   changed=root.changes.get("changed", 0),
                   deleted=root.changes.get("deleted", 0), tags=named)


def history(storage: Storage, top: Root) -> list[Version]:
    """The versions kept, newest first (one that another handle expires meanwhile is left
    out, not an error)."""
    by_commit: dict[tuple[int, str], list[str]] = {}
    for name, mark in all_tags(storage).items():  # grouped once: not every tag per version
        by_commit.setdefault(mark, []).append(name)
    return [describe(root, tuple(sorted(by_commit.get((root.generation, root.commit), ()))))
            for root in chain(storage, top, skip_expired=True)]


# -- tags ---------------------------------------------------------------------------------------

def read_tag(storage: Storage, name: str) -> tuple[int, str]:
    key = key_grammar.tag_key(name)
    try:
        data = storage.get(key)
    except FileNotFoundError:
        raise VersionNotFoundError(f"{storage.location} has no tag {name!r}") from None
    return _decode_tag(data, f"{storage.location}/{key}")


def _decode_tag(data: bytes, where: str) -> tuple[int, str]:
    try:
        doc = json.loads(bytes(data[:4096]).decode("utf-8"))
        generation, commit = doc["generation"], doc["commit"]
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0 \
                or not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{32}", commit):
            raise ValueError("bad generation or commit")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise CorruptionError(f"{where}: not a tag ({err})") from None
    return generation, commit


def all_tags(storage: Storage) -> dict[str, tuple[int, str]]:
    out = {}
    for key, _size, _mtime in storage.list(key_grammar.TAGS_PREFIX):
        name = key_grammar.tag_name(key)
        if name is not None:
            try:
                out[name] = read_tag(storage, name)
            except VersionNotFoundError:
                continue  # deleted meanwhile
    return dict(sorted(out.items()))


def add_tag(storage: Storage, name: str, root: Root) -> None:
    key = key_grammar.tag_key(name)
    # on a case-insensitive file system two such tags would be one file: refuse it everywhere
    for listed in storage.keys(key_grammar.TAGS_PREFIX):  # (names only: no stat of each)
        other = key_grammar.tag_name(listed)
        if other is not None and other != name and other.lower() == name.lower():
            raise AlreadyExistsError(f"tag {name!r} differs from tag {other!r} of "
                                     f"{storage.location} only in case; tag names must stay "
                                     "distinct on case-insensitive file systems")
    data = json.dumps({"generation": root.generation, "commit": root.commit,
                       "time": time.time()}).encode()
    try:
        storage.commit(key, data, None)  # create only: one tag, one version
    except ConflictError:
        raise AlreadyExistsError(f"tag {name!r} already exists in {storage.location}; "
                                 "delete it first to move it") from None
    # an expire that ran meanwhile may have taken the version: then the tag must not stay
    if not _record_exists(storage, root):
        storage.delete(key)
        raise VersionExpiredError(f"version {root.generation} of {storage.location} expired "
                                  "while it was being tagged")


def _record_exists(storage: Storage, root: Root) -> bool:
    try:
        storage.get_range(key_grammar.version_key(root.generation, root.commit), 0, 1)
    except FileNotFoundError:
        return False
    return True


def remove_tag(storage: Storage, name: str) -> None:
    key = key_grammar.tag_key(name)
    try:
        read_tag(storage, name)  # VersionNotFoundError when there is none
    except CorruptionError:
        pass  # a damaged tag goes too: deleting it is how the store is mended
    storage.delete(key)


# -- retention ----------------------------------------------------------------------------------

@dataclass
class Expiry:
    """What an expire pass removes: version records first, then (after the commit that drops
    them from ``retired``) the files no retained version reads."""

    records: list[str]
    files: list[str]
    kept: list[int]


def plan_expiry(storage: Storage, latest: Root, older_than: float, keep_last: int,
                now: float | None = None, retired: list | None = None,
                committing: int | None = None, keep_from: int | None = None) -> Expiry:
    """What to remove so that only the versions the policy keeps stay readable: ``latest`` is
    the newest committed root; ``retired`` the list to judge (default: ``latest``'s; a flush
    passes the one of the root it is about to commit, of generation ``committing``);
    ``keep_from``: every version from that generation on stays too (a handle's forks)."""
    now = time.time() if now is None else now
    found = {g: c for g, c in records(storage).items() if g <= latest.generation}
    tags = set(all_tags(storage).values())
    newest_first = sorted(found, reverse=True)
    kept = {latest.generation, *newest_first[:keep_last]}
    kept.update(g for g, commits in found.items() if max(commits.values()) >= now - older_than)
    kept.update(g for g, _c in tags if g <= latest.generation)
    if keep_from is not None:
        kept.update(g for g in found if g >= keep_from)
    doomed = []
    for generation, commits in found.items():
        for commit in commits:
            if (generation, commit) in tags:
                continue
            stray = (generation == latest.generation and commit != latest.commit) or (
                len(commits) > 1 and generation < latest.generation
                and _orphan(storage, found, generation, commit))
            if generation not in kept or stray:
                doomed.append(key_grammar.version_key(generation, commit))
    kept_sorted = sorted(kept | ({committing} if committing is not None else set()))
    judged = latest.retired if retired is None else retired
    live = latest.live_keys()  # a (forged) entry naming a live file never deletes it
    files = [entry[0] for entry in judged if entry[0] not in live
             and not _read_by_any(kept_sorted, file_generation(entry[0]), entry[2])]
    return Expiry(records=doomed, files=files, kept=kept_sorted)


def _orphan(storage: Storage, found: dict, generation: int, commit: str) -> bool:
    """Whether a record shares its generation with another and no record above names it.
    A record listed above but gone by now (a writer that lost the race to commit deletes its
    own) names nothing; with none left above, the record is kept."""
    parents = []
    for above in found.get(generation + 1, {}):
        try:
            parents.append(read_record(storage, generation + 1, above).parent)
        except VersionExpiredError:
            continue
    return bool(parents) and commit not in parents


def _read_by_any(kept: list[int], first: int, retired_at: int) -> bool:
    """Whether some kept generation g (``kept``: sorted) has first <= g < retired_at. (A
    search of the list as it is: made an array for every retired file, a store of 10^4 kept
    versions spent seconds here.)"""
    i = bisect.bisect_left(kept, first)
    return i < len(kept) and kept[i] < retired_at


def file_generation(key: str) -> int:
    """The generation a file was written for (from its key; 0 for format-1 files)."""
    found = _FILE_GENERATION.match(key)
    return int(found.group(1)) if found else 0


def drop_records(storage: Storage, keys: list[str]) -> bool:
    """Delete the version records ``keys``; False when one of their versions was tagged
    meanwhile: its record is put back, and the files the plan would free must stay. (A tag
    is written first and then checks that its record exists, see :func:`add_tag`: whichever
    way the two interleave, a tag that stays names a version whose record stays.)"""
    held = {}
    for key in keys:
        try:
            held[key] = storage.get(key)
            storage.delete(key)
        except FileNotFoundError:
            pass
    if not held:
        return True
    tagged = {key_grammar.version_key(*named) for named in all_tags(storage).values()}
    back = [key for key in held if key in tagged]
    for key in back:
        storage.put(key, held[key])
    return not back


def check_age(seconds: Any, what: str) -> float:
    """An age in seconds (a number or a timedelta) that a root can store: beyond year 9999 a
    committed policy would make the root unreadable."""
    if isinstance(seconds, _dt.timedelta):
        seconds = seconds.total_seconds()
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float, np.integer,
                                                             np.floating)) or \
            not 0 <= seconds < root_format.MAX_TIME:
        raise ValueError(f"{what} must be a number of seconds >= 0 and below "
                         f"{root_format.MAX_TIME} (year 9999), or a timedelta, got {seconds!r}")
    return float(seconds)


def check_retention(older_than: Any, keep_last: Any) -> tuple[float, int]:
    older_than = check_age(older_than, "older_than")
    if isinstance(keep_last, bool) or not isinstance(keep_last, (int, np.integer)) or \
            not 1 <= keep_last < root_format.MAX_INT:
        raise ValueError(f"keep_last must be an int >= 1 (the latest version is always kept) "
                         f"and below 2**62, got {keep_last!r}")
    return float(older_than), int(keep_last)


def expire(store: "Atlas", older_than: Any = None, keep_last: Any = None) -> dict:
    """Remove the versions the retention does not keep, then the files only they read."""
    from atlas.core import _maintain
    from atlas.core._atlas import load_root

    root = store._root
    policy_age, policy_last = root.retention
    older_than, keep_last = check_retention(
        policy_age if older_than is None else older_than,
        policy_last if keep_last is None else keep_last)
    storage = store._storage
    root, retired = _maintain.newest_retired(store, root)
    plan = plan_expiry(storage, root, older_than, keep_last, retired=retired,
                       keep_from=store._fork_floor)
    if not drop_records(storage, plan.records):
        plan.files = []  # a version was tagged meanwhile: its files stay (a later pass frees)
    freed = 0
    if plan.files:
        gone = set(plan.files)
        merges = _maintain.Merges()  # what the last try wrote (retired lists)

        def without_gone(latest: Root) -> Root:
            nonlocal merges
            merges.discard(storage)  # written for an older root: never committed
            merges = _maintain.Merges()
            out = latest.successor(message="expire")
            try:
                _maintain.drop_retired(store, out, gone, merges)
            except FileNotFoundError:
                # a newer commit replaced a list of ``latest``: built on the newest root, the
                # commit (conditional on ``latest``) conflicts and is made again on it
                newest = load_root(storage)[0]
                if newest.commit == latest.commit:
                    raise  # the newest root's own list is gone: verify() reports it
                return without_gone(newest)
            return out

        try:
            committed = store._commit_maintenance(without_gone)
        except BaseException:
            merges.discard(storage)
            raise
        merges.release()
        # committed: from here on a failure leaves files for a later sweep, it raises nothing
        merges.committed(store)  # deletes the retired lists it replaced
        store._forget_files(plan.files)
        try:
            sizes = {key: size for key, size, _m in storage.list("") if key in gone}
        except OSError:
            sizes = {}
        for key in plan.files:
            try:
                storage.delete(key)
                freed += sizes.get(key, 0)
            except OSError:
                pass  # unreferenced now: an orphan sweep takes it later
        # this commit is a version too (the data of the one it replaced, which stays: a
        # writer whose handle is at that one needs its record to rebase on this commit)
        plan.kept = sorted({*plan.kept, committed.generation})
    try:
        _maintain.remove_orphans(store)
    except OSError:
        pass  # the orphans wait for the next sweep
    return {"versions_removed": len(plan.records), "files_removed": len(plan.files),
            "bytes_freed": freed, "versions_kept": plan.kept}


# -- what a commit changed ----------------------------------------------------------------------

class ChangeCounter:
    """Counts the datasets a flush adds, changes and deletes, from its catalog deltas (each
    seen once as the flush writes it): created ids are at or above the root's ``next_did``."""

    def __init__(self, catalog: Any):
        self.catalog = catalog
        self.first_new = catalog.root.next_did
        self.first_new_slot = catalog.root.next_slot
        self.added = 0
        self.deleted: list[np.ndarray] = []
        self.touched: list[np.ndarray] = []
        self.slots: list[np.ndarray] = []  # committed arrays whose attributes changed

    def add(self, section_id: tuple, delta: Any) -> None:
        keys = delta.key
        if section_id == ("datasets",):
            new = keys >= self.first_new
            self.added += int((new & ~delta.dead).sum())
            self.deleted.append(keys[~new & delta.dead])
        elif section_id[0] == "array_attr":
            self.slots.append(keys[keys < self.first_new_slot])
        elif section_id[0] in ("array", "attr"):
            self.touched.append(keys[keys < self.first_new])

    def counts(self) -> dict[str, int]:
        deleted = np.unique(np.concatenate(self.deleted)) if self.deleted else \
            np.zeros(0, np.int64)
        touched = list(self.touched)
        slots = np.concatenate(self.slots) if self.slots else np.zeros(0, np.int64)
        if len(slots):  # rare: attributes of arrays defined before this flush
            for sid in self.catalog.section_ids("array"):
                table = self.catalog.table(sid).view()
                touched.append(table.key[np.isin(table.columns["slot"], slots)])
        changed = np.setdiff1d(np.concatenate(touched), deleted) if touched else deleted[:0]
        return {"added": self.added, "changed": int(len(np.unique(changed))),
                "deleted": int(len(deleted))}


MAX_MESSAGE_BYTES = 1 << 20  # a commit message; every root and version record carries it


def check_message(message: Any) -> str | None:
    if message is not None and not isinstance(message, str):
        raise TypeError(f"a commit message must be a str or None, got "
                        f"{type(message).__name__} {message!r:.80}")
    if message is not None:
        size = len(message.encode("utf-8"))  # a lone surrogate cannot be stored: say so now
        if size > MAX_MESSAGE_BYTES:
            # a root past the readers' bound would commit and then never open again
            raise ValueError(f"a commit message may hold at most {MAX_MESSAGE_BYTES} bytes "
                             f"in UTF-8, got {size}")
    return message
