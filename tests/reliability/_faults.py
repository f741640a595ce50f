"""Scripted storage faults on top of atlas' ``StorageWrapper`` (atlas/storage/_wrappers.py, whose
``FaultyStorage`` gives the random ones): fail the nth next call of one operation in a chosen
way, and fail the nth next ``os.pwrite`` (segment blocks and index, catalog parts), part-way
through if asked. ``ScriptedFaults`` also records every call, so that a dry run tells how many
calls of each operation a flush or a compact makes and which of them come after its commit.

Modes: ``enospc`` / ``eio`` (the call fails, nothing happened), ``after`` (the call happened,
then failed: a lost response, a failed directory fsync after a rename), ``torn-temp`` (commit:
half a temporary root written, then ENOSPC), ``full-temp`` (commit: the temporary file is
complete, the rename fails).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections import Counter

from atlas.storage import StorageWrapper

ERRNO = {"enospc": errno.ENOSPC, "eio": errno.EIO, "after": errno.EIO,
         "torn-temp": errno.ENOSPC, "full-temp": errno.EIO}
injected: Counter = Counter()  # (operation, mode) -> faults injected, over the whole run


def _fault(op: str, mode: str, where: str) -> OSError:
    code = ERRNO[mode]
    return OSError(code, f"{os.strerror(code)} (injected: {op} {mode})", where)


class ScriptedFaults(StorageWrapper):
    """``arm(op, mode, nth)``: the nth next call of ``op`` fails in ``mode``. ``calls`` lists
    every (op, key) since the last ``record()``."""

    def __init__(self, inner):
        super().__init__(inner)
        self.armed: list | None = None
        self.calls: list[tuple[str, str]] = []

    def arm(self, op: str, mode: str, nth: int = 1) -> None:
        self.armed = [op, mode, nth]

    def record(self) -> None:
        self.calls = []

    def _take(self, op: str, key: str) -> str | None:
        self.calls.append((op, key))
        if self.armed is None or self.armed[0] != op:
            return None
        self.armed[2] -= 1
        if self.armed[2]:
            return None
        mode = self.armed[1]
        self.armed = None
        injected[(op, mode)] += 1
        return mode

    def _request(self, op, key, call, *args):
        mode = self._take(op, key)
        if mode is None:
            return call(*args)
        where = f"{self.location}/{key}"
        if mode == "after":
            call(*args)
        elif op == "commit" and mode in ("torn-temp", "full-temp"):
            data = args[1]
            keep = len(data) // 2 if mode == "torn-temp" else len(data)
            with open(os.path.join(self.inner.root, f"{key}.{uuid.uuid4().hex}.tmp"), "wb") as f:
                f.write(data[:keep])
        raise _fault(op, mode, where)

    def spill_path(self, key: str) -> str:
        mode = self._take("spill_path", key)
        if mode is not None:
            raise _fault("spill_path", mode, key)
        return self.inner.spill_path(key)


@contextlib.contextmanager
def failing_pwrite(nth: int | None, partial: bool = False, mode: str = "enospc"):
    """The nth ``os.pwrite`` from now fails; with ``partial`` after writing half its bytes.
    ``nth`` None fails none: the yielded list counts the calls."""
    real = os.pwrite
    count = [0]

    def pwrite(fd, data, offset):
        count[0] += 1
        if count[0] == nth:
            injected[("pwrite", f"{mode}{' partial' if partial else ''}")] += 1
            if partial and len(data) > 1:
                real(fd, bytes(data[: len(data) // 2]), offset)
            raise _fault("pwrite", mode, f"fd {fd}")
        return real(fd, data, offset)

    os.pwrite = pwrite
    try:
        yield count
    finally:
        os.pwrite = real
