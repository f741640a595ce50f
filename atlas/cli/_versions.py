"""Commands about versions: ``log`` (the history), ``tag`` and ``expire``."""

from __future__ import annotations

import argparse
import math

from atlas.cli._common import (
    CommandError,
    emit,
    open_store,
    plural,
    table,
    version_asked,
    version_options,
)
from atlas.cli._progress import human_bytes


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("log", parents=[common], help="list the versions of a store",
                       description="Every retained version, newest first: generation, time "
                                   "(UTC), datasets added/changed/deleted, tags and message.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("-n", "--max-count", metavar="N", type=int,
                   help="only the N newest versions")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("tag", parents=[common, version_options()],
                       help="name a version so it is never expired",
                       description="Tag the latest version (or the one --version/--at names) "
                                   "as NAME; with --delete remove the tag; without NAME list "
                                   "the tags.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("name", metavar="NAME", nargs="?")
    p.add_argument("--delete", action="store_true", help="remove tag NAME")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("expire", parents=[common], help="remove old versions",
                       description="Remove the versions the retention policy does not keep "
                                   "(tagged ones and the latest always stay), then the files "
                                   "only they read.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--older-than", metavar="SECONDS", type=float,
                   help="keep versions younger than this (default: the store's policy)")
    p.add_argument("--keep-last", metavar="N", type=int,
                   help="keep the N newest versions (default: the store's policy)")
    p.set_defaults(func=cmd_expire)


def cmd_log(args) -> int:
    if args.max_count is not None and args.max_count < 1:
        raise CommandError(f"--max-count must be >= 1, got {args.max_count}")
    store = open_store(args.store)
    versions = store.history()[: args.max_count]
    data = [{"version": v.generation, "commit": v.commit, "time": v.time,
             "message": v.message, "added": v.added, "changed": v.changed,
             "deleted": v.deleted, "tags": list(v.tags)} for v in versions]
    rows = [[str(v.generation), v.time.strftime("%Y-%m-%dT%H:%M:%SZ"), f"+{v.added}",
             f"~{v.changed}", f"-{v.deleted}", ",".join(v.tags), v.message or ""]
            for v in versions]
    emit(args, data, lambda: table(rows, ["version", "time", "added", "changed", "deleted",
                                          "tags", "message"]))
    return 0


def cmd_tag(args) -> int:
    if args.name is None:
        if args.delete or args.version_spec or args.at:
            raise CommandError("give the NAME of the tag to create or delete")
        tags = open_store(args.store).tags()
        emit(args, tags, lambda: "\n".join(f"{name}  {g}" for name, g in tags.items()))
        return 0
    store = open_store(args.store, writable=True)
    if args.delete:
        if args.version_spec or args.at:
            raise CommandError("--delete takes no --version or --at")
        store.delete_tag(args.name)
        emit(args, {"deleted": args.name}, f"deleted tag {args.name}")
        return 0
    generation = store.tag(args.name, version_asked(args))
    emit(args, {"tag": args.name, "version": generation},
         f"tagged version {generation} as {args.name}")
    return 0


def cmd_expire(args) -> int:
    if args.older_than is not None and not 0 <= args.older_than < math.inf:  # NaN too
        raise CommandError(f"--older-than must be a number of seconds >= 0, got "
                           f"{args.older_than}")
    if args.keep_last is not None and args.keep_last < 1:
        raise CommandError(f"--keep-last must be >= 1, got {args.keep_last}")
    store = open_store(args.store, writable=True)
    result = store.expire(older_than=args.older_than, keep_last=args.keep_last)
    emit(args, result, lambda: (
        f"removed {plural(result['versions_removed'], 'version')} and "
        f"{plural(result['files_removed'], 'file')} ({human_bytes(result['bytes_freed'])}); "
        f"{plural(len(result['versions_kept']), 'version')} kept"))
    return 0
