"""Read-only commands: ``ls``, ``show`` (ncdump -h style) and ``info`` (the whole store)."""

from __future__ import annotations

import argparse
from typing import Any

from atlas.cli._common import disk_usage, emit, format_value, open_store, plural, table
from atlas.cli._dates import as_dates, calendar_plan
from atlas.cli._progress import human_bytes

INTERNAL_PREFIX = "_pyatlas"  # bookkeeping attributes of the xarray layer, hidden in text output


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ls", parents=[common], help="list the datasets of a store",
                       description="List the datasets of STORE in creation order.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("-l", "--long", action="store_true",
                   help="also show each dataset's arrays")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", parents=[common], help="describe one dataset (ncdump -h style)",
                       description="Dimensions, arrays (dtype, shape, chunking, fill), "
                                   "attributes and statistics of one dataset.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("info", parents=[common], help="summarise a store",
                       description="Datasets, distinct arrays, codec, bytes on disk, segments "
                                   "and collection-wide statistics per array.")
    p.add_argument("store", metavar="STORE")
    p.set_defaults(func=cmd_info)


# -- ls -----------------------------------------------------------------------------------------

def cmd_ls(args) -> int:
    store = open_store(args.store)
    names = store.list_datasets()
    if not args.long:
        emit(args, names, lambda: "\n".join(names))
        return 0
    listing = {name: store.open_dataset(name).list_arrays() for name in names}
    rows = [[name, str(len(arrays)), ", ".join(arrays)] for name, arrays in listing.items()]
    emit(args, listing, lambda: table(rows, ["dataset", "arrays", "names"]) if rows else "")
    return 0


# -- show ---------------------------------------------------------------------------------------

def describe_dataset(store, name: str) -> dict:
    """Everything ``show`` prints, as a JSON-shaped dict."""
    view = store.open_dataset(name)
    dims: dict[str, int] = {}
    conflicts: dict[str, list[int]] = {}
    variables: dict[str, Any] = {}
    for array in view.list_arrays():
        meta = view.array_meta(array)
        for dim, size in zip(meta["dimension_names"], meta["shape"]):
            if dims.setdefault(dim, size) != size:
                conflicts.setdefault(dim, [dims[dim]]).append(size)
        stats = view.array_stats(array)
        plan = calendar_plan(view, array)
        if plan is not None and stats is not None:  # cftime dates: shown as dates
            stats = dict(stats, min=as_dates(stats["min"], plan), max=as_dates(stats["max"],
                                                                                 plan))
        variables[array] = {
            "dtype": meta["dtype"],
            "dims": meta["dimension_names"],
            "shape": meta["shape"],
            "chunk_shape": meta["chunk_shape"],
            "fill_value": meta.get("fill_value"),
            "attributes": view.array_attributes(array),
            "stats": stats,
        }
        if plan is not None:
            variables[array]["calendar"] = plan["calendar"]
    out = {"name": name, "dimensions": dims, "variables": variables,
           "attributes": view.attributes()}
    if conflicts:
        out["dimension_conflicts"] = conflicts
    return out


def _render_show(info: dict) -> str:
    lines = [f"dataset {info['name']} {{", "dimensions:"]
    for dim, size in info["dimensions"].items():
        extra = ""
        if dim in info.get("dimension_conflicts", {}):
            others = sorted(set(info["dimension_conflicts"][dim]) - {size})
            extra = f" // also {', '.join(map(str, others))} in other arrays"
        lines.append(f"\t{dim} = {size} ;{extra}")
    lines.append("variables:")
    for array, var in info["variables"].items():
        dims = ", ".join(var["dims"])
        lines.append(f"\t{var['dtype']} {array}({dims}) ;")
        chunks = "x".join(map(str, var["chunk_shape"])) if var["shape"] else "scalar"
        fill = var["fill_value"]
        fill_text = "no fill value" if fill is None else f"fill {format_value(fill)}"
        calendar = f", dates in calendar {var['calendar']}" if "calendar" in var else ""
        lines.append(f"\t\t// chunks {chunks}, {fill_text}{calendar}")
        for key, value in var["attributes"].items():
            if not key.startswith(INTERNAL_PREFIX):
                lines.append(f"\t\t{array}:{key} = {format_value(value)} ;")
        stats = var["stats"]
        if stats is None:
            lines.append("\t\t// stats: not computed yet (unflushed writes)")
        else:
            lines.append(f"\t\t// stats: cells {stats['row_count']}, nulls {stats['null_count']}, "
                         f"min {format_value(stats['min'])}, max {format_value(stats['max'])}")
    attrs = {k: v for k, v in info["attributes"].items() if not k.startswith(INTERNAL_PREFIX)}
    if attrs:
        lines += ["", "// global attributes:"]
        lines += [f"\t\t:{key} = {format_value(value)} ;" for key, value in attrs.items()]
    lines.append("}")
    return "\n".join(lines)


