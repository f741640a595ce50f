"""Queries over the collection: ``catalog()``, ``select()`` and the collection summaries.

Everything here is built from the catalog tables as whole columns: one table per attribute key
and per array name, merged with what this handle has not flushed, joined on the live dataset
ids. Only the tables a query names are read, and no Python runs per dataset except to turn
stored strings (and values of no one type) into Python objects.
"""

from __future__ import annotations

import ast
import datetime as _dt
import math
import operator
import re
import unicodedata
import warnings
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from atlas._pools import worker_pool
from atlas.core._dataset import is_internal
from atlas.errors import QueryError
from atlas.format import values as value_format
from atlas.format.schema import Schema

if TYPE_CHECKING:
    import pandas as pd

    from atlas.core._atlas import Atlas

STATS = ("dtype", "shape", "nulls", "valid", "min", "max")
_I64 = np.int64
CF_MARKER = "_pyatlas_cf"  # the xarray layer's array attribute (atlas.xarray._mapping.CF_ATTR)


# -- columns --------------------------------------------------------------------------------------

def _rows(table, dids: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(positions in ``table``, found) of the rows of ``dids`` that are there and not dead;
    positions None when they are the table's rows in order (take those with ``table.take``).
    Read-only, and kept with the table for the next call with the same ``dids`` (a query
    looks a table up once to see whether it has rows, then to read them)."""
    cached = table.__dict__.get("_rows_of")
    if cached is not None and cached[0] is dids:
        return cached[1]
    if len(table) == len(dids) and np.array_equal(table.key, dids) and not table.dead.any():
        # every live dataset has a row (the usual table): no search over a million keys
        pos, found = None, np.ones(len(dids), bool)
    else:
        pos = table.find(dids) if len(table) else np.full(len(dids), -1, _I64)
        found = pos >= 0
        found[found] = ~table.dead[pos[found]]
        pos = np.where(found, pos, 0)
        pos.flags.writeable = False
    found.flags.writeable = False
    table.__dict__["_rows_of"] = (dids, (pos, found))
    return pos, found


def _live_rows(table, alive: np.ndarray) -> np.ndarray:
    """Positions of the rows of ``table`` (one per dataset id) of live datasets (``alive``: a
    flag per dataset id), not dead."""
    keys = table.key
    known = keys < len(alive)
    ok = ~np.asarray(table.dead, bool) & known
    ok[known] &= alive[keys[known]]
    return np.flatnonzero(ok)


def _str_dtype():
    """The dtype pandas gives a column of Python strings (``str`` from pandas 3 on), or None
    where that is ``object``."""
    import pandas as pd

    dtype = pd.Series(np.array(["x"], object)).dtype
    return dtype if isinstance(dtype, pd.StringDtype) else None


def attribute_column(store: "Atlas", key: str, dids: np.ndarray, frame: bool = False) -> Any:
    """The values of dataset attribute ``key`` for ``dids``, as one typed numpy column where
    the stored values share a type (missing values: NaN, NaT or None), else as objects.
    ``frame``: strings may come as the pandas array a DataFrame would make of them."""
    table = store._catalog.table(("attr", key)).view()
    pos, found = _rows(table, dids)
    if not len(table) or not found.any():
        return np.full(len(dids), None, object)
    everywhere = bool(found.all())
    tags = table.peek("tag", pos)
    kinds = set(np.flatnonzero(np.bincount(tags if everywhere else tags[found])).tolist())
    if kinds == {value_format.STRING} and frame:
        texts = _arrow_texts(table, pos, found)
        if texts is not None:
            return texts
    # numbers live in num, strings, bytes and structured values in data
    data_only = kinds <= {value_format.STRING, value_format.BYTES, value_format.STRUCT}
    nums = np.zeros(len(dids), _I64) if data_only else table.take("num", pos)  # changed below
    if kinds == {value_format.INT64} and everywhere:
        return nums
    # missing values (NaN) and floats need a float column, unless it would round an integer:
    # then the values come as Python ints below, as array statistics do (see _extremes)
    if kinds <= {value_format.INT64, value_format.FLOAT64} and _exact_as_floats(
            nums[found & (tags == value_format.INT64)]):
        out = np.where(tags == value_format.FLOAT64, nums.view(np.float64), nums.astype(float))
        out[~found] = np.nan
        return out
    if kinds == {value_format.TIMESTAMP}:
        nums[~found] = np.iinfo(np.int64).min
        return nums.view("M8[ns]")
    if kinds == {value_format.BOOL} and everywhere:
        return nums != 0
    numpy_tags = {t for t in kinds if t >= value_format.NUMPY_BASE}
    if len(kinds) == 1 and numpy_tags:
        dtype = value_format._NUMPY_OF_TAG[kinds.pop()]
        if dtype.kind == "f":
            out = nums.view(np.float64).astype(dtype)
            out[~found] = np.nan
            return out
        if everywhere:
            return (nums.view(np.uint64) if dtype == np.uint64 else nums).astype(dtype)
    data = table.take("data", pos)
    if kinds == {value_format.STRING}:
        texts = _decode_texts(data if everywhere else data[found])
        if texts is not None:
            if everywhere:
                return texts
            out = np.full(len(dids), None, object)
            out[found] = texts
            return out
    out = np.full(len(dids), None, object)
    where = f"{store.location}: attribute {key!r}"
    for i in np.flatnonzero(found).tolist():  # strings and values of no one type
        out[i] = value_format.decode_stored(int(tags[i]), int(nums[i]), data[i], where)
    return out


def _arrow_texts(table, pos, found: np.ndarray) -> Any:
    """A string attribute as the pandas ``str`` array a DataFrame would make of its values,
    built on the stored bytes as they are (no Python string per value), where pandas keeps
    strings in Arrow and the column is one not decoded yet; else None."""
    dtype = _str_dtype()
    if dtype is None or dtype.storage != "pyarrow":
        return None
    blobs = table.blobs("data")
    if blobs is None:
        return None
    import pandas as pd
    import pyarrow as pa

    ends, blob = blobs
    offsets = np.zeros(len(ends) + 1, np.int64)
    offsets[1:] = ends
    texts = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets),
                                             pa.py_buffer(blob))
    try:
        texts.validate(full=True)  # UTF-8 (else the values are decoded one by one, and fail)
    except pa.ArrowInvalid:
        return None
    if pos is not None or not found.all():
        at = np.arange(len(found)) if pos is None else pos
        texts = texts.take(pa.array(at, mask=~found))
    return pd.array(texts, dtype=dtype)


def _decode_texts(data: np.ndarray) -> np.ndarray | None:
    """UTF-8 byte strings as one object array of str, decoded in one call rather than one per
    value; None when a value holds a NUL (the separator), which the caller decodes one by one."""
    joined = b"\x00".join(data.tolist())
    if joined.count(b"\x00") != max(len(data) - 1, 0):
        return None
    out = np.empty(len(data), object)
    if len(data):
        try:
            out[:] = joined.decode("utf-8").split("\x00")
        except UnicodeDecodeError:
            return None  # decoded one by one, where the damaged value is named
    return out


def array_columns(store: "Atlas", array: str, dids: np.ndarray,
                  which: Sequence[str] = STATS, frame: bool = False) -> dict[str, Any]:
    """``<array>.<stat>`` columns for ``dids``: dtype and shape of each dataset's array, its
    null and valid cell counts and its min and max (NaN/NaT/None where the dataset has no such
    array, or its statistics are not flushed yet). ``frame``: the dtype column may come as the
    pandas array a DataFrame would make of it."""
    catalog = store._catalog
    layered = catalog.table(("array", array))
    table = layered.view()
    n = len(dids)
    pos, found = _rows(table, dids)
    schemas = catalog.schemas()
    schema_ids = table.take("schema", pos) if len(table) else np.zeros(n, _I64)
    picked = schema_ids if found.all() else schema_ids[found]
    if len(picked) and picked.min() == picked.max():  # one schema (the usual case)
        distinct = [int(picked[0])]
    else:
        distinct = [int(s) for s in dict.fromkeys(picked.tolist())]
    for sid in distinct:
        catalog.schema(sid)  # CorruptionError for an id the catalog has no schema of
    # rows still in this handle's log have no statistics yet
    log = layered.log
    if len(log):
        unflushed = np.isin(dids, log.key_array()) & found
    else:
        unflushed = np.zeros(n, bool)
    stated = found & ~unflushed
    valid: list = []  # whether each row has a valid cell, read once for both min and max

    def has_valid() -> np.ndarray:
        if not valid:
            valid.append(table.peek("valid", pos) > 0)
        return valid[0]

    out: dict[str, Any] = {}
    for stat in which:
        key = f"{array}.{stat}"
        if stat in ("dtype", "shape", "chunk_shape"):
            values = [schemas[sid].dtype.name if stat == "dtype" else
                      getattr(schemas[sid], stat) for sid in distinct]
            one = len(distinct) == 1 and found.all()
            str_dtype = _str_dtype() if frame and stat == "dtype" else None
            if str_dtype is not None and one and str_dtype.storage == "pyarrow":
                out[key] = _repeated_text(values[0], n, str_dtype)
                continue
            if str_dtype is not None:  # a pandas str array from a few strings: no inference
                uniques = list(dict.fromkeys(values))
                codes = np.full(n, -1, np.intp)
                for sid, value in zip(distinct, values):
                    codes[found & (schema_ids == sid)] = uniques.index(value)
                out[key] = pd_array(uniques, str_dtype).take(codes, allow_fill=True)
                continue
            col = np.empty(n, object)
            col.fill(None)
            for sid, value in zip(distinct, values):
                if one:
                    col.fill(value)  # one value for every row: no list of a million items
                    break
                cell = np.empty(1, object)
                cell[0] = value  # a tuple (a shape) stays one value, not a row of numbers
                col[found & (schema_ids == sid)] = cell
            out[key] = col
        elif stat in ("nulls", "valid"):
            counts = table.take(stat, pos) if len(table) else np.zeros(n, _I64)
            if stated.all():  # every count known: int64 as stored, no round trip via float
                out[key] = counts
                continue
            counts = counts.astype(np.float64)
            counts[~stated] = np.nan
            out[key] = counts
        else:
            out[key] = _extremes(table, pos, n, has_valid, stated, schema_ids, distinct,
                                 schemas, stat)
    if any(s in ("min", "max") for s in which):
        _decode_cftime(store, array, table, pos, stated, out)
    return out


def _repeated_text(text: str, n: int, dtype) -> Any:
    """A pandas str array (Arrow storage) of ``n`` times ``text``, built on one buffer."""
    import pandas as pd
    import pyarrow as pa

    data = text.encode("utf-8")
    offsets = np.arange(n + 1, dtype=np.int64) * len(data)
    return pd.array(pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets),
                                                     pa.py_buffer(data * n)), dtype=dtype)


def pd_array(values: list, dtype) -> Any:
    import pandas as pd

    return pd.array(values, dtype=dtype)


FLOAT_EXACT = 2**53  # integers up to this size are exact as float64


def _exact_as_floats(ints: np.ndarray) -> bool:
    """Whether every value of the integer column ``ints`` is exact as a float64."""
    return not len(ints) or max(-int(ints.min()), int(ints.max())) <= FLOAT_EXACT


def _extremes(table, pos, n: int, has_valid, stated, schema_ids, distinct,
              schemas: list[Schema], stat: str) -> np.ndarray:
    """min or max as one column: typed when every schema involved has one kind of values.
    ``has_valid()``: whether each row has a valid cell."""
    if not len(table):
        return np.full(n, np.nan)
    kinds = {schemas[s].dtype.kind for s in distinct}
    bits = table.take(stat, pos)  # this call's own array: changed in place below
    # a row without a valid cell stores 0 bits (docs/format.md): the valid counts are read
    # only when some row has 0 bits (a minimum of exactly 0, or no valid cell)
    zero = bits == 0
    have = stated & (has_valid() | ~zero) if zero.any() else stated
    if kinds == {"float"}:
        out = bits.view(np.float64)
        out[~have] = np.nan
        return out
    floats = np.isin(schema_ids, [s for s in distinct if schemas[s].dtype.kind == "float"])
    if kinds == {"float", "int"} and _exact_as_floats(bits[have & ~floats]):
        out = np.where(floats, bits.view(np.float64), bits.astype(np.float64))
        out[~have] = np.nan
        return out  # (else the ints a float would round: Python ints, row by row below)
    if kinds == {"int"} or kinds == {"uint"}:
        values = bits.view(np.uint64) if kinds == {"uint"} else bits
        if have.all():
            return values
        if _exact_as_floats(values[have]):
            out = values.astype(np.float64)  # missing values as NaN, as pandas has them
            out[~have] = np.nan
            return out
        out = np.full(n, None, object)  # values a float would round: Python ints
        out[have] = values[have].tolist()
        return out
    if kinds == {"timestamp"}:
        bits[~have] = np.iinfo(np.int64).min
        return bits.view("M8[ns]")
    out = np.full(n, None, object)
    texts = table.take("s" + stat, pos)
    for i in np.flatnonzero(have).tolist():
        schema = schemas[int(schema_ids[i])]
        kind = schema.dtype.kind
        if kind == "string":
            out[i] = texts[i]
        elif kind == "float":
            out[i] = float(np.int64(bits[i]).view(np.float64))
        elif kind == "uint":
            out[i] = int(np.int64(bits[i]).view(np.uint64))
        elif kind == "timestamp":
            out[i] = np.datetime64(int(bits[i]), "ns")
        else:
            out[i] = int(bits[i])
    return out


def _decode_cftime(store: "Atlas", array: str, table, pos, stated, out) -> None:
    """min/max of arrays the xarray layer stored as cftime dates, as those dates."""
    marker_table = store._catalog.table(("array_attr", array, CF_MARKER)).view()
    if not len(marker_table) or not len(table):
        return
    slots = table.take("slot", pos)
    mpos, mfound = _rows(marker_table, slots)
    rows = np.flatnonzero(mfound & stated)
    if not len(rows):
        return
    if mpos is None:
        mpos = np.arange(len(slots))
    from atlas.xarray._cf import decode_cftime
    from atlas.xarray._encoding import marker as marker_doc

    cols = marker_table.columns
    for stat in ("min", "max"):
        key = f"{array}.{stat}"
        if key not in out:
            continue
        dates = {}
        for i in rows.tolist():
            j = int(mpos[i])
            plan = marker_doc(value_format.decode(int(cols["tag"][j]), int(cols["num"][j]),
                                                  cols["data"][j])).get("decode")
            value = out[key][i]
            if isinstance(plan, dict) and plan.get("kind") == "cftime" and value is not None \
                    and not (isinstance(value, float) and math.isnan(value)):
                dates[i] = decode_cftime(np.asarray(int(value)), plan)[()]
        if dates:  # the column stays typed unless some dataset's values are cftime dates
            column = out[key].astype(object)
            for i, date in dates.items():
                column[i] = date
            out[key] = column


def catalog(store: "Atlas", arrays: Sequence[str] | None = None,
            attributes: Sequence[str] | None = None,
            columns: Sequence[str] | None = None) -> "pd.DataFrame":
    import pandas as pd

    cat = store._catalog
    dids = cat.live_dids()
    out: dict[str, Any] = {}
    if columns is not None:
        if arrays is not None or attributes is not None:
            raise TypeError("catalog() takes columns, or arrays and attributes, not both")
        wanted = list(dict.fromkeys(_strings(columns, "columns")))
        by_array, keys = columns_of(store, wanted, dids)
        _check_attributes(store, keys, "catalog(columns=...)", dids)
        _refuse_clashes(store, by_array, None, dids, "catalog(columns=...)")
    else:
        if attributes is None:
            attributes = [key for key in _live_keys(store, dids) if not is_internal(key)]
        if arrays is None:
            arrays = cat.array_names()
        keys = _strings(attributes, "attributes")
        by_array = {array: list(STATS) for array in _strings(arrays, "arrays")}
        _check_attributes(store, keys, "catalog(attributes=...)", dids)
        _check_arrays(store, list(by_array), "catalog(arrays=...)")
        _refuse_clashes(store, by_array, keys, dids, "catalog()")
    _prefetch(store, [*keys, *(f"{array}.{stat}" for array, stats in by_array.items()
                               for stat in stats)])
    for key in keys:
        out[key] = attribute_column(store, key, dids, frame=True)
    for array, stats in by_array.items():
        out.update(array_columns(store, array, dids, stats, frame=True))
    if columns is not None:
        out = {name: out[name] for name in wanted}
    # the columns are new arrays of this call: no copy, and no consolidation into 2-D blocks
    # (a copy of every column of the same dtype)
    return pd.DataFrame(out, index=_name_index(cat, len(dids)), copy=False)


def _name_index(cat, n: int) -> "pd.Index":
    """The catalog's index: the live names in creation order. Where pandas keeps strings in
    Arrow, it is built on the stored names as they are (no Python string per name, like an
    index read from Parquet); else, or when the handle knows its names already, from them."""
    import pandas as pd

    dtype = _str_dtype()
    stored = cat.joined_names() if dtype is not None and dtype.storage == "pyarrow" else None
    if stored is not None:
        import pyarrow as pa
        import pyarrow.compute as pc

        joined, rows, live = stored
        whole = pa.LargeStringArray.from_buffers(
            1, pa.py_buffer(np.array([0, len(joined)], np.int64)), pa.py_buffer(joined))
        try:
            whole.validate(full=True)  # UTF-8 (else decoded one by one below, and refused)
        except pa.ArrowInvalid:
            whole = None
        if whole is not None and rows:
            texts = pc.split_pattern(whole, "\x00").flatten()
            if len(texts) == rows:  # else damaged: the names decoded below say how
                if live is not None:
                    texts = texts.take(pa.array(live))
                return pd.Index(pd.array(texts, dtype=dtype), name="dataset", copy=False)
    names = np.empty(n, object)
    names[:] = cat.names()
    if dtype is not None:  # the same dtype whichever way the names came
        return pd.Index(pd.array(names, dtype=dtype), name="dataset", copy=False)
    return pd.Index(names, name="dataset", dtype=object, copy=False)


def _has_live(cat, section_id: tuple, dids: np.ndarray) -> bool:
    """Whether some dataset of ``dids`` has a row (not dead) in the table ``section_id``."""
    return bool(_rows(cat.table(section_id).view(), dids)[1].any())


def _live_keys(store: "Atlas", dids: np.ndarray) -> list[str]:
    """The attribute keys some live dataset (of ``dids``) has: a key whose datasets were all
    deleted, or lost it, is no column (as after ``compact()``, which drops its table)."""
    cat = store._catalog
    return [sid[1] for sid in cat.section_ids("attr")
            if _has_live(cat, sid, dids)]


def _check_attributes(store: "Atlas", keys: list[str], label: str, dids: np.ndarray) -> None:
    """QueryError naming the first of ``keys`` that no live dataset has as an attribute (nor
    names a statistic of an array some dataset has)."""
    cat = store._catalog
    stored = {sid[1] for sid in cat.section_ids("attr")}
    for key in keys:
        if key in stored and _has_live(cat, ("attr", key), dids):
            continue
        array, _, stat = key.rpartition(".")
        is_array = bool(array) and array in cat.array_names()
        if is_array and stat in STATS:  # (asked for as an attribute)
            raise QueryError(f"{label}: no dataset has an attribute {key!r}, the {stat} of "
                             f"array {array!r}: pick it with columns=[{key!r}] or "
                             f"arrays=[{array!r}]")
        if is_array:
            raise QueryError(f"{label}: no column {key!r}: array {array!r} has no statistic "
                             f"{stat!r} (its statistics are {', '.join(STATS)}), and no "
                             f"dataset has an attribute {key!r}")
        also = f" nor an array {array!r}" if array else ""
        raise QueryError(f"{label}: no column {key!r}: no dataset has an attribute "
                         f"{key!r}{also}; columns are attribute keys and "
                         f"<array>.{{{','.join(STATS)}}}")


def _check_arrays(store: "Atlas", arrays: list[str], label: str) -> None:
    """QueryError naming the first of ``arrays`` that no live dataset has (a typo would
    otherwise give columns of nothing but missing values)."""
    known = store._catalog.array_names()
    for array in arrays:
        if array not in known:
            shown = ", ".join(map(repr, known[:10])) + (", ..." if len(known) > 10 else "")
            raise QueryError(f"{label}: no dataset has an array {array!r}; arrays are "
                             f"{shown or 'none'}")


def _refuse_clashes(store: "Atlas", by_array: dict[str, list[str]], keys: list[str] | None,
                    dids: np.ndarray, label: str) -> None:
    """QueryError where a statistic column picked (``temp.max``) is also the key of an
    attribute some live dataset has (of ``keys``; None: of any key): one name cannot hold both
    columns, and neither may silently hide the other."""
    cat = store._catalog
    attributes = {sid[1] for sid in cat.section_ids("attr")}
    if keys is not None:
        attributes &= set(keys)
    for array, stats in by_array.items():
        for stat in stats:
            name = f"{array}.{stat}"
            if name in attributes and _has_live(cat, ("attr", name), dids):
                raise QueryError(
                    f"{label}: {name!r} is both an attribute key and the {stat} of array "
                    f"{array!r}; read the attribute with catalog(attributes=[{name!r}], "
                    f"arrays=[]) or attributes_by_dataset({name!r})")


def _strings(items: Any, what: str) -> list[str]:
    if isinstance(items, str):
        return [items]
    try:
        items = list(items)
    except TypeError:
        raise TypeError(f"{what} must be a list of names (str), got {type(items).__name__} "
                        f"{items!r}") from None
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{what} must be names (str), got {type(item).__name__} {item!r}")
    return items


# -- select -----------------------------------------------------------------------------------

_COMPARE = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
            ast.GtE: ">=", ast.In: "in", ast.NotIn: "not in"}


MAX_DEPTH = 200  # nodes an expression nests at most (evaluating walks it recursively)


def _parse(where: str) -> tuple[ast.AST, dict[str, str]]:
    """The expression's syntax tree; `back quoted` names become placeholders."""
    if not isinstance(where, str):
        raise TypeError(f"where must be an expression (str) or a callable, got "
                        f"{type(where).__name__}")
    text, quoted = _quote_names(where)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        where_text = "" if not err.offset else f" at column {err.offset}"
        raise QueryError(f"cannot parse {_shown(where)}: {err.msg}{where_text}") from None
    except (RecursionError, MemoryError):  # (the parser's stack: "not not not ...")
        tree = None
    if tree is None or _depth(tree) > MAX_DEPTH:
        raise QueryError(f"cannot parse {_shown(where)}: it nests more than {MAX_DEPTH} "
                         "levels deep")
    return tree, quoted


def _quote_names(where: str) -> tuple[str, dict[str, str]]:
    """``where`` with each `back quoted` name outside string literals replaced by a
    placeholder (spaced, so that it never runs into the text beside it; named so that it is
    no name of the expression), and the names."""
    quoted: dict[str, str] = {}
    stem = "_atlas_q"
    while stem in where:
        stem += "_"
    out, i, n = [], 0, len(where)
    bare: list[str] = []  # the characters outside literals and quoted names
    while i < n:
        char = where[i]
        if char in "'\"":  # a string literal, copied through its closing quote(s)
            close = where[i:i + 3] if where[i:i + 3] in ("'''", '"""') else char
            j = i + len(close)
            while j < n and where[j:j + len(close)] != close:
                j += 2 if where[j] == "\\" else 1
            out.append(where[i:j + len(close)])
            i = j + len(close)
        elif char == "`":
            j = where.find("`", i + 1)
            if j < 0:
                raise QueryError(f"unbalanced ` in {_shown(where)}")
            placeholder = f"{stem}{len(quoted)}"
            quoted[placeholder] = where[i + 1:j]
            out.append(f" {placeholder} ")
            i = j + 1
        else:
            out.append(char)
            bare.append(char)
            i += 1
        if len(bare) < len(out):  # a literal or a quoted name: no name to judge there
            bare.append(" ")
    _refuse_normalised_names("".join(bare), where)
    return "".join(out), quoted


def _refuse_normalised_names(bare: str, where: str) -> None:
    """QueryError for a name outside quotes (``bare``: the expression without its literals
    and quoted names) that Python's parser reads in another form (NFKC: 'µ' as 'μ', 'ﬁle' as
    'file', 'e' and a combining accent as 'é'): another column, or none."""
    if bare.isascii():
        return
    # words: runs of anything but spaces and ASCII punctuation ('_' included), so that a
    # combining accent stays with the letter before it
    for word in re.findall(r"[^\s!-/:-@\[-^`{-~]+", bare):
        normal = unicodedata.normalize("NFKC", word)
        if normal != word:
            # (the two forms of an accented letter look alike: escaped where one combines)
            show = ascii if any(unicodedata.combining(c) for c in word) else repr
            raise QueryError(f"cannot parse {_shown(where)}: the name {show(word)} reads as "
                             f"{show(normal)} unquoted; write it in back quotes (`{word}`)")


def _shown(where: str, most: int = 200) -> str:
    """``where`` as error messages show it (a list of 10^5 values is not repeated whole)."""
    text = repr(where)
    return text if len(text) <= most else f"{text[:most]}... ({len(where)} characters)"


def _depth(tree: ast.AST) -> int:
    """How deep ``tree`` nests (without recursion: a deep tree is what is measured)."""
    deepest, todo = 0, [(tree, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _column_name(node: ast.AST, quoted: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return quoted.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _column_name(node.value, quoted)
        return None if base is None else f"{base}.{quoted.get(node.attr, node.attr)}"
    return None


def _names_in(tree: ast.AST, quoted: dict[str, str]) -> list[str]:
    found: list[str] = []

    def walk(node):
        name = _column_name(node, quoted)
        if name is not None:
            found.append(name)
            return
        for child in ast.iter_child_nodes(node):
            walk(child)

    walk(tree)
    return list(dict.fromkeys(found))


def _literal(node: ast.AST, where: str) -> Any:
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError):
        raise QueryError(f"{where}: expected a column name or a literal, got "
                         f"{ast.unparse(node)!r}") from None
    items = value if isinstance(value, (list, tuple, set)) else [value]
    for item in items:
        if not isinstance(item, _LITERALS):  # None, complex, dicts, sets, ...: no column holds
            raise QueryError(f"{where}: literals are numbers, text, True/False and lists of "
                             f"them; got {ast.unparse(node)!r}")
    return value


_LITERALS = (bool, int, float, str, bytes)


def _evaluate(node: ast.AST, frame: dict[str, "pd.Series"], quoted: dict, where: str) -> Any:
    """The mask (or value) of expression ``node`` over ``frame``, the named columns as pandas
    Series of one length."""
    if isinstance(node, ast.BoolOp):
        parts = [_as_mask(_evaluate(v, frame, quoted, where), where) for v in node.values]
        out = parts[0]
        for part in parts[1:]:
            out = out & part if isinstance(node.op, ast.And) else out | part
        return out
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return ~_as_mask(_evaluate(node.operand, frame, quoted, where), where)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, frame, quoted, where)
        out = None
        for op, right_node in zip(node.ops, node.comparators):
            right = _evaluate(right_node, frame, quoted, where)
            symbol = _COMPARE.get(type(op))
            if symbol is None:
                raise QueryError(f"{where}: comparison {type(op).__name__} is not supported")
            step = _compare(left, symbol, right, where)
            out = step if out is None else out & step
            left = right
        return out
    name = _column_name(node, quoted)
    if name is not None:
        if name not in frame:
            raise QueryError(f"{where}: no column {name!r}; columns are attribute keys and "
                             f"<array>.{{{','.join(STATS)}}}")
        return frame[name]
    return _literal(node, where)


def _as_mask(value: Any, where: str) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.dtype == bool:
        return value
    raise QueryError(f"{where}: and/or/not need conditions, got {value!r}")


def _compare(left: Any, symbol: str, right: Any, where: str) -> np.ndarray:
    import pandas as pd

    if any(_holds_text(side) for side in (left, right)):  # (a pass over an object column)
        left, right = (_uniform_times(side, where) for side in (left, right))
    if symbol in ("in", "not in"):
        if not isinstance(left, pd.Series) or not isinstance(right, (list, tuple, set)):
            raise QueryError(f"{where}: use `column in [values]`")
        # (a timestamp beyond the column's range, or between its ticks, equals none of them)
        right = [item for item in (_as_time(left, item, where) for item in right)
                 if not isinstance(item, (_Beyond, _Between))]
        _refuse_other_kind(left, right, where)
        mask = _numbers_in(left, right)
        if mask is None:
            mask = left.isin(list(right)).to_numpy(bool)
        return ~mask & ~left.isna().to_numpy() if symbol == "not in" else mask
    series, other = (left, right) if isinstance(left, pd.Series) else (right, left)
    if not isinstance(series, pd.Series):
        raise QueryError(f"{where}: a comparison needs a column on one side")
    if isinstance(other, (list, set)):  # pandas would compare it row by row, by position
        raise QueryError(f"{where}: {symbol} compares with one value, got {other!r}; use "
                         f"'in [...]' to compare with a list")
    other = _as_time(series, other, where)
    _refuse_other_kind(series, [other], where)
    if isinstance(left, pd.Series) is False:  # literal on the left: mirror the operator
        symbol = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(symbol, symbol)
    if isinstance(other, _Beyond):  # every value on one side of it
        return np.full(len(series), _one_side(symbol, other.later)) & ~series.isna().to_numpy()
    if isinstance(other, _Between):  # equal to none; below it is up to its floor
        values = series.to_numpy()
        if symbol in ("==", "!="):
            return np.full(len(values), symbol == "!=") & ~np.isnat(values)
        return values <= other.floor if symbol in ("<", "<=") else values >= other.ceil
    fast = _compare_numbers(series, symbol, other)
    if fast is not None:
        return fast
    # a missing value (None, NaN, NaT) on either side never satisfies a comparison, != included
    # (pandas says NaN != x is True): only the rows with values are compared (an integer column
    # beyond 2**53 holds None where missing, and 1 < None raises)
    missing = series.isna().to_numpy()
    if isinstance(other, pd.Series):
        missing = missing | other.isna().to_numpy()
    if missing.any():
        series = series[~missing]
        other = other[~missing] if isinstance(other, pd.Series) else other
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                result = {"==": series.__eq__, "!=": series.__ne__, "<": series.__lt__,
                          "<=": series.__le__, ">": series.__gt__,
                          ">=": series.__ge__}[symbol](other)
        except OverflowError:  # a number beyond int64 or float64: Python compares it exactly
            values = other.tolist() if isinstance(other, pd.Series) else [other] * len(series)
            result = [_PYTHON_OPS[symbol](_plain(a), _plain(b))
                      for a, b in zip(series.tolist(), values)]
    except TypeError as err:
        given = (f"column {other.name!r} ({other.dtype})" if isinstance(other, pd.Series)
                 else repr(other))
        raise QueryError(f"{where}: cannot compare column {series.name!r} ({series.dtype}) "
                         f"with {given}: {err}") from None
    out = np.zeros(len(missing), bool)
    out[~missing] = pd.Series(result).fillna(False).to_numpy(bool)
    return out


def _holds_text(side: Any) -> bool:
    """Whether a side of a comparison is text, or a list holding some."""
    return isinstance(side, str) or isinstance(side, (list, tuple, set)) and any(
        isinstance(item, str) for item in side)


def _uniform_times(side: Any, where: str) -> Any:
    """A column of times held as objects (Python dates, or timestamps of different units
    across datasets) as datetime64 in the finest unit that holds every value exactly, so
    that text compares with it as with any timestamp column; anything else as it is."""
    import pandas as pd

    if not (isinstance(side, pd.Series) and side.dtype == object
            and _column_kind(side) == "timestamps"):
        return side
    counts: list[int | None] = []
    for value in side.tolist():
        if value is None or (not isinstance(value, (_dt.date, np.datetime64))
                             and pd.isna(value)):
            counts.append(None)
            continue
        if isinstance(value, pd.Timestamp):
            value = value.tz_convert(None) if value.tzinfo else value
            value = value.to_datetime64()
        elif isinstance(value, _dt.datetime):
            value = np.datetime64(value.replace(tzinfo=None) - (value.utcoffset() or
                                                                _dt.timedelta()), "us")
        elif isinstance(value, _dt.date):
            value = np.datetime64(value, "D")
        unit = np.datetime_data(value.dtype)[0]
        if np.isnat(value):
            counts.append(None)
        elif unit not in _ATTOSECONDS:  # a unit of no fixed length (months): as it is
            return side
        else:
            counts.append(int(value.astype(np.int64)) * _ATTOSECONDS[unit])
    present = [c for c in counts if c is not None]
    for unit, tick in sorted(_ATTOSECONDS.items(), key=lambda item: item[1]):
        if all(c % tick == 0 and _INT64.min < c // tick <= _INT64.max for c in present):
            values = np.array([_INT64.min if c is None else c // tick for c in counts],
                              np.int64).view(f"M8[{unit}]")
            return pd.Series(values, index=side.index, name=side.name)
    raise QueryError(f"{where}: column {side.name!r} holds timestamps that no one unit of "
                     "datetime64 holds exactly (nanoseconds and years past 2262)")


class _Beyond:
    """A timestamp literal before (``later`` False) or after every value its column can
    hold."""

    def __init__(self, later: bool):
        self.later = later


class _Between:
    """A timestamp literal strictly between two ticks of its column's unit (finer than the
    column holds): it equals no value; ``floor`` and ``ceil`` are those ticks."""

    def __init__(self, floor: np.datetime64, ceil: np.datetime64):
        self.floor, self.ceil = floor, ceil


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (numpy compares it with an int beyond int64
    by converting that int, and overflows)."""
    return value.item() if isinstance(value, np.generic) else value


# attoseconds per unit of the datetime64 units a column may have
_ATTOSECONDS = {"D": 86_400 * 10**18, "h": 3_600 * 10**18, "m": 60 * 10**18, "s": 10**18,
                "ms": 10**15, "us": 10**12, "ns": 10**9, "ps": 10**6, "fs": 10**3, "as": 1}
_FRACTION = re.compile(r":\d\d\.(\d+)")  # the decimals of the seconds of ISO 8601 text
_YEARS = (-290000, 290000)  # where a date converts to microseconds without overflow


def _as_time(series: "pd.Series", value: Any, where: str) -> Any:
    """``value``, as a timestamp in the column's unit where it is text compared with a
    timestamp column; a :class:`_Beyond` where it lies outside what the column's unit holds,
    a :class:`_Between` where it falls between two of its ticks. Computed in Python integers
    (numpy parses text finer than microseconds in a unit that wraps within centuries)."""
    if not isinstance(value, str) or series.dtype.kind != "M":
        return value
    unit = np.datetime_data(series.dtype)[0]
    tick = _ATTOSECONDS.get(unit)
    bare = value.strip().lstrip("+-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy warns of a time zone, which it applies
        try:
            day = np.datetime64(value, "D")
        except ValueError:
            day = np.datetime64("NaT")
        if np.isnat(day) or tick is None or (bare.isdigit() and len(bare) > 4):
            # (also '' and 'NaT', which would match nothing; '20240101', which numpy reads
            # as the year 20,240,101)
            raise QueryError(f"{where}: column {series.name!r} holds timestamps: expected "
                             f"ISO 8601 text ('2024-03-01T12:00'), got {value!r}")
        year = _year(day)
        if not _YEARS[0] <= year <= _YEARS[1]:
            return _Beyond(year > 0)
        micro = int(np.datetime64(value, "us").astype(np.int64))  # finer digits cut off
    digits = _FRACTION.search(value)
    finer = digits.group(1)[6:] if digits else ""
    at = micro * 10**12 + (int(finer[:12].ljust(12, "0")) if finer else 0)
    floor, rest = divmod(at, tick)
    exact = rest == 0 and not finer[12:].strip("0")
    lowest, highest = _INT64.min + 1, _INT64.max  # (the lowest int64 is NaT)
    if floor < lowest or (floor == highest and not exact) or floor > highest:
        return _Beyond(floor > 0)
    if exact:
        return np.datetime64(floor, unit)
    return _Between(np.datetime64(floor, unit), np.datetime64(floor + 1, unit))


def _year(value: np.datetime64) -> int:
    return int(value.astype("M8[Y]").astype(np.int64)) + 1970


def _refuse_other_kind(series: "pd.Series", literals: list, where: str) -> None:
    """QueryError for a literal that no value of the column can equal or be ordered against:
    a number or a truth value against timestamps or text, text against numbers (pandas says
    False for ``==``, matches ``True`` as 1 and raises for ``<``: the query is a mistake either
    way). A column that mixes kinds across datasets compares value by value."""
    given = [(value, _literal_kind(value)) for value in literals]
    if all(kind is None for _value, kind in given):  # another column, None: nothing to judge
        return
    kind = _column_kind(series)  # once: for text, a pass over the column
    for value, literal in given:
        if kind is None or literal in (None, kind) or (kind, literal) == ("timestamps", "text"):
            continue
        described = f"the number {value!r}" if literal == "numbers" else repr(value)
        held = f"numbers ({series.dtype})" if kind == "numbers" else kind
        raise QueryError(f"{where}: column {series.name!r} holds {held}: expected "
                         f"{_EXPECTED[kind]}, got {described}")


_EXPECTED = {"numbers": "a number", "text": "text ('float12')", "booleans": "True or False",
             "timestamps": "ISO 8601 text ('2024-03-01T12:00')", "bytes": "bytes (b'...')"}


def _column_kind(series: "pd.Series") -> str | None:
    """What every value of a column is (None: a mix, or nothing)."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        return {"M": "timestamps", "i": "numbers", "u": "numbers", "f": "numbers",
                "b": "booleans"}.get(dtype.kind)
    return _INFERRED_KINDS.get(pd.api.types.infer_dtype(series, skipna=True))


# what pandas infers of an object column (one with missing values) -> its kind; a mix: None
_INFERRED_KINDS = {"string": "text", "boolean": "booleans", "integer": "numbers",
                   "floating": "numbers", "mixed-integer-float": "numbers",
                   "datetime64": "timestamps", "datetime": "timestamps", "date": "timestamps",
                   "bytes": "bytes"}


def _literal_kind(value: Any) -> str | None:
    if isinstance(value, (bool, np.bool_)):
        return "booleans"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "numbers"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bytes):  # (pandas matches b'v1' with the text 'v1')
        return "bytes"
    return "timestamps" if isinstance(value, np.datetime64) else None


_NUMPY_OPS = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
              ">": np.greater, ">=": np.greater_equal}
_PYTHON_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
               ">": operator.gt, ">=": operator.ge}
