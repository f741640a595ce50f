"""The key grammar: the only storage keys a store ever names.

Every key read from a commit record is checked here before anything is read, listed or deleted
through it, so a forged record cannot reach a file outside the store (``../x``, an absolute
path) or a file atlas does not own.
"""

from __future__ import annotations

import re
import uuid

from atlas.errors import CorruptionError

ROOT_KEY = "manifest.atlas"
_SEGMENT = re.compile(r"segments/[0-9]{8,12}-[0-9a-f]{32}\.seg")
_PART = re.compile(r"catalog/[0-9]{8,12}-[0-9a-f]{32}\.cat")
# format version 1 kept segments in a folder per array name, percent-encoded
_SEGMENT_V1 = re.compile(r"segments/(?!\.\.?/)[A-Za-z0-9%._~-]{1,255}/[0-9]{8}-[0-9a-f]{32}\.seg")
# what interrupted commits leave (storage backends write <key>.<32 hex>.tmp, then rename)
ROOT_TEMP = re.compile(re.escape(ROOT_KEY) + r"\.[0-9a-f]{32}\.tmp")


def new_segment_key(generation: int) -> str:
    return f"segments/{generation:08d}-{uuid.uuid4().hex}.seg"


def new_part_key(generation: int) -> str:
    return f"catalog/{generation:08d}-{uuid.uuid4().hex}.cat"


def is_segment_key(key: str, version: int = 2) -> bool:
    pattern = _SEGMENT if version >= 2 else _SEGMENT_V1
    return isinstance(key, str) and pattern.fullmatch(key) is not None


def is_part_key(key: str) -> bool:
    return isinstance(key, str) and _PART.fullmatch(key) is not None


def is_data_key(key: str) -> bool:
    """A key of a file atlas writes besides the root: a segment (either format) or a part."""
    return is_part_key(key) or is_segment_key(key) or is_segment_key(key, 1)


def checked(key, kind: str, where: str, version: int = 2) -> str:
    """``key`` if it is a well-formed key of ``kind`` ("segment" or "part"), else
    CorruptionError: a commit record that names anything else is forged or damaged."""
    ok = is_part_key(key) if kind == "part" else is_segment_key(key, version)
    if not ok:
        raise CorruptionError(f"{where}: names {kind} key {key!r}, which is not a key this "
                              "format uses")
    return key
