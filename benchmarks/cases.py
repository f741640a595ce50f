"""Data generators for the benchmark workloads.

Every generator yields :class:`Sample` objects: one dataset in a raw form (numpy arrays with dims,
chunk shapes and attributes, for raw APIs) and, when asked for, the same data as an
``xarray.Dataset`` (for xarray-based peers). The upstream cases follow ``spec/UPSTREAM.md``: values
from ``numpy.random.default_rng(seed=idx)``, hourly ``datetime64[ns]`` time from 2024-01-01, other
coordinates ``linspace`` float32, a ``units`` attribute per data variable and an integer ``id``
dataset attribute.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

TIME_ORIGIN = np.datetime64("2024-01-01T00:00:00", "ns")

# Ranges of the float32 linspace coordinates (UPSTREAM.md fixes only "linspace float32").
COORD_RANGES = {"depth": (0.0, 1000.0), "lon": (-180.0, 180.0), "lat": (-90.0, 90.0)}


@dataclass(frozen=True)
class VariableSpec:
    """One data variable of a case: dtype and the normal distribution its values come from."""

    name: str
    dtype: str
    mean: float
    std: float
    units: str
    clip: tuple[float, float] | None = None


@dataclass(frozen=True)
class CaseSpec:
    """Shape, chunking and variables shared by every dataset of a case."""

    name: str
    dims: tuple[tuple[str, int], ...]
    chunk_shape: tuple[int, ...] | None  # None: one chunk per array
    variables: tuple[VariableSpec, ...]
    default_n: int

    @property
    def dim_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.dims)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(size for _, size in self.dims)

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.chunk_shape if self.chunk_shape is not None else self.shape

    @property
    def variable_names(self) -> tuple[str, ...]:
        return tuple(var.name for var in self.variables)


@dataclass
class RawArray:
    """An array as the raw atlas API sees it: data plus dims, chunk shape, fill and attributes."""

    data: np.ndarray
    dims: tuple[str, ...]
    chunk_shape: tuple[int, ...]
    fill_value: float | int | None = None
    attrs: dict = field(default_factory=dict)


@dataclass
class RawDataset:
    """A dataset as plain numpy: coordinates first, then data variables, then dataset attrs."""

    coords: dict[str, RawArray]
    data_vars: dict[str, RawArray]
    attrs: dict

    @property
    def arrays(self) -> dict[str, RawArray]:
        """Coordinates then data variables, the order they should be written in."""
        return {**self.coords, **self.data_vars}


@dataclass
class Sample:
    """One generated dataset: its name, index, raw form and (optionally) its xarray form."""

    name: str
    index: int
    raw: RawDataset
    xarray: object | None = None  # xr.Dataset when generated with with_xarray=True


@dataclass(frozen=True)
class ArrayLayout:
    """What a reader needs to know about one array: dims, shape, chunk shape and dtype."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    dtype: np.dtype


def dataset_name(index: int) -> str:
    """Name of the dataset at ``index`` (zero padded so names sort in index order)."""
    return f"ds_{index:06d}"


def dataset_names(n: int) -> list[str]:
    return [dataset_name(i) for i in range(n)]


def _upstream_variables(*specs: tuple) -> tuple[VariableSpec, ...]:
    return tuple(VariableSpec(*spec) for spec in specs)


def sensors_case() -> CaseSpec:
    return CaseSpec(
        name="sensors",
        dims=(("time", 24),),
        chunk_shape=None,
        variables=_upstream_variables(
            ("temperature", "float32", 18.0, 2.0, "degC"),
            ("pressure", "float64", 1013.25, 3.0, "hPa"),
            ("humidity", "float32", 60.0, 10.0, "%", (0.0, 100.0)),
        ),
        default_n=1000,
    )


def profile_case(n_vars: int = 4) -> CaseSpec:
    """The profile case; ``n_vars`` 2 or 4 (4 repeats the pair as ``temperature_2``, ...)."""
    if n_vars not in (2, 4):
        raise ValueError(f"profile case supports n_vars 2 or 4, got {n_vars}")
    pair = [
        ("temperature", "float32", 10.0, 4.0, "degC"),
        ("salinity", "float32", 35.0, 1.5, "psu"),
    ]
    specs = pair + [(f"{name}_2", *rest) for name, *rest in pair] if n_vars == 4 else pair
    return CaseSpec(
        name="profile",
        dims=(("depth", 50), ("time", 168)),
        chunk_shape=None,
        variables=_upstream_variables(*specs),
        default_n=1000,
    )


