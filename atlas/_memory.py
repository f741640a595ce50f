"""glibc's allocator, set from the start to where it settles by itself after its first free of
a large block.

glibc serves a request of 128 KiB or more with a fresh ``mmap`` and, once such a block is freed,
raises that threshold to the block's size (at most 32 MiB) and the heap's trim threshold to twice
that. Until then every numpy array of a million ids (8 MB) or of 10^5 ids (0.8 MB) is a fresh
mapping whose pages fault in on first touch (1.3-1.4 ms per MB on these VMs), and a heap whose
top is trimmed at once hands the pages back to be faulted in again by the next array: about
17,000 page faults in a stacked write of 10^5 datasets, against a few dozen once the thresholds
are where glibc would take them anyway. ``ATLAS_MALLOC_TUNING=0``, or any ``MALLOC_*``
variable of the user's own, leaves the allocator alone.

Also here: the buffers each thread keeps for decoded blocks (``thread_buffer``), since a fresh
allocation of a block's size costs about half as much as decoding it on these machines.
"""

from __future__ import annotations

import os
import threading

MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for the raised threshold (64-bit)
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what glibc pairs with it
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
THREAD_BUFFER_MAX = 4 << 20  # bigger blocks get a fresh buffer each time

_buffers = threading.local()


def thread_buffer(name: str, size: int) -> bytearray | None:
    """This thread's reused buffer ``name`` of at least ``size`` bytes (None above
    ``THREAD_BUFFER_MAX``), valid until this thread next asks for ``name``."""
    if size > THREAD_BUFFER_MAX:
        return None
    buffer = getattr(_buffers, name, None)
    if buffer is None or len(buffer) < size:
        buffer = bytearray(max(size, 1 << 20))
        setattr(_buffers, name, buffer)
    return buffer


def tune_allocator() -> bool:
    """Set glibc's thresholds; False where the process runs another C library or the user
    tunes the allocator."""
    if os.environ.get("ATLAS_MALLOC_TUNING", "1") == "0" or \
            any(name.startswith("MALLOC_") for name in os.environ):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc only: another libc's mallopt may mean other things
        mallopt = libc.mallopt
    except (ImportError, OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
