"""Catalog parts: immutable files holding catalog tables, one section per table.

A part is an ``atlas.format.container`` with magic ``ATLCAT02``, no payload, and one section per
table it changes (see ``atlas.format.tables`` for the kinds):

    ["datasets"]               datasets table
    ["schemas"]                schemas table
    ["array", A]               array table of the array name A
    ["attr", K]                attr table of the dataset attribute K
    ["array_attr", A, K]       attr table of the attribute K of array A
    ["names_bloom"]            with ["datasets"]: a Bloom filter of its names (atlas.format.bloom)

The commit's root lists its parts, oldest first; a table's content is the :func:`merge` of its
sections in every listed part. A part's footer also records the value format version.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from atlas.errors import CorruptionError
from atlas.format import bloom, values
from atlas.format.container import ContainerWriter, Footer, LockedFile, read_section
from atlas.format.tables import Table

MAGIC = b"ATLCAT02"
BLOOM = ("names_bloom",)
SECTION_KINDS = {"datasets": ("datasets", 0), "schemas": ("schemas", 0), "array": ("array", 1),
                 "attr": ("attr", 1), "array_attr": ("attr", 2)}


def table_kind(section_id: tuple) -> str:
    """The table kind stored under a section id; CorruptionError for an id that is not one."""
    found = SECTION_KINDS.get(section_id[0]) if section_id else None
    if found is None or len(section_id) != 1 + found[1] or not all(
            isinstance(n, str) and n for n in section_id[1:]):
        raise CorruptionError(f"catalog section {list(section_id)!r} is not a known table")
    return found[0]


def write_part(path: str, tables: Iterable[tuple[tuple, Table]], **extra: Any) -> LockedFile:
    """Write a part holding ``tables`` ((section id, table) pairs, consumed one at a time: a
    flush of a million datasets never holds every table at once) at ``path``; the returned
    file stays locked until released (after the commit that references it)."""
    out = LockedFile(path)
    try:
        out.write(MAGIC)
        writer = ContainerWriter(out.write)
        for section_id, table in tables:
            table_kind(section_id)
            writer.add(section_id, table.section_columns(), len(table))
            if section_id == ("datasets",):
                bits = bloom.build(list(table.columns["name"]))
                writer.add(BLOOM, [("bits", "u1", bits)], len(bits))
        writer.finish(kind="catalog", values=values.VERSION, **extra)
        out.truncate()
    except BaseException:
        out.release()
        raise
    return out


def check_footer(footer: Footer, where: str) -> None:
    if footer.extra.get("kind") != "catalog":
        raise CorruptionError(f"{where}: not a catalog part")
    if footer.extra.get("values") != values.VERSION:
        raise CorruptionError(f"{where}: value format {footer.extra.get('values')!r} not "
                              f"understood (expected {values.VERSION})")
    for section_id in footer.sections:
        if section_id == BLOOM:
            continue
        try:
            table_kind(section_id)
        except CorruptionError as err:
            raise CorruptionError(f"{where}: {err}") from None


def check_ids(section_id: tuple, key, columns: dict, root, where: str) -> None:
    """CorruptionError when a table row names an id the root's counters have not handed out
    yet: ids are never reused, and a reader trusts ``next_did`` to know which datasets have
    committed rows."""
    kind = table_kind(section_id)
    checks = [("key", key, root.next_slot if section_id[0] == "array_attr" else
               root.next_schema if kind == "schemas" else root.next_did)]
    if kind == "array":
        checks += [("slot", columns["slot"], root.next_slot),
                   ("schema", columns["schema"], root.next_schema)]
    elif kind == "attr":
        checks.append(("seq", columns["seq"], root.next_seq))
    for name, ids, limit in checks:
        top = int(np.max(ids)) if len(ids) else -1
        if top >= limit:
            raise CorruptionError(f"{where}: {kind} table {list(section_id)} holds {name} "
                                  f"{top}, not below the root's counter {limit}")


def check_values(table: Table, where: str) -> None:
    """CorruptionError when a value of an attribute table does not decode."""
    for tag, num, data in zip(table.columns["tag"].tolist(), table.columns["num"].tolist(),
                              table.columns["data"]):
        values.decode_stored(tag, num, data, where)


def read_table(footer: Footer, section_id: tuple, read, where: str) -> Table | None:
    """The table stored under ``section_id`` in a part, or None when the part has none."""
    ref = footer.sections.get(section_id)
    if ref is None:
        return None
    kind = table_kind(section_id)
    label = f"{where} {list(section_id)}"
    columns = read_section(ref, read(ref.offset, ref.stored), label)
    return Table.from_section(kind, columns, label)


def read_bloom(footer: Footer, read, where: str):
    """The names filter of a part holding a datasets table; None when the part has no datasets
    table, True when it has one but no filter (every name may be there)."""
    if ("datasets",) not in footer.sections:
        return None
    ref = footer.sections.get(BLOOM)
    if ref is None:
        return True
    return read_section(ref, read(ref.offset, ref.stored), f"{where} names filter")["bits"]
