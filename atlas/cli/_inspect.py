"""Read-only commands: ``ls``, ``show`` (ncdump -h style), ``info`` (the whole store) and
``catalog`` (one row per dataset: attributes and per-array statistics)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from atlas.cli._common import (
    CommandFailed,
    emit,
    format_value,
    open_store,
    plural,
    table,
    version_options,
)
from atlas.cli._dates import as_dates, calendar_plan
from atlas.cli._progress import human_bytes

INTERNAL_PREFIX = "_pyatlas"  # bookkeeping attributes of the xarray layer, hidden in text output


def register(sub, common: argparse.ArgumentParser) -> None:
    versions = version_options()
    p = sub.add_parser("ls", parents=[common, versions], help="list the datasets of a store",
                       description="List the datasets of STORE in creation order.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("-l", "--long", action="store_true",
                   help="also show each dataset's arrays")
    p.add_argument("-w", "--where", metavar="EXPR",
                   help="only the datasets matching EXPR, an expression over the catalog's "
                        "columns, e.g. \"temp.max > 25 and platform == 'float12'\" "
                        "(see docs/query.md)")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", parents=[common, versions], help="describe one dataset (ncdump -h style)",
                       description="Dimensions, arrays (dtype, shape, chunking, fill), "
                                   "attributes and statistics of one dataset.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("info", parents=[common, versions], help="summarise a store",
                       description="Datasets, distinct arrays, codec, bytes on disk, segments "
                                   "and collection-wide statistics per array.")
    p.add_argument("store", metavar="STORE")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("catalog", parents=[common, versions], help="one row per dataset: attributes and "
                       "array statistics",
                       description="A table with one row per dataset (creation order): each "
                                   "attribute by its key, and for each array its dtype, shape, "
                                   "null and valid cell counts, min and max.")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--arrays", metavar="A,B", type=_names,
                   help="only these arrays' columns (default: every array)")
    p.add_argument("--attributes", metavar="K,L", type=_names,
                   help="only these attributes (default: every attribute)")
    p.add_argument("-w", "--where", metavar="EXPR", help="only the datasets matching EXPR")
    p.add_argument("--csv", action="store_true", help="print CSV instead of a text table")
    p.set_defaults(func=cmd_catalog)


def _names(text: str) -> list[str]:
    """``A,B`` as names; an empty item is a mistake worth saying."""
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


# -- ls -----------------------------------------------------------------------------------------

def cmd_ls(args) -> int:
    store = open_store(args.store, args=args)
    names = store.select(args.where) if args.where is not None else store.list_datasets()
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
    store = open_store(args.store, args=args)
    info = describe_dataset(store, args.name)
    emit(args, info, lambda: _render_show(info))
    return 0


# -- info ---------------------------------------------------------------------------------------

def collection_stats(store) -> dict[str, dict]:
    """Per array name: datasets holding it, dtypes, shapes, chunk shapes and statistics folded
    over those datasets (min/max are None where the datasets' values do not compare: arrays of
    one name holding dates in one dataset and numbers in another)."""
    arrays: dict[str, dict] = {}
    for array in sorted(store.list_arrays()):
        stats = store.array_stats(array)
        if stats is None:
            continue
        arrays[array] = {"datasets": stats["datasets"], "dtypes": stats["dtypes"],
                         "shapes": stats["shapes"], "chunk_shapes": stats["chunk_shapes"],
                         "cells": stats["row_count"], "nulls": stats["null_count"],
                         "min": stats["min"], "max": stats["max"],
                         "unflushed": stats["unflushed"]}
        calendar = getattr(stats["min"], "calendar", None)
        if calendar:
            arrays[array]["calendar"] = calendar
    return arrays


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
    if usage.get("linked"):
        head.append(["linked", f"{plural(usage['linked'], 'file')}, "
                               f"{human_bytes(usage['linked_bytes'])} (merged segments read "
                               "their blocks where they lie)"])
    if usage["retired"]:
        retired = (f"{plural(usage['retired'], 'file')}, {human_bytes(usage['retired_bytes'])} "
                   "(replaced, kept for the earlier versions that read them)")
        head.append(["retired", retired])
    if usage.get("version_records"):
        head.append(["versions", f"{plural(usage['version_records'], 'record')}, "
                                 f"{human_bytes(usage['version_bytes'])} (see 'atlas log')"])
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
    store = open_store(args.store, args=args)
    arrays = collection_stats(store)
    usage = store.usage()
    info = {"store": store.location, "datasets": len(store.list_datasets()), "arrays": arrays,
            "disk": usage}
    emit(args, info, lambda: _render_info(info))
    if usage["problems"]:
        for problem in usage["problems"]:
            print(f"atlas: {problem}", file=sys.stderr)
        raise CommandFailed(f"info found {plural(len(usage['problems']), 'damaged file')} in "
                            f"{store.location}: 'atlas verify' checks the whole store")
    return 0


# -- catalog ------------------------------------------------------------------------------------

def cmd_catalog(args) -> int:
    store = open_store(args.store, args=args)
    frame = store.catalog(arrays=args.arrays, attributes=args.attributes)
    if args.json or args.csv:  # (before --where picks rows: it may pick no missing one)
        frame = _integers_as_integers(store, frame)
    if args.where is not None:
        frame = frame.loc[store.select(args.where)]
    if args.json:
        records = [{"dataset": name, **row} for name, row in
                   zip(frame.index, frame.to_dict("records"))]
        emit(args, [{k: _json_cell(k, v) for k, v in r.items()} for r in records], "")
    elif args.csv:
        sys.stdout.write(frame.to_csv())
    else:
        rows = [[str(name)] + [_cell(v) for v in row]
                for name, row in zip(frame.index, frame.itertuples(index=False))]
        emit(args, None, lambda: table(rows, ["dataset", *map(str, frame.columns)]))
    return 0


def _integers_as_integers(store, frame):
    """``frame`` with the columns of integers that pandas holds as floats (some dataset lacks
    the value: NaN) as nullable integers, so that JSON and CSV print 1, not 1.0: integer
    attributes, and the min and max of integer arrays."""
    out = frame.copy(deep=False)
    for column in frame.columns:
        values = frame[column]
        if values.dtype.kind != "f" or not values.isna().any():
            continue
        array, _, stat = column.rpartition(".")
        if stat in ("min", "max") and f"{array}.dtype" in frame.columns:
            kinds = {str(d)[:3] for d in frame[f"{array}.dtype"].dropna()}
            whole = bool(kinds) and kinds <= {"int", "uin"}
        elif stat in ("nulls", "valid") and f"{array}.dtype" in frame.columns:
            whole = True
        else:
            typed = store.attributes_by_dataset(column).values()
            whole = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                        for v in typed)
        if whole:
            out[column] = values.astype("Int64")
    return out


def _json_cell(column: str, value: Any) -> Any:
    """A catalog value for JSON: missing as None, cell counts as integers (pandas holds them
    as floats in a column where some dataset lacks the array)."""
    if _missing(value):
        return None
    if column.endswith((".nulls", ".valid")) and isinstance(value, float):
        return int(value)
    return value


def _cell(value: Any) -> str:
    """A catalog value as table text: strings bare, missing values as '-'."""
    if _missing(value):
        return "-"
    if isinstance(value, str):
        return value
    if hasattr(value, "isoformat"):  # pandas and cftime timestamps
        return value.isoformat()
    return format_value(value)


def _missing(value: Any) -> bool:
    """NaN, NaT, None, NA: a dataset without that attribute or array (or unflushed stats)."""
    import pandas as pd

    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))