_INT64 = np.iinfo(np.int64)


def _compare_numbers(series: "pd.Series", symbol: str, other: Any) -> np.ndarray | None:
    """:func:`_compare` of a numeric column (any width) with a number or another numeric
    column, or of a datetime64[ns] column with a timestamp, exactly and in numpy (without
    pandas' masks and copies); None for anything else."""
    import pandas as pd

    dtype = series.dtype
    if not isinstance(dtype, np.dtype) or symbol not in _NUMPY_OPS:
        return None
    if dtype == np.dtype("M8[ns]"):
        if not isinstance(other, np.datetime64) or np.isnat(other):
            return None
        return _NUMPY_OPS[symbol](series.to_numpy(copy=False), other) & \
            ~np.isnat(series.to_numpy(copy=False))
    if dtype.kind not in "iuf":
        return None
    values = _exact_numbers(series.to_numpy(copy=False))
    if isinstance(other, pd.Series):
        theirs = other.dtype
        if not isinstance(theirs, np.dtype) or theirs.kind not in "iuf":
            return None
        return _columns_exactly(values, symbol, _exact_numbers(other.to_numpy(copy=False)))
    if isinstance(other, (bool, np.bool_)) or not isinstance(other, (int, float, np.integer,
                                                                     np.floating)):
        return None
    other = _plain(other)
    if values.dtype == object:  # uint64 past int64: Python compares them exactly
        return np.array([_PYTHON_OPS[symbol](v, other) for v in values.tolist()], bool)
    if values.dtype == np.int64:
        if isinstance(other, float):
            return _ints_against_float(values, symbol, other)
        if not _INT64.min <= other <= _INT64.max:  # every value on one side of it
            return np.full(len(values), _one_side(symbol, other > _INT64.max))
    elif isinstance(other, int) and not _float_equals(other):
        return _floats_against_int(values, symbol, other)
    with np.errstate(invalid="ignore"):
        out = _NUMPY_OPS[symbol](values, other)
    if symbol == "!=" and values.dtype.kind == "f":  # a missing value satisfies no comparison
        out &= ~np.isnan(values)
    return out


