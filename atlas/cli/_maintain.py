"""Commands that change or check a store: ``create``, ``rm``, ``compact``, ``verify``,
``upgrade``."""

from __future__ import annotations

import argparse

from atlas.cli._common import (
    CommandError,
    CommandFailed,
    check_new_store_folder,
    credentials_explained,
    disk_usage,
    emit,
    log,
    open_store,
    plural,
)
from atlas.cli._progress import human_bytes

CODECS = ("zstd", "lz4", "none")


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("create", parents=[common], help="create an empty store",
                       description="Create an empty store at STORE (a missing folder is made).")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--codec", choices=CODECS, default="zstd",
                   help="chunk compression (default: zstd)")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="compress values as they are, without the byte shuffle (format "
                        "version 2, which atlas builds before the shuffle can read)")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("rm", parents=[common], help="delete datasets",
                       description="Delete datasets from STORE in one commit. Their bytes stay "
                                   "on disk until 'atlas compact'.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("names", metavar="NAME", nargs="+")
    p.add_argument("-f", "--force", action="store_true",
                   help="ignore names that are not in the store")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("compact", parents=[common], help="rewrite segments without dead data",
                       description="Rewrite each array's segments into one without deleted "
                                   "data and commit. The replaced files stay as long as a "
                                   "version that reads them is kept (the store's retention "
                                   "policy; see 'atlas log').")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--grace", metavar="SECONDS", type=float, default=None,
                   help="keep only versions younger than this (plus tagged ones and the "
                        "latest) and free what the others read (default: the store's "
                        "retention policy; 0 frees the replaced files now)")
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("verify", parents=[common], help="check every checksum",
                       description="Check the root, every catalog part and every segment and "
                                   "block against its checksum. Exit 1 when anything is damaged. Files no commit "
                                   "references (orphans) are listed, and removed by --repair.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--repair", action="store_true", help="remove orphan files")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("upgrade", parents=[common], help="convert a store to format version 2",
                       description="Rewrite a store of format version 1 in format version 2, "
                                   "crash-safely: the new files are written first, then one "
                                   "commit switches the store over; the old files are kept "
                                   "for --grace seconds of readers, deleted by a later compact. "
                                   "A store already in version 2 is left as it is.")
    p.add_argument("store", metavar="STORE")
    p.set_defaults(func=cmd_upgrade)


def cmd_create(args) -> int:
    import atlas

    check_new_store_folder(args.store)
    store = atlas.Atlas.create(args.store, codec=args.codec, shuffle=args.shuffle)
    shuffled = ", shuffled" if store.shuffle else ""
    log.info("created %s (codec %s%s)", store.location, args.codec, shuffled)
    emit(args, {"store": store.location, "codec": args.codec, "shuffle": store.shuffle,
                "format": store.format_version},
         f"created {store.location} (codec {args.codec}{shuffled})")
    return 0


def cmd_rm(args) -> int:
    store = open_store(args.store, writable=True)
    names = list(dict.fromkeys(args.names))
    missing = [n for n in names if not store.dataset_exists(n)]
    if missing and not args.force:
        listed = ", ".join(repr(n) for n in missing)
        raise CommandError(f"no dataset {listed} in {store.location}; nothing was removed "
                           "(use -f to ignore missing names)")
    removed = [n for n in names if n not in missing]
    for name in removed:
        store.delete_dataset(name)
    shown = ", ".join(removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5 else "")
    store.flush(f"atlas rm {shown}")
    log.info("removed %d datasets from %s: %s", len(removed), store.location, removed)
    text = f"removed {plural(len(removed), 'dataset')}"
    if removed:
        text += " (run 'atlas compact' to reclaim the space)"
    emit(args, {"removed": removed, "missing": missing}, text)
    return 0


def cmd_compact(args) -> int:
    if args.grace is not None and not 0 <= args.grace < float("inf"):  # nan fails too
        raise CommandError(f"--grace must be a number of seconds >= 0, got {args.grace}")
    store = open_store(args.store, writable=True)
    before = disk_usage(store.location)
    if args.grace is None:
        store.compact()
    else:
        store.compact(grace=args.grace)
    after = disk_usage(store.location)
    log.info("compacted %s: %s -> %s bytes", store.location, before["bytes_on_disk"],
             after["bytes_on_disk"])
    data = {"store": store.location,
            "before": {k: before[k] for k in ("segments", "retired", "bytes_on_disk")},
            "after": {k: after[k] for k in ("segments", "retired", "bytes_on_disk")}}

    def text() -> str:
        line = (f"compacted {store.location}: {before['segments']} -> "
                f"{plural(after['segments'], 'segment')}, "
                f"{human_bytes(before['bytes_on_disk'])} -> "
                f"{human_bytes(after['bytes_on_disk'])} on disk")
        if after["retired"]:
            line += (f"\n{plural(after['retired'], 'replaced file')} "
                     f"({human_bytes(after['retired_bytes'])}) kept for the earlier versions "
                     "that read them; they go when those versions expire (or --grace 0)")
        return line

    emit(args, data, text)
    return 0


def _render_verify(report, location: str, repair: bool) -> str:
    lines = [(f"checked {location}: root, {plural(report.parts, 'catalog part')}, "
              f"{plural(report.segments, 'segment')}, {plural(report.chunks, 'chunk')}")]
    if report.orphans:
        lines.append(f"orphan files (referenced by no commit): {len(report.orphans)}")
        lines += [f"  {key}" for key in report.orphans]
    if report.leftovers:
        lines.append(f"leftovers of crashed writers (uploads, spill files): "
                     f"{len(report.leftovers)}")
        lines += [f"  {what}" for what in report.leftovers]
    if repair:
        lines.append(f"removed {plural(len(report.removed), 'orphan file')}")
        lines += [f"  {key}" for key in report.removed]
    if report.problems:
        lines.append(f"problems: {len(report.problems)}")
        lines += [f"  {p}" for p in report.problems]
    else:
        lines.append("ok")
    return "\n".join(lines)


def cmd_verify(args) -> int:
    import atlas

    # not opened first: a root that does not read is one of the problems it reports
    with credentials_explained(args.store):
        report = atlas.Atlas.verify_store(args.store, repair=args.repair)
    for problem in report.problems:
        log.error("verify: %s", problem)
    data = {"store": report.location, "ok": not report.problems, "problems": report.problems,
            "orphans": report.orphans, "leftovers": report.leftovers,
            "removed": report.removed, "segments": report.segments, "parts": report.parts,
            "chunks": report.chunks}
    emit(args, data, lambda: _render_verify(report, report.location, args.repair))
    if report.problems:
        n = len(report.problems)
        raise CommandFailed(f"verify found {plural(n, 'problem')} in {report.location}")
    return 0


def cmd_upgrade(args) -> int:
    from atlas.core import upgrade

    result = upgrade(args.store)
    if result["upgraded"]:
        log.info("upgraded %s to format version 2 (generation %d)", args.store,
                 result["generation"])
        text = (f"upgraded {args.store} to format version 2: {plural(result['datasets'], 'dataset')}"
                f", {plural(result['segments'], 'segment')} (generation {result['generation']}); "
                f"{plural(result['retired'], 'version-1 file')} kept for older readers until a "
                "compact after the grace period")
    else:
        text = (f"{args.store} is in format version {result['format']} already; nothing to "
                "do")
    emit(args, {"store": args.store, **result}, text)
    return 0
