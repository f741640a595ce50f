"""A sample collection: daily global sea-surface-temperature-like fields as netCDF files.

One file per day, ``sst(time=1, lat, lon)`` float32 on a regular grid (1 degree by default),
NaN over a synthetic land mask, CF attributes, a ``time`` coordinate in days since 1970. Written
with netCDF4 directly and uncompressed, so a year of files takes seconds.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

EPOCH = _dt.date(1970, 1, 1)


def grid(resolution: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes (south to north) and longitudes (-180 to 180)."""
    lat = np.arange(-90 + resolution / 2, 90, resolution, dtype=np.float32)
    lon = np.arange(-180 + resolution / 2, 180, resolution, dtype=np.float32)
    return lat, lon


def land_mask(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A smooth made-up land mask (True = land), roughly 30% of the globe, plus polar caps."""
    la = np.deg2rad(lat)[:, None]
    lo = np.deg2rad(lon)[None, :]
    field = (np.sin(2 * lo + 0.5) * np.cos(3 * la) + 0.6 * np.sin(3 * lo - 1.0) * np.sin(2 * la)
             + 0.3 * np.cos(5 * lo + 2 * la))
    return (field > 0.55) | (np.abs(lat)[:, None] > 78)


def daily_sst(day: int, lat: np.ndarray, lon: np.ndarray, mask: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """Kelvin: a latitude profile, a season that flips between hemispheres, eddy-like noise."""
    la = np.deg2rad(lat)[:, None]
    lo = np.deg2rad(lon)[None, :]
    season = np.cos(2 * np.pi * (day - 213) / 365.25)  # northern summer peaks early August
    base = 271.35 + 29.0 * np.cos(la) ** 2 + 4.0 * season * np.sin(la)
    waves = 0.8 * np.sin(3 * lo + 0.05 * day) * np.cos(2 * la)
    noise = rng.standard_normal(mask.shape) * 0.3
    sst = (base + waves + noise).astype(np.float32)
    sst[mask] = np.nan
    return sst


def write_day(path: Path, day: int, date: _dt.date, lat: np.ndarray, lon: np.ndarray,
              sst: np.ndarray) -> None:
    import netCDF4

    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", 1)
        nc.createDimension("lat", len(lat))
        nc.createDimension("lon", len(lon))
        t = nc.createVariable("time", "f8", ("time",))
        t.setncatts({"standard_name": "time", "long_name": "time", "axis": "T",
                     "units": "days since 1970-01-01 00:00:00", "calendar": "standard"})
        t[:] = [(date - EPOCH).days]
        for name, values, attrs in (
            ("lat", lat, {"standard_name": "latitude", "long_name": "latitude",
                          "units": "degrees_north", "axis": "Y"}),
            ("lon", lon, {"standard_name": "longitude", "long_name": "longitude",
                          "units": "degrees_east", "axis": "X"}),
        ):
            v = nc.createVariable(name, "f4", (name,))
            v.setncatts(attrs)
            v[:] = values
        v = nc.createVariable("sst", "f4", ("time", "lat", "lon"), fill_value=np.float32(np.nan))
        v.setncatts({"standard_name": "sea_surface_temperature",
                     "long_name": "sea surface temperature", "units": "K",
                     "valid_min": np.float32(260.0), "valid_max": np.float32(320.0)})
        v.set_auto_mask(False)
        v[0] = sst
        nc.setncatts({"Conventions": "CF-1.8", "title": "atlas demo: synthetic daily SST",
                      "institution": "atlas examples", "source": "examples/_sample.py",
                      "day_of_year": np.int32(day + 1)})


def write_collection(folder: str | Path, days: int = 365, resolution: float = 1.0,
                     start: _dt.date = _dt.date(2023, 1, 1), seed: int = 0) -> list[Path]:
    """Write ``days`` daily files ``sst_YYYYMMDD.nc`` into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lat, lon = grid(resolution)
    mask = land_mask(lat, lon)
    rng = np.random.default_rng(seed)
    paths = []
    for day in range(days):
        date = start + _dt.timedelta(days=day)
        path = folder / f"sst_{date:%Y%m%d}.nc"
        write_day(path, day, date, lat, lon, daily_sst(day, lat, lon, mask, rng))
        paths.append(path)
    return paths