def _exact_numbers(values: np.ndarray) -> np.ndarray:
    """Numeric ``values`` as int64 or float64, which hold every one of them exactly (numpy
    compares float32 with a float64, or uint64 with a float, after rounding); uint64 values
    past int64 as Python ints (an object array)."""
    if values.dtype.kind == "f":
        return values.astype(np.float64, copy=False)
    if values.dtype == np.uint64 and len(values) and values.max() > _INT64.max:
        return values.astype(object)
    return values.astype(np.int64, copy=False)


def _columns_exactly(mine: np.ndarray, symbol: str, theirs: np.ndarray) -> np.ndarray:
    """Two numeric columns (of :func:`_exact_numbers`) compared row by row, exactly (numpy
    compares an int64 with a float64 as two floats: 2**53 + 1 == 2.0**53); a NaN satisfies no
    comparison."""
    if mine.dtype == object or theirs.dtype == object:
        return np.array([not (_is_nan(a) or _is_nan(b)) and _PYTHON_OPS[symbol](a, b)
                         for a, b in zip(mine.tolist(), theirs.tolist())], bool)
    with np.errstate(invalid="ignore"):
        if mine.dtype.kind == theirs.dtype.kind:
            out = _NUMPY_OPS[symbol](mine, theirs)
        else:  # an int64 and a float64 column: rounded first, exactly where the rounding ties
            ints, floats = (mine, theirs) if mine.dtype.kind == "i" else (theirs, mine)
            rounded = ints.astype(np.float64)
            order = np.sign(rounded - floats)  # NaN where the float is
            # where they round equal, the int is the float unless the float rounded it
            for i in np.flatnonzero((order == 0) & (np.abs(ints) > 2**53)).tolist():
                a, b = int(ints[i]), int(floats[i])
                order[i] = (a > b) - (a < b)
            if ints is theirs:
                order = -order
            out = {"==": order == 0, "!=": order != 0, "<": order < 0, "<=": order <= 0,
                   ">": order > 0, ">=": order >= 0}[symbol]
    if symbol == "!=":
        for column in (mine, theirs):
            if column.dtype.kind == "f":
                out &= ~np.isnan(column)
    return out


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _numbers_in(series: "pd.Series", items: list) -> np.ndarray | None:
    """``series.isin(items)`` for a numeric column and numbers, exactly (pandas compares
    float32 with a float64 list after rounding); None for anything else."""
    dtype = series.dtype
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iuf" or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        return None
    values = _exact_numbers(series.to_numpy(copy=False))
    if values.dtype == object:  # a set compares ints and floats exactly
        wanted = {v for v in items if not _is_nan(v)}
        return np.array([v in wanted for v in values.tolist()], bool)
    if values.dtype == np.int64:
        keep = [int(v) for v in items if (isinstance(v, int) or v.is_integer())
                and _INT64.min <= v <= _INT64.max]
        return np.isin(values, np.array(keep, np.int64))
    keep = [float(v) for v in items if isinstance(v, float) or _float_equals(v)]
    return np.isin(values, np.array(keep, np.float64))


