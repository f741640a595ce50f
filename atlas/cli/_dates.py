"""Arrays that hold cftime dates (non-standard calendars, years outside 1678-2262): the store
keeps them as int64 microseconds in their own calendar (``atlas.xarray._cf``); the commands
show them as dates."""

from __future__ import annotations

from typing import Any

import numpy as np


def calendar_plan(view, array: str) -> dict | None:
    """How ``array``'s numbers become dates, or None when they are not cftime dates."""
    from atlas.xarray._encoding import marker as marker_doc
    from atlas.xarray._mapping import CF_ATTR

    marker = view._all_array_attributes(array).get(CF_ATTR)
    if not isinstance(marker, (str, dict)):
        return None
    try:
        plan = marker_doc(marker).get("decode")
    except ValueError:
        return None
    return plan if isinstance(plan, dict) and plan.get("kind") == "cftime" else None


def as_dates(values: Any, plan: dict) -> Any:
    """Stored numbers (a scalar, an array or None) as cftime dates."""
    from atlas.xarray._cf import decode_cftime

    if values is None:
        return None
    numbers = np.asarray(values, dtype=np.int64)
    dates = decode_cftime(numbers, plan)
    return dates[()] if numbers.ndim == 0 else dates


def date_text(value: Any, plan: dict) -> str:
    """One stored number as ISO 8601 text with its calendar's date."""
    return as_dates(np.int64(round(float(value))), plan).isoformat()
