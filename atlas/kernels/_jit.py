"""The one decorator every kernel uses.

``cache=True`` raises at decoration time when numba finds no writable cache directory (a read-only
install, a locked-down home); kernels then compile in memory instead of failing at import.
"""

from __future__ import annotations

import numba


def kernel(func):
    """``@njit(nogil=True, cache=True)``, falling back to no cache where caching is impossible."""
    try:
        return numba.njit(nogil=True, cache=True)(func)
    except RuntimeError:
        return numba.njit(nogil=True)(func)