def _ints_against_float(values: np.ndarray, symbol: str, number: float) -> np.ndarray:
    """int64 ``values`` against a float, exactly: as the integer bound it stands for."""
    if math.isnan(number):
        return np.full(len(values), symbol == "!=")
    if symbol in ("==", "!=") and not number.is_integer():
        return np.full(len(values), symbol == "!=")
    if math.isinf(number):
        bound = _INT64.max + 1 if number > 0 else _INT64.min - 1
    elif symbol in ("<", ">="):  # x < 2.5 is x < 3; x >= 2.5 is x >= 3
        bound = math.ceil(number)
    else:  # x <= 2.5 is x <= 2; x > 2.5 is x > 2 (and == / != an integral float)
        bound = math.floor(number)
    if not _INT64.min <= bound <= _INT64.max:  # every value on one side of it
        return np.full(len(values), _one_side(symbol, bound > _INT64.max))
    return _NUMPY_OPS[symbol](values, np.int64(bound))


def _one_side(symbol: str, above: bool) -> bool:
    """``value symbol literal`` for every value, where the literal lies above (or below) all
    of them."""
    return {"<": above, "<=": above, ">": not above, ">=": not above, "==": False,
            "!=": True}[symbol]


def _float_equals(number: int) -> bool:
    """Whether a float64 equals the integer ``number``."""
    try:
        return int(float(number)) == number
    except OverflowError:  # beyond every float
        return False


