"""Notebook views (``_repr_html_``) of ``Atlas`` and ``DatasetView``: plain HTML tables built
from the public API only. Big stores are summarised: the array table looks at the first
``SCAN_DATASETS`` datasets and the name list shows the first ``SHOW_NAMES``."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atlas.core._atlas import Atlas
    from atlas.core._dataset import DatasetView

SCAN_DATASETS = 1000
SHOW_NAMES = 20
_STYLE = "border-collapse:collapse;font-size:90%"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th style='text-align:left;padding:0 8px'>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:0 8px'>{_e(c)}</td>" for c in row)
                   + "</tr>" for row in rows)
    return f"<table style='{_STYLE}'><tr>{head}</tr>{body}</table>"


def _shape(shape: list[int]) -> str:
    return " x ".join(map(str, shape)) if shape else "scalar"


def atlas_html(store: Atlas) -> str:
    names = store.list_datasets()
    scanned = names[:SCAN_DATASETS]
    arrays: dict[str, dict] = {}
    for name in scanned:
        view = store.open_dataset(name)
        for array in view.list_arrays():
            meta = view.array_meta(array)
            entry = arrays.setdefault(array, {"datasets": 0, "dtypes": set(), "shapes": set(),
                                              "chunks": set(), "cells": 0})
            entry["datasets"] += 1
            entry["dtypes"].add(meta["dtype"])
            entry["shapes"].add(_shape(meta["shape"]))
            entry["chunks"].add(_shape(meta["chunk_shape"]))
            entry["cells"] += math.prod(meta["shape"])
    rows = [[array, e["datasets"], ", ".join(sorted(e["dtypes"])),
             ", ".join(sorted(e["shapes"])[:3]) + (" ..." if len(e["shapes"]) > 3 else ""),
             ", ".join(sorted(e["chunks"])[:3]), f"{e['cells']:,}"]
            for array, e in sorted(arrays.items())]
    scope = "" if len(names) <= SCAN_DATASETS else f" (in the first {SCAN_DATASETS} datasets)"
    shown = ", ".join(_e(n) for n in names[:SHOW_NAMES])
    more = f" ... and {len(names) - SHOW_NAMES} more" if len(names) > SHOW_NAMES else ""
    return (
        f"<div><b>atlas.Atlas</b> {_e(store.location)}<br>"
        f"codec {_e(store.codec)}, generation {store.generation}, "
        f"{len(names)} dataset{'s' if len(names) != 1 else ''}, {len(arrays)} array names"
        f"{_e(scope)}"
        f"<details open><summary>arrays{_e(scope)}</summary>"
        + _table(["array", "datasets", "dtype", "shape", "chunks", "cells"], rows)
        + f"</details><details><summary>datasets</summary>{shown}{_e(more)}</details></div>")


def _stats_text(stats: dict | None) -> str:
    if stats is None:
        return "not computed (unflushed writes)"
    return (f"nulls {stats['null_count']}/{stats['row_count']}, "
            f"min {stats['min']}, max {stats['max']}")


def dataset_html(view: DatasetView) -> str:
    rows = []
    for array in view.list_arrays():
        meta = view.array_meta(array)
        dims = ", ".join(f"{d}: {n}" for d, n in zip(meta["dimension_names"], meta["shape"]))
        rows.append([array, meta["dtype"], f"({dims})", _shape(meta["chunk_shape"]),
                     meta["fill_value"], _stats_text(view.array_stats(array))])
    attrs = [[k, v] for k, v in view.attributes().items()]
    return (
        f"<div><b>atlas.DatasetView</b> {_e(view.name)} of {_e(view.store.location)}"
        "<details open><summary>arrays</summary>"
        + _table(["array", "dtype", "dimensions", "chunks", "fill", "stats"], rows)
        + "</details><details open><summary>attributes</summary>"
        + _table(["key", "value"], attrs) + "</details></div>")
