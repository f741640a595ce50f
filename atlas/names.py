"""The naming rules of datasets and arrays, public so that tools (the CLI) check names the
way the store does before they start work."""

from __future__ import annotations

import re
from typing import Any

from atlas.errors import InvalidNameError

# Names are never file names (format version 2 names files by generation and a random id), but
# they go into netCDF files (at most 256 bytes a name) and the catalog: one limit for every
# backend and every use.
MAX_NAME_BYTES = 255
_CONTROL = re.compile("[\x00-\x1f]")


def check_name(name: Any, what: str) -> str:
    """Dataset and array names: non-empty str, no '/', no leading '_', not '.' or '..', valid
    Unicode text, at most MAX_NAME_BYTES of UTF-8."""
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a str, got {type(name).__name__}")
    problem = None
    if not name:
        problem = "is empty"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif name.startswith("_"):
        problem = "starts with '_' (reserved)"
    elif name in (".", ".."):
        problem = "is '.' or '..'"
    elif _CONTROL.search(name):
        problem = "contains a control character"
    elif not name.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        problem = "contains a lone surrogate (not valid Unicode text)"
    elif len(name) > MAX_NAME_BYTES // 4 and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = (f"is {len(name.encode('utf-8'))} bytes of UTF-8, more than the limit of "
                   f"{MAX_NAME_BYTES}")
    if problem:
        raise InvalidNameError(f"invalid {what} name {name!r}: it {problem}")
    return name
