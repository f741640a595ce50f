"""Times the store's ``timestamp_nanoseconds`` cannot hold: cftime objects.

xarray decodes times to cftime objects for the ``noleap``/``365_day``, ``360_day``, ``julian``
and ``all_leap`` calendars, and for standard-calendar dates outside 1678-2262 (year 0
included). Those are stored the CF way, as int64 microseconds since 1970-01-01 in the variable's
own calendar, with ``units`` and ``calendar`` attributes for anyone reading the raw numbers; a
microsecond is cftime's resolution, so the numbers are exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

UNITS = "microseconds since 1970-01-01 00:00:00"


def cftime_plan(values: np.ndarray) -> dict[str, Any] | None:
    """How to store an object array of cftime datetimes (None when it is not one).

    Every element must be a cftime datetime of one type, calendar and year-zero convention.
    """
    if values.dtype != object or values.size == 0:
        return None
    try:
        import cftime
    except ImportError:
        return None
    first = values.flat[0]
    if not isinstance(first, cftime.datetime):
        return None
    kind, calendar, year_zero = type(first), first.calendar, first.has_year_zero
    for value in values.flat:
        if (type(value) is not kind or value.calendar != calendar
                or value.has_year_zero != year_zero):
            return None
    if not calendar:
        return None  # a calendar-less cftime.datetime has no CF representation
    plan = {"kind": "cftime", "calendar": calendar, "has_year_zero": bool(year_zero)}
    if kind is cftime.datetime:  # built as cftime.datetime(..., calendar=): give that class back
        plan["generic"] = True
    return plan


def holds_cftime(values: np.ndarray) -> bool:
    """Whether an object array holds cftime datetimes (at least its first element)."""
    if values.dtype != object or values.size == 0:
        return False
    try:
        import cftime
    except ImportError:
        return False
    return isinstance(values.flat[0], cftime.datetime)


def encode_cftime(values: np.ndarray, plan: dict[str, Any]) -> np.ndarray:
    import cftime

    out = cftime.date2num(values.reshape(-1), UNITS, plan["calendar"],
                          has_year_zero=_year_zero_arg(plan))
    return np.asarray(out, dtype=np.int64).reshape(values.shape)


def decode_cftime(numbers: np.ndarray, plan: dict[str, Any]) -> np.ndarray:
    import cftime

    numbers = np.asarray(numbers)
    if numbers.size == 0:
        return np.empty(numbers.shape, dtype=object)
    out = cftime.num2date(numbers.reshape(-1), UNITS, plan["calendar"],
                          only_use_cftime_datetimes=True, has_year_zero=_year_zero_arg(plan))
    if plan.get("generic"):
        out = [cftime.datetime(d.year, d.month, d.day, d.hour, d.minute, d.second,
                               d.microsecond, calendar=d.calendar,
                               has_year_zero=d.has_year_zero) for d in out]
    return np.asarray(out, dtype=object).reshape(numbers.shape)


def _year_zero_arg(plan: dict[str, Any]) -> bool | None:
    # cftime warns when has_year_zero is passed for the idealised calendars (always True there)
    if plan["calendar"] in ("noleap", "365_day", "360_day", "all_leap", "366_day"):
        return None
    return plan["has_year_zero"]


def same_cftime(a: np.ndarray, b: np.ndarray) -> bool:
    """Element-wise identical cftime arrays: value, type, calendar and year-zero convention."""
    if a.shape != b.shape:
        return False
    return all(x == y and type(x) is type(y) and x.calendar == y.calendar
               and x.has_year_zero == y.has_year_zero for x, y in zip(a.flat, b.flat))


def cf_attrs(plan: dict[str, Any]) -> dict[str, str]:
    """The CF attributes that describe the stored numbers."""
    return {"units": UNITS, "calendar": plan["calendar"]}