def gridded_case() -> CaseSpec:
    return CaseSpec(
        name="gridded",
        dims=(("lon", 100), ("lat", 100), ("time", 48)),
        chunk_shape=(50, 50, 24),
        variables=_upstream_variables(
            ("temperature", "float32", 15.0, 5.0, "degC"),
            ("pressure", "float64", 1013.0, 8.0, "hPa"),
            ("humidity", "float32", 65.0, 15.0, "%", (0.0, 100.0)),
        ),
        default_n=200,
    )


UPSTREAM_CASES = {"sensors": sensors_case, "profile": profile_case, "gridded": gridded_case}


def get_case(name: str, n_vars: int = 4) -> CaseSpec:
    """The upstream case called ``name`` (``n_vars`` applies to ``profile`` only)."""
    if name not in UPSTREAM_CASES:
        raise ValueError(f"unknown case {name!r}; expected one of {sorted(UPSTREAM_CASES)}")
    return profile_case(n_vars) if name == "profile" else UPSTREAM_CASES[name]()


def _coordinate(dim: str, size: int) -> np.ndarray:
    if dim == "time":
        return TIME_ORIGIN + np.arange(size) * np.timedelta64(1, "h")
    low, high = COORD_RANGES.get(dim, (0.0, float(size - 1)))
    return np.linspace(low, high, size, dtype=np.float32)


@lru_cache(maxsize=None)
def _coordinates(dims: tuple[tuple[str, int], ...]) -> dict[str, np.ndarray]:
    coords = {}
    for dim, size in dims:
        values = _coordinate(dim, size)
        values.flags.writeable = False  # shared by every sample
        coords[dim] = values
    return coords


def _coordinate_arrays(dims: tuple[tuple[str, int], ...]) -> dict[str, RawArray]:
    return {
        dim: RawArray(data=values, dims=(dim,), chunk_shape=values.shape)
        for dim, values in _coordinates(dims).items()
    }


def _fill_for(dtype: np.dtype) -> float | None:
    return float("nan") if np.dtype(dtype).kind == "f" else None


def make_upstream_raw(case: CaseSpec, index: int) -> RawDataset:
    """The raw form of dataset ``index`` of ``case``; values drawn in variable order."""
    rng = np.random.default_rng(seed=index)
    data_vars = {}
    for var in case.variables:
        values = rng.normal(var.mean, var.std, size=case.shape)
        if var.clip is not None:
            values = np.clip(values, *var.clip)
        data = values.astype(var.dtype, copy=False)
        data_vars[var.name] = RawArray(
            data=data,
            dims=case.dim_names,
            chunk_shape=case.chunks,
            fill_value=_fill_for(data.dtype),
            attrs={"units": var.units},
        )
    coords = _coordinate_arrays(case.dims)
    return RawDataset(coords=coords, data_vars=data_vars, attrs={"id": index})


def raw_to_xarray(raw: RawDataset):
    """The xarray form of a raw dataset (no copies of the numpy data)."""
    import xarray as xr

    def variable(array: RawArray):
        return xr.Variable(array.dims, array.data, attrs=dict(array.attrs))

    return xr.Dataset(
        data_vars={name: variable(a) for name, a in raw.data_vars.items()},
        coords={name: variable(a) for name, a in raw.coords.items()},
        attrs=dict(raw.attrs),
    )


def iter_upstream(case: CaseSpec, n: int, with_xarray: bool = True) -> Iterator[Sample]:
    """Yield the ``n`` datasets of an upstream case in index order."""
    for index in range(n):
        raw = make_upstream_raw(case, index)
        xds = raw_to_xarray(raw) if with_xarray else None
        yield Sample(name=dataset_name(index), index=index, raw=raw, xarray=xds)


def layout_of(raw: RawDataset) -> dict[str, ArrayLayout]:
    """Reader-side description of the data variables of ``raw``."""
    return {
        name: ArrayLayout(a.dims, a.data.shape, tuple(a.chunk_shape), a.data.dtype)
        for name, a in raw.data_vars.items()
    }