def _floats_against_int(values: np.ndarray, symbol: str, number: int) -> np.ndarray:
    """float64 ``values`` against an integer no float equals, exactly: between the two floats
    around it (a missing value, NaN, satisfies no comparison, != included)."""
    try:
        nearest = float(number)
    except OverflowError:  # beyond the largest float: between it and infinity
        nearest = float(np.finfo(np.float64).max) * (1 if number > 0 else -1)
    with np.errstate(over="ignore"):  # (past the largest float, the next is infinity)
        if nearest < number:
            below, above = nearest, np.nextafter(nearest, np.inf)
        else:
            below, above = np.nextafter(nearest, -np.inf), nearest
    with np.errstate(invalid="ignore"):
        if symbol == "==":
            return np.zeros(len(values), bool)
        if symbol == "!=":
            return ~np.isnan(values)
        return values <= below if symbol in ("<", "<=") else values >= above


def columns_of(store: "Atlas", names: list[str], dids: np.ndarray | None = None
               ) -> tuple[dict[str, list[str]], list[str]]:
    """({array: the statistics named}, attribute keys) the column names refer to. An array is
    a name some live dataset has an array of; only the tables of the arrays named are read
    (``Catalog.array_names`` would read every array's)."""
    cat = store._catalog
    stored = {sid[1] for sid in cat.section_ids("array")}
    if dids is None:
        dids = cat.live_dids()
    live: dict[str, bool] = {}
    arrays: dict[str, list[str]] = {}
    attributes = []
    for name in names:
        head, _, stat = name.rpartition(".")
        if stat in STATS and head in stored and head not in live:
            live[head] = _has_live(cat, ("array", head), dids)
        if stat in STATS and live.get(head):
            arrays.setdefault(head, [])
            if stat not in arrays[head]:
                arrays[head].append(stat)
        else:
            attributes.append(name)
    return arrays, attributes


