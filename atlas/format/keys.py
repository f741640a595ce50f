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
# on object stores, the claim of a writer that lost a race to commit (atlas.storage._obstore)
CLAIM_KEY = "commit.claim"
_SEGMENT = re.compile(r"segments/[0-9]{8,12}-[0-9a-f]{32}\.seg")
_PART = re.compile(r"catalog/[0-9]{8,12}-[0-9a-f]{32}\.cat")
# the retired entries a root no longer carries inline (see atlas.format.retired)
_RETIRED_LIST = re.compile(r"catalog/[0-9]{8,12}-[0-9a-f]{32}\.ret")
# format version 1 kept segments in a folder per array name, percent-encoded
_SEGMENT_V1 = re.compile(r"segments/(?!\.\.?/)[A-Za-z0-9%._~-]{1,255}/[0-9]{8}-[0-9a-f]{32}\.seg")
# every commit's root is also kept as a version record (see atlas.core._versions)
VERSIONS_PREFIX = "versions"
TAGS_PREFIX = "tags"
_VERSION = re.compile(r"versions/([0-9]{12})-([0-9a-f]{32})\.root")
_TAG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_TEMP_SUFFIX = re.compile(r"\.[0-9a-f]{32}\.tmp\Z")
# what interrupted commits leave (storage backends write <key>.<32 hex>.tmp, then rename)
ROOT_TEMP = re.compile(re.escape(ROOT_KEY) + r"\.[0-9a-f]{32}\.tmp")
# ... and interrupted writes of version records and tags (written outside the commit lock)
RECORD_TEMP = re.compile(r"(?:versions/[0-9]{12}-[0-9a-f]{32}\.root|"
                         r"tags/[A-Za-z0-9_][A-Za-z0-9._-]{0,127})\.[0-9a-f]{32}\.tmp")


def new_segment_key(generation: int) -> str:
    return f"segments/{generation:08d}-{uuid.uuid4().hex}.seg"


def new_part_key(generation: int) -> str:
    return f"catalog/{generation:08d}-{uuid.uuid4().hex}.cat"


def new_retired_list_key(generation: int) -> str:
    return f"catalog/{generation:08d}-{uuid.uuid4().hex}.ret"


def version_key(generation: int, commit: str) -> str:
    return f"{version_prefix(generation)}{commit}.root"


def version_prefix(generation: int) -> str:
    """What the keys of every record of ``generation`` start with."""
    return f"{VERSIONS_PREFIX}/{generation:012d}-"


def parse_version_key(key: str) -> tuple[int, str] | None:
    """(generation, commit id) of a version record's key, or None for any other key."""
    found = _VERSION.fullmatch(key) if isinstance(key, str) else None
    return None if found is None else (int(found.group(1)), found.group(2))


def tag_key(name: str) -> str:
    """The key of tag ``name``; ValueError for a name outside the tag grammar."""
    if not isinstance(name, str):
        raise TypeError(f"a tag name must be a str, got {type(name).__name__} {name!r}")
    if not _is_tag_name(name):
        raise ValueError(f"tag name {name!r} is not allowed: expected 1 to 128 characters of "
                         "letters, digits, '_', '.' and '-', not starting with '.' or '-', not "
                         "ending in '.<32 hex digits>.tmp' (what an interrupted write leaves)")
    return f"{TAGS_PREFIX}/{name}"


def _is_tag_name(name: str) -> bool:
    # a name like an interrupted tag write's temporary file would be swept as one
    return bool(_TAG_NAME.fullmatch(name)) and not _TEMP_SUFFIX.search(name)


def tag_name(key: str) -> str | None:
    """The tag a key holds, or None for any other key."""
    if not isinstance(key, str) or not key.startswith(TAGS_PREFIX + "/"):
        return None
    name = key[len(TAGS_PREFIX) + 1 :]
    return name if _is_tag_name(name) else None


def is_segment_key(key: str, version: int = 2) -> bool:
    pattern = _SEGMENT if version >= 2 else _SEGMENT_V1
    return isinstance(key, str) and pattern.fullmatch(key) is not None


def is_part_key(key: str) -> bool:
    return isinstance(key, str) and _PART.fullmatch(key) is not None


def is_retired_list_key(key: str) -> bool:
    return isinstance(key, str) and _RETIRED_LIST.fullmatch(key) is not None


_DATA = re.compile("|".join(f"(?:{p.pattern})" for p in (_PART, _SEGMENT, _SEGMENT_V1,
                                                           _RETIRED_LIST)))


def is_data_key(key: str) -> bool:
    """A key of a file atlas writes besides the root: a segment (either format), a part or a
    retired list."""
    return isinstance(key, str) and _DATA.fullmatch(key) is not None


# one key per line; no key of the grammar holds a newline
_DATA_LINES = re.compile(f"(?:{_DATA.pattern})(?:\n(?:{_DATA.pattern}))*")


def all_data_keys(keys: list[str]) -> bool:
    """Whether every item is a data key: :func:`is_data_key` in one regex pass (a root's
    ``retired`` list runs to thousands of keys, and every open checks it)."""
    if not keys:
        return True
    return set(map(type, keys)) == {str} and _DATA_LINES.fullmatch(
        "\n".join(keys)) is not None


def checked(key, kind: str, where: str, version: int = 2) -> str:
    """``key`` if it is a well-formed key of ``kind`` ("segment", "part" or "retired list"),
    else CorruptionError: a commit record that names anything else is forged or damaged."""
    ok = is_part_key(key) if kind == "part" else is_retired_list_key(key) if \
        kind == "retired list" else is_segment_key(key, version)
    if not ok:
        raise CorruptionError(f"{where}: names {kind} key {key!r}, which is not a key this "
                              "format uses")
    return key