def case_layout(case: CaseSpec) -> dict[str, ArrayLayout]:
    """Reader-side description of the data variables of an upstream case (no data generated)."""
    return {
        var.name: ArrayLayout(case.dim_names, case.shape, case.chunks, np.dtype(var.dtype))
        for var in case.variables
    }


def quarter_window(dims: tuple[tuple[str, int], ...]) -> dict[str, slice]:
    """The first 25% of every dimension (at least one element), keyed by dimension name."""
    return {dim: slice(0, max(1, size // 4)) for dim, size in dims}


def window_start_shape(
    layout: ArrayLayout, window: dict[str, slice]
) -> tuple[list[int], list[int]]:
    """``start``/``shape`` lists of ``window`` for one array (dims absent from it read whole)."""
    start, shape = [], []
    for dim, size in zip(layout.dims, layout.shape):
        sl = window.get(dim, slice(0, size))
        begin, stop, _ = sl.indices(size)
        start.append(begin)
        shape.append(stop - begin)
    return start, shape


def window_slices(layout: ArrayLayout, window: dict[str, slice]) -> tuple[slice, ...]:
    start, shape = window_start_shape(layout, window)
    return tuple(slice(b, b + n) for b, n in zip(start, shape))


# --- stacked ML batches -------------------------------------------------------------------------

FIELD_SHAPE = (180, 360)
LAND_FRACTION = 0.2
LAND_MASK_SEED = 20240101


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], n_waves: int) -> np.ndarray:
    """Sum of ``n_waves`` low-frequency 2-D sinusoids with random phases and amplitudes."""
    lat = np.linspace(-np.pi / 2, np.pi / 2, shape[0])[:, None]
    lon = np.linspace(-np.pi, np.pi, shape[1])[None, :]
    field = np.zeros(shape)
    for _ in range(n_waves):
        k_lat, k_lon = rng.integers(1, 5, size=2)
        phase_lat, phase_lon = rng.uniform(0, 2 * np.pi, size=2)
        amplitude = rng.uniform(0.5, 1.5)
        field += amplitude * np.sin(k_lat * lat + phase_lat) * np.cos(k_lon * lon + phase_lon)
    return field


@lru_cache(maxsize=4)
def land_mask(shape: tuple[int, int] = FIELD_SHAPE, fraction: float = LAND_FRACTION) -> np.ndarray:
    """Boolean land mask (True = land), the same for every dataset, covering ``fraction``."""
    field = _smooth_field(np.random.default_rng(LAND_MASK_SEED), shape, n_waves=6)
    mask = field >= np.quantile(field, 1.0 - fraction)
    mask.flags.writeable = False
    return mask


def make_ml_field_raw(
    index: int, shape: tuple[int, int] = FIELD_SHAPE, chunk_shape: tuple[int, int] | None = None
) -> RawDataset:
    """Dataset ``index`` of the ML-batch store: a smooth field plus noise, NaN over land."""
    rng = np.random.default_rng(seed=index)
    values = 15.0 + 10.0 * _smooth_field(rng, shape, n_waves=4)
    values += rng.normal(0.0, 0.5, size=shape)
    data = values.astype(np.float32)
    data[land_mask(shape)] = np.nan
    dims = (("lat", shape[0]), ("lon", shape[1]))
    lat = np.linspace(-89.5, 89.5, shape[0], dtype=np.float32)
    lon = np.linspace(-179.5, 179.5, shape[1], dtype=np.float32)
    coords = {
        "lat": RawArray(lat, ("lat",), (shape[0],)),
        "lon": RawArray(lon, ("lon",), (shape[1],)),
    }
    field_array = RawArray(
        data=data,
        dims=tuple(d for d, _ in dims),
        chunk_shape=tuple(chunk_shape or shape),
        fill_value=float("nan"),
        attrs={"units": "degC"},
    )
    return RawDataset(coords=coords, data_vars={"field": field_array}, attrs={"id": index})


def iter_ml_fields(
    n: int,
    shape: tuple[int, int] = FIELD_SHAPE,
    chunk_shape: tuple[int, int] | None = None,
    with_xarray: bool = False,
) -> Iterator[Sample]:
    """Yield the ``n`` datasets of the stacked ML-batch store in index order."""
    for index in range(n):
        raw = make_ml_field_raw(index, shape, chunk_shape)
        xds = raw_to_xarray(raw) if with_xarray else None
        yield Sample(name=dataset_name(index), index=index, raw=raw, xarray=xds)
