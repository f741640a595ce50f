"""A deterministic workload and its plain-numpy model.

A batch of operations (create/delete datasets, define/delete arrays, write windows, set/delete
attributes) is drawn from ``(seed, batch)`` and the model's current state, and applied to the
model and, when given, to a store. Replaying batches 0..k on an empty model therefore gives the
exact content the store must hold after the flush of batch k, whichever process wrote it. The
last operation of every batch records ``k`` as the ``batch`` attribute of dataset ``progress``,
so a store says by itself which batch it holds.

``snapshot`` renders a store or a model as the same canonical list of lines (data, metadata,
attributes, stats), so comparing the two compares everything the API can read back.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NAN = float("nan")

# name -> (dtype, dims, shape, chunk_shape, fill_value)
ARRAYS: dict[str, tuple] = {
    "temp": ("float32", ["y", "x"], (12, 10), (5, 4), NAN),
    "count": ("int16", ["t"], (30,), (7,), -1),
    "ids": ("uint64", ["a", "b"], (9, 4), (4, 4), None),
    "label": ("string", ["n"], (6,), (4,), "?"),
    "when": ("timestamp_nanoseconds", ["t"], (5,), (2,), None),
    "scalar": ("float64", [], (), (), None),
}
NUMPY = {"float32": np.float32, "int16": np.int16, "uint64": np.uint64, "string": object,
         "timestamp_nanoseconds": "datetime64[ns]", "float64": np.float64}
DEFAULTS = {"float32": 0.0, "int16": 0, "uint64": 0, "string": "",
            "timestamp_nanoseconds": np.datetime64("NaT", "ns"), "float64": 0.0}
WORDS = ["", "?", "a", "ocean", "été", "日本", "x" * 40, "tab\tand\nnewline", "z"]
MAX_LIVE = 8
PROGRESS = "progress"


@dataclass
class ArrayModel:
    kind: str  # key of ARRAYS
    values: np.ndarray
    written: np.ndarray  # bool, which cells were ever written
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetModel:
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, ArrayModel] = field(default_factory=dict)


class Model:
    """What a store must contain: datasets in creation order, each with arrays and attributes."""

    def __init__(self) -> None:
        self.datasets: dict[str, DatasetModel] = {}

    @property
    def batch(self) -> int:
        """The batch whose flush this state is (-1: the empty store)."""
        ds = self.datasets.get(PROGRESS)
        return -1 if ds is None else int(ds.attrs.get("batch", -1))


def new_array(kind: str) -> ArrayModel:
    dtype, _dims, shape, _chunks, fill = ARRAYS[kind]
    start = DEFAULTS[dtype] if fill is None else fill
    values = np.empty(shape, dtype=NUMPY[dtype])
    values[...] = start
    return ArrayModel(kind, values, np.zeros(shape, bool))


# -- drawing values ----------------------------------------------------------------------------


def _draw_data(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    dtype = ARRAYS[kind][0]
    if dtype == "float32":
        data = rng.normal(15.0, 5.0, shape).astype(np.float32)
        if data.size and rng.random() < 0.3:
            data.reshape(-1)[rng.integers(0, data.size)] = np.nan
    elif dtype == "int16":
        data = rng.integers(-3, 500, shape).astype(np.int16)  # -1 (the fill) now and then
    elif dtype == "uint64":
        data = rng.integers(0, np.iinfo(np.uint64).max, shape, dtype=np.uint64, endpoint=True)
    elif dtype == "string":
        data = np.empty(shape, dtype=object)
        for i in range(data.size):
            data.reshape(-1)[i] = WORDS[int(rng.integers(0, len(WORDS)))]
    elif dtype == "timestamp_nanoseconds":
        data = (rng.integers(0, 2**62, shape, dtype=np.int64)).view("datetime64[ns]")
    else:
        data = np.asarray(rng.normal(0.0, 1e6, shape), dtype=np.float64)
    if data.ndim >= 2 and rng.random() < 0.3:
        data = np.asfortranarray(data)  # layout must not matter
    return data


def _draw_attr(rng: np.random.Generator) -> Any:
    pick = int(rng.integers(0, 8))
    if pick == 0:
        return int(rng.integers(-(2**63), 2**63 - 1, dtype=np.int64))
    if pick == 1:
        return float(rng.normal(0, 1e3))
    if pick == 2:
        return WORDS[int(rng.integers(0, len(WORDS)))]
    if pick == 3:
        return bool(rng.integers(0, 2))
    if pick == 4:
        return np.float32(rng.normal())
    if pick == 5:
        return np.int8(rng.integers(-128, 128))
    if pick == 6:
        return bytes(rng.integers(0, 256, int(rng.integers(0, 6)), dtype=np.uint8))
    return np.datetime64(int(rng.integers(0, 2**62)), "ns")


def _window(rng: np.random.Generator, shape: tuple[int, ...]):
    start = tuple(int(rng.integers(0, s)) for s in shape)
    size = tuple(int(rng.integers(1, s - b + 1)) for s, b in zip(shape, start))
    return start, size


# -- one batch -----------------------------------------------------------------------------------


def run_batch(seed: int, batch: int, model: Model, store=None) -> list[str]:
    """Draw batch ``batch`` from the model's state and apply it to the model (and the store).

    Returns a short description of each operation (for messages)."""
    rng = np.random.default_rng([seed, batch])
    done: list[str] = []

    def live() -> list[str]:
        return [n for n in model.datasets if n != PROGRESS]

    def create(name: str) -> None:
        model.datasets[name] = DatasetModel()
        if store is not None:
            store.create_dataset(name)
        done.append(f"create {name}")

    def define(name: str, kind: str) -> None:
        model.datasets[name].arrays[kind] = new_array(kind)
        if store is not None:
            dtype, dims, shape, chunks, fill = ARRAYS[kind]
            store.open_dataset(name).define_array(kind, dtype, dims, list(shape), list(chunks),
                                                  fill)
        done.append(f"define {name}/{kind}")

    def write(name: str, kind: str) -> None:
        arr = model.datasets[name].arrays[kind]
        start, size = _window(rng, arr.values.shape)
        data = _draw_data(rng, kind, size)
        box = tuple(slice(b, b + n) for b, n in zip(start, size))
        arr.values[box] = data
        arr.written[box] = True
        if store is not None:
            store.open_dataset(name).write_array(kind, list(start), data)
        done.append(f"write {name}/{kind} at {list(start)} size {list(size)}")

    def set_attr(name: str, array: str | None) -> None:
        key = f"k{int(rng.integers(0, 4))}"
        value = _draw_attr(rng)
        if array is None:
            model.datasets[name].attrs[key] = value
            if store is not None:
                store.open_dataset(name).set_attribute(key, value)
        else:
            model.datasets[name].arrays[array].attrs[key] = value
            if store is not None:
                store.open_dataset(name).set_array_attribute(array, key, value)
        done.append(f"attr {name}/{array or ''}.{key}")

    if batch == 0 or PROGRESS not in model.datasets:
        create(PROGRESS)
    for _ in range(int(rng.integers(1, 8))):
        names = live()
        op = float(rng.random())
        if op < 0.12 or not names:
            if len(names) >= MAX_LIVE:
                continue
            name = f"d{batch}_{len(done)}"
            create(name)
            for kind in ARRAYS:
                if rng.random() < 0.6:
                    define(name, kind)
            continue
        name = names[int(rng.integers(0, len(names)))]
        arrays = list(model.datasets[name].arrays)
        if op < 0.62 and arrays:
            write(name, arrays[int(rng.integers(0, len(arrays)))])
        elif op < 0.72:
            set_attr(name, None)
        elif op < 0.76 and arrays:
            set_attr(name, arrays[int(rng.integers(0, len(arrays)))])
        elif op < 0.82:
            missing = [k for k in ARRAYS if k not in arrays]
            if missing:
                define(name, missing[int(rng.integers(0, len(missing)))])
        elif op < 0.86 and arrays:
            kind = arrays[int(rng.integers(0, len(arrays)))]
            del model.datasets[name].arrays[kind]
            if store is not None:
                store.open_dataset(name).delete_array(kind)
            done.append(f"delete {name}/{kind}")
        elif op < 0.89 and model.datasets[name].attrs:
            key = sorted(model.datasets[name].attrs)[0]
            del model.datasets[name].attrs[key]
            if store is not None:
                store.open_dataset(name).delete_attribute(key)
            done.append(f"delattr {name}.{key}")
        elif op < 0.95:
            del model.datasets[name]
            if store is not None:
                store.delete_dataset(name)
            done.append(f"delete {name}")
            if rng.random() < 0.5:  # the same name again, as a new dataset
                create(name)
                define(name, "count")
                write(name, "count")
    model.datasets[PROGRESS].attrs["batch"] = batch
    if store is not None:
        store.open_dataset(PROGRESS).set_attribute("batch", batch)
    return done


def replay(seed: int, upto: int) -> Model:
    """The model after batches 0..upto (upto = -1: the empty store)."""
    model = Model()
    for b in range(upto + 1):
        run_batch(seed, b, model)
    return model


# -- comparing -----------------------------------------------------------------------------------


def _attr_text(value: Any) -> str:
    return f"{type(value).__name__}:{value!r}"


def _values_text(values: np.ndarray) -> str:
    if values.dtype == object:
        return json.dumps([str(v) for v in values.reshape(-1)], ensure_ascii=True)
    if values.dtype.kind == "M":
        values = values.view(np.int64)
    raw = np.ascontiguousarray(values).tobytes()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def expected_stats(arr: ArrayModel) -> dict:
    """array_stats as the documented rule gives it: nulls are fill-equal, NaN/NaT and unwritten
    cells of fill-less arrays; min/max over the rest."""
    dtype, _dims, _shape, _chunks, fill = ARRAYS[arr.kind]
    v = arr.values.reshape(-1)
    written = arr.written.reshape(-1)
    if dtype == "string":
        null = (v == fill) if fill is not None else ~written
    elif dtype == "timestamp_nanoseconds":
        null = np.isnat(v) | (~written if fill is None else False)
    elif dtype in ("float32", "float64"):
        null = np.isnan(v)
        if fill is None:
            null |= ~written
        elif not math.isnan(fill):
            null |= v == fill
    else:
        null = (v == fill) if fill is not None else ~written
    null = np.asarray(null, bool)
    good = v[~null]
    lo = hi = None
    if good.size:
        lo, hi = min(good), max(good)
        if dtype in ("float32", "float64"):
            lo, hi = float(lo), float(hi)
        elif dtype in ("int16", "uint64"):
            lo, hi = int(lo), int(hi)
        elif dtype == "timestamp_nanoseconds":
            lo, hi = np.datetime64(lo, "ns"), np.datetime64(hi, "ns")
    return {"row_count": int(v.size), "null_count": int(null.sum()), "min": lo, "max": hi}


def _stats_text(stats: dict | None) -> str:
    if stats is None:
        return "None"
    return ",".join(f"{k}={_attr_text(stats[k])}" for k in ("row_count", "null_count", "min",
                                                            "max"))


def _array_lines(name: str, kind_meta: tuple, values: np.ndarray, stats, attrs) -> list[str]:
    dtype, dims, shape, chunks, fill = kind_meta
    head = f"  array {name} {dtype} {list(dims)} {list(shape)} {list(chunks)} fill={fill!r}"
    lines = [head, f"    data {_values_text(values)}", f"    stats {_stats_text(stats)}"]
    lines += [f"    attr {k}={_attr_text(attrs[k])}" for k in sorted(attrs)]
    return lines


def snapshot_model(model: Model) -> list[str]:
    lines: list[str] = []
    for name, ds in model.datasets.items():
        lines.append(f"dataset {name}")
        lines += [f"  attr {k}={_attr_text(ds.attrs[k])}" for k in sorted(ds.attrs)]
        for kind, arr in ds.arrays.items():
            lines += _array_lines(kind, ARRAYS[kind], arr.values, expected_stats(arr), arr.attrs)
    return lines


def snapshot_store(store) -> list[str]:
    lines: list[str] = []
    for name in store.list_datasets():
        ds = store.open_dataset(name)
        lines.append(f"dataset {name}")
        attrs = ds.attributes()
        lines += [f"  attr {k}={_attr_text(attrs[k])}" for k in sorted(attrs)]
        for array in ds.list_arrays():
            meta = ds.array_meta(array)
            kind_meta = (meta["dtype"], meta["dimension_names"], tuple(meta["shape"]),
                         tuple(meta["chunk_shape"]), meta["fill_value"])
            lines += _array_lines(array, kind_meta, ds.read_array(array), ds.array_stats(array),
                                  ds.array_attributes(array))
    return lines


def digest(lines: list[str]) -> str:
    return hashlib.blake2b("\n".join(lines).encode("utf-8"), digest_size=16).hexdigest()
