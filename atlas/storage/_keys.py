"""The key grammar: which strings may name a value in a store.

Every backend checks every key against it before any read, write, delete or listing, and the
format code checks every key it reads from a commit record, so that no key can reach outside
the store (``..``, an absolute path, a drive or a backslash path on another system) or fail in
one backend and not in another (an empty component, a control character, a name too long for a
file system or an object store).
"""

from __future__ import annotations

import re
from typing import Any

from atlas.errors import CorruptionError, InvalidKeyError

MAX_KEY_BYTES = 1024  # S3's limit for a whole key, in UTF-8
MAX_COMPONENT_BYTES = 255  # a file name on every common local file system
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 and C1 control characters


def key_problem(key: Any) -> str | None:
    """What is wrong with ``key`` as a storage key, or None when it is one.

    A key is a non-empty relative path of '/'-separated components; each component is
    non-empty, not '.' or '..', has no backslash and no control character, and is at most
    255 bytes in UTF-8; the whole key is at most 1024 bytes.
    """
    if not isinstance(key, str):
        return f"is a {type(key).__name__}, not a str"
    if not key:
        return "is empty"
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid Unicode text (a lone surrogate)"
    if size > MAX_KEY_BYTES:
        return f"is {size} bytes in UTF-8, more than {MAX_KEY_BYTES}"
    if key.startswith("/"):
        return "is an absolute path"
    for part in key.split("/"):
        if part in ("", ".", ".."):
            return f"has a component {part!r} (empty, '.' and '..' are not allowed)"
        if "\\" in part:
            return "contains a backslash"
        if _CONTROL.search(part):  # one regex pass: listings check every key they return
            return "contains a control character"
        if len(part.encode("utf-8")) > MAX_COMPONENT_BYTES:
            return f"has a component longer than {MAX_COMPONENT_BYTES} bytes in UTF-8"
    return None


def check_key(key: Any, where: str | None = None) -> str:
    """Return ``key`` if it is a valid storage key, else raise.

    ``where`` names the stored data the key was read from (a manifest, a commit record): the
    key is then damaged or forged data and the error a :class:`CorruptionError` naming it.
    Without ``where`` the key came from a caller: :class:`InvalidKeyError` (a ValueError).
    """
    problem = key_problem(key)
    if problem is None:
        return key
    text = f"storage key {key!r} {problem}; keys are relative '/'-separated paths inside the store"
    if where is not None:
        raise CorruptionError(f"{where}: {text}")
    raise InvalidKeyError(text)


def check_prefix(prefix: Any) -> str:
    """A listing prefix: "" (everything) or a key."""
    return prefix if prefix == "" else check_key(prefix)