def _prefetch(store: "Atlas", names: list[str]) -> None:
    """Start decompressing the columns a query names, each as soon as its table is open, and
    then the dataset names (needed last) on the worker threads, while this thread opens the
    next table; what is still queued when needed is done by this thread."""
    cat = store._catalog
    submit = worker_pool().submit
    arrays = {sid[1] for sid in cat.section_ids("array")}
    attributes = {sid[1] for sid in cat.section_ids("attr")}
    for name in names:
        head, _, stat = name.rpartition(".")
        if stat in STATS and head in arrays:
            cat.table(("array", head)).view().prefetch([stat, "schema"], submit)
        elif name in attributes:
            cat.table(("attr", name)).view().prefetch(["tag", "num", "data"], submit)
    cat.prefetch_names(submit)


def select(store: "Atlas", where: str | Callable) -> list[str]:
    """Names of the datasets matching ``where``, in creation order."""
    if callable(where):
        import pandas as pd

        try:
            frame = catalog(store)
        except QueryError as err:  # (a clash of column names: the callable never ran)
            raise QueryError(f"select(callable) gives the callable the catalog() DataFrame, "
                             f"which cannot be made: {err}") from None
        mask = where(frame)
        if isinstance(mask, pd.Series) and not mask.index.equals(frame.index):
            # a Series says by its labels which datasets it means (sorted, say): by them
            if not (mask.index.is_unique and len(mask) == len(frame)
                    and mask.index.isin(frame.index).all()):
                raise ValueError(f"the where callable returned a Series whose index is not "
                                 f"the catalog's: one boolean per dataset, by name ("
                                 f"{len(mask)} values for {len(frame)} datasets)")
            mask = mask.reindex(frame.index)
        mask = np.asarray(mask)
        if mask.dtype != bool:  # numbers would pass as truth values (NaN as True)
            raise TypeError(f"the where callable must return booleans, one per dataset; got "
                            f"{mask.dtype} values")
        if mask.shape != (len(frame),):
            raise ValueError(f"the where callable returned {mask.shape} booleans for "
                             f"{len(frame)} datasets")
        return frame.index[mask].tolist()
    tree, quoted = _parse(where)
    cat = store._catalog
    dids = cat.live_dids()
    names = _names_in(tree, quoted)
    _prefetch(store, names)
    arrays, attributes = columns_of(store, names, dids)
    label = f"where {_shown(where)}"
    _check_attributes(store, attributes, label, dids)
    _refuse_clashes(store, arrays, None, dids, label)
    import pandas as pd

    # only the columns the expression names, and names only for the rows that match
    columns: dict[str, Any] = {}
    for key in attributes:
        columns[key] = attribute_column(store, key, dids, frame=True)
    for array, stats in arrays.items():
        columns.update(array_columns(store, array, dids, stats, frame=True))
    # Series, not a DataFrame: a frame would copy columns of one dtype into one block
    frame = {name: pd.Series(values, name=name, copy=False) for name, values in columns.items()}
    mask = _evaluate(tree, frame, quoted, label)
    if not (isinstance(mask, np.ndarray) and mask.dtype == bool):
        raise QueryError(f"{label}: is not a condition")
    return cat.names_at(np.flatnonzero(mask))