def cmd_show(args) -> int:
    store = open_store(args.store)
    info = describe_dataset(store, args.name)
    emit(args, info, lambda: _render_show(info))
    return 0


# -- info ---------------------------------------------------------------------------------------

def _merge_stats(total: dict, stats: dict | None) -> None:
    if stats is None:
        total["unflushed"] += 1
        return
    total["cells"] += stats["row_count"]
    total["nulls"] += stats["null_count"]
    for key, pick in (("min", min), ("max", max)):
        value = stats[key]
        if value is not None:
            total[key] = value if total[key] is None else pick(total[key], value)


def collection_stats(store) -> dict[str, dict]:
    """Per array name: datasets holding it, dtypes, shapes, chunk shapes and merged stats
    (cftime dates shown as dates when every dataset uses one calendar)."""
    arrays: dict[str, dict] = {}
    plans: dict[str, list] = {}
    for name in store.list_datasets():
        view = store.open_dataset(name)
        for array in view.list_arrays():
            meta = view.array_meta(array)
            entry = arrays.setdefault(array, {
                "datasets": 0, "dtypes": [], "shapes": [], "chunk_shapes": [],
                "cells": 0, "nulls": 0, "min": None, "max": None, "unflushed": 0})
            entry["datasets"] += 1
            for key, value in (("dtypes", meta["dtype"]), ("shapes", meta["shape"]),
                               ("chunk_shapes", meta["chunk_shape"])):
                if value not in entry[key]:
                    entry[key].append(value)
            _merge_stats(entry, view.array_stats(array))
            plan = calendar_plan(view, array)
            if plan not in plans.setdefault(array, []):
                plans[array].append(plan)
    for array, entry in arrays.items():
        if len(plans[array]) == 1 and plans[array][0] is not None:
            plan = plans[array][0]
            entry["min"], entry["max"] = as_dates(entry["min"], plan), as_dates(entry["max"],
                                                                                 plan)
            entry["calendar"] = plan["calendar"]
    return dict(sorted(arrays.items()))


def _shape_text(shapes: list[list[int]]) -> str:
    if len(shapes) > 1:
        return f"{len(shapes)} shapes"
    return "x".join(map(str, shapes[0])) or "scalar"


def _render_info(info: dict) -> str:
    usage = info["disk"]
    names = list(info["arrays"])
    head = [
        ["store", info["store"]],
        ["format", f"version {usage['format']}"],
        ["codec", f"{usage['codec']} (level {usage['level']})"],
        ["generation", str(usage["generation"])],
        ["datasets", str(info["datasets"])],
        ["arrays", f"{len(names)}" + (f" ({', '.join(names)})" if names else "")],
        ["segments", (f"{plural(usage['segments'], 'file')}, "
                      f"{human_bytes(usage['segment_bytes'])}")],
        ["catalog", (f"{plural(usage['parts'], 'part')}, "
                     f"{human_bytes(usage['catalog_bytes'])}")],
        ["root", human_bytes(usage["root_bytes"])],
    ]
    if usage["retired"]:
        retired = (f"{plural(usage['retired'], 'file')}, {human_bytes(usage['retired_bytes'])} "
                   "(replaced by a merge, kept a while for older readers)")
        head.append(["retired", retired])
    head += [
        ["on disk", f"{human_bytes(usage['bytes_on_disk'])} ({usage['bytes_on_disk']} bytes)"],
    ]
    width = max(len(k) for k, _ in head)
    lines = [f"{k.ljust(width)}  {v}" for k, v in head]
    if names:
        rows = []
        for name, a in info["arrays"].items():
            seg = usage["per_array"].get(name, {"segments": 0, "bytes": 0})
            rows.append([name, str(a["datasets"]), ",".join(a["dtypes"]), _shape_text(a["shapes"]),
                         _shape_text(a["chunk_shapes"]), str(seg["segments"]),
                         human_bytes(seg["bytes"]), str(a["cells"]), str(a["nulls"]),
                         format_value(a["min"]), format_value(a["max"])])
        lines += ["", table(rows, ["array", "datasets", "dtype", "shape", "chunks", "segments",
                                   "bytes", "cells", "nulls", "min", "max"])]
    return "\n".join(lines)


def cmd_info(args) -> int:
    store = open_store(args.store)
    arrays = collection_stats(store)
    usage = disk_usage(store.location)
    info = {"store": store.location, "datasets": len(store.list_datasets()), "arrays": arrays,
            "disk": usage}
    emit(args, info, lambda: _render_info(info))
    return 0