# -- collection summaries ---------------------------------------------------------------------

def array_stats(store: "Atlas", array: str) -> dict | None:
    """Statistics of ``array`` folded over every live dataset with it: cells and nulls summed,
    min of the minima, max of the maxima (None where the datasets' values do not compare)."""
    cat = store._catalog
    dids = cat.live_dids()
    cols = array_columns(store, array, dids, ("dtype", "shape", "chunk_shape", "nulls", "valid",
                                              "min", "max"))
    present = np.array([d is not None for d in cols[f"{array}.dtype"]], bool)
    if not present.any():
        return None
    nulls, valid = cols[f"{array}.nulls"], cols[f"{array}.valid"]
    stated = present & ~np.isnan(np.asarray(nulls, float))
    lo, hi = _fold(cols[f"{array}.min"][stated & (np.asarray(valid, float) > 0)], min), \
        _fold(cols[f"{array}.max"][stated & (np.asarray(valid, float) > 0)], max)
    dtypes = set(cols[f"{array}.dtype"][present].tolist())
    if all(d.startswith(("int", "uint")) for d in dtypes):
        # integers came as floats where a dataset lacks the array (exact: see _extremes)
        lo, hi = (int(v) if isinstance(v, float) else v for v in (lo, hi))
    return {"datasets": int(present.sum()), "row_count": int(np.nansum(nulls[stated]) +
                                                              np.nansum(valid[stated])),
            "null_count": int(np.nansum(nulls[stated])), "min": lo, "max": hi,
            "dtypes": sorted(dtypes),
            "shapes": _distinct(cols[f"{array}.shape"][present]),
            "chunk_shapes": _distinct(cols[f"{array}.chunk_shape"][present]),
            "unflushed": int((present & ~stated).sum())}


def _distinct(column: np.ndarray) -> list[list[int]]:
    return [list(shape) for shape in dict.fromkeys(tuple(v) for v in column.tolist())]


def _fold(values: np.ndarray, pick) -> Any:
    if not len(values):
        return None
    if values.dtype != object:
        result = values.min() if pick is min else values.max()
        # datetime64[ns].item() would be a bare int
        return result if values.dtype.kind == "M" else result.item()
    try:
        return pick(values.tolist())
    except TypeError:  # values of kinds that do not compare (numbers and strings)
        return None


def attributes_by_dataset(store: "Atlas", key: str) -> dict[str, Any]:
    """{dataset name: value of attribute ``key``} of the datasets that have it."""
    table = store._catalog.table(("attr", key)).view()
    cat = store._catalog
    dids = cat.live_dids()
    pos, found = _rows(table, dids)
    if not found.any():
        return {}
    names = cat.names()
    tags, nums, data = (table.take(c, pos) for c in ("tag", "num", "data"))
    return {names[i]: value_format.decode(int(tags[i]), int(nums[i]), data[i])
            for i in np.flatnonzero(found).tolist()}


def array_stats_by_dataset(store: "Atlas", array: str) -> dict[str, dict | None]:
    """{dataset name: ``array_stats`` of its ``array``} of the datasets that have it."""
    names = store._catalog.names()
    cols = array_columns(store, array, store._catalog.live_dids())
    out = {}
    for i, dtype in enumerate(cols[f"{array}.dtype"].tolist()):
        if dtype is None:
            continue
        nulls = cols[f"{array}.nulls"][i]
        if isinstance(nulls, float) and math.isnan(nulls):
            out[names[i]] = None
            continue
        lo, hi = cols[f"{array}.min"][i], cols[f"{array}.max"][i]
        missing = lo is None or isinstance(lo, float) and math.isnan(lo) or (
            isinstance(lo, np.datetime64) and np.isnat(lo))
        if not missing and dtype.startswith(("int", "uint")):
            lo, hi = int(lo), int(hi)  # (exact floats where other datasets lack the array)
        out[names[i]] = {"row_count": int(nulls) + int(cols[f"{array}.valid"][i]),
                         "null_count": int(nulls),
                         "min": None if missing else _python(lo),
                         "max": None if missing else _python(hi)}
    return out


def _python(value: Any) -> Any:
    if isinstance(value, np.datetime64):
        return value
    return value.item() if isinstance(value, np.generic) else value


_NUMERIC_ORDER = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                  "float32", "float64")


def widen(types: set[str]) -> str | None:
    """The one type all of ``types`` fit in (numpy's promotion among numbers), or None when
    there is none (strings with numbers, timestamps with numbers)."""
    if len(types) == 1:
        return next(iter(types))
    if types <= set(_NUMERIC_ORDER):
        result = np.dtype(next(iter(types)))
        for name in types:
            result = np.promote_types(result, np.dtype(name))
        return result.name
    return None


def merged_schema(store: "Atlas") -> dict:
    """The union of every dataset's arrays and attributes: per array its widened dtype, its
    dimension names, and per attribute its widened type; ``conflicts`` lists what does not
    widen (with the types seen and how many datasets have each)."""
    cat = store._catalog
    dids = cat.live_dids()
    out: dict[str, Any] = {"arrays": {}, "attributes": {}, "conflicts": []}
    for array in cat.array_names():
        cols = array_columns(store, array, dids, ("dtype", "shape"))
        dtypes = cols[f"{array}.dtype"]
        present = np.array([d is not None for d in dtypes], bool)
        counts: dict[str, int] = {}
        for d in dtypes[present].tolist():
            counts[d] = counts.get(d, 0) + 1
        table = cat.table(("array", array)).view()
        pos, found = _rows(table, dids)
        dims = {cat.schema(int(s)).dims for s in dict.fromkeys(
            table.take("schema", pos)[found].tolist())} if found.any() else set()
        widened = widen(set(counts))
        out["arrays"][array] = {"dtype": widened, "dtypes": counts, "datasets": int(
            present.sum()), "dims": [list(d) for d in sorted(dims)]}
        if widened is None:
            out["conflicts"].append({"array": array, "dtypes": counts})
        if len(dims) > 1:
            out["conflicts"].append({"array": array, "dims": [list(d) for d in sorted(dims)]})
    # live datasets as a mask by id: each attribute table is then read by its own rows (a
    # search of every live dataset per key was quadratic where datasets have keys of their own)
    alive = np.zeros(int(dids.max()) + 1 if len(dids) else 0, bool)
    alive[dids] = True
    for sid in cat.section_ids("attr"):
        key = sid[1]
        if is_internal(key):
            continue
        table = cat.table(sid).view()
        rows = _live_rows(table, alive)
        if not len(rows):
            continue
        counts = {}
        for tag in table.take("tag", rows).tolist():
            name = _TAG_NAMES.get(tag) or value_format._NUMPY_OF_TAG[tag].name
            counts[name] = counts.get(name, 0) + 1
        widened = widen(set(counts))
        out["attributes"][key] = {"type": widened, "types": counts, "datasets": len(rows)}
        if widened is None:
            out["conflicts"].append({"attribute": key, "types": counts})
    return out


_TAG_NAMES = {value_format.BOOL: "bool", value_format.INT64: "int64",
              value_format.FLOAT64: "float64", value_format.STRING: "string",
              value_format.BYTES: "bytes", value_format.TIMESTAMP: "timestamp_ns",
              value_format.STRUCT: "structured"}
