"""Registering ``xr.Dataset.atlas`` without importing xarray at ``import atlas`` time.

xarray costs about 0.4 s to import, so ``import atlas`` must not pull it in. If xarray is already
imported the accessor is registered at once; otherwise a ``sys.meta_path`` finder waits for the
import of xarray, lets xarray's own loader run, and registers right after the module executed.
"""

from __future__ import annotations

import sys
import warnings
from importlib.abc import Loader, MetaPathFinder


def install() -> None:
    """Register now if xarray is imported, else when it is (called by ``atlas/__init__``)."""
    module = sys.modules.get("xarray")
    if module is not None:
        if hasattr(module, "register_dataset_accessor"):  # not a half-imported xarray
            _register()
        return
    if not any(isinstance(f, _XarrayFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _XarrayFinder())


def _register() -> None:
    try:
        from atlas.xarray._accessor import register

        register()
    except Exception as err:  # noqa: BLE001 - never break the user's import of xarray
        warnings.warn(f"atlas could not register the xr.Dataset.atlas accessor: {err!r}",
                      RuntimeWarning, stacklevel=2)


class _XarrayFinder(MetaPathFinder):
    """Finds nothing itself: wraps the loader that the other finders give for ``xarray``."""

    def __init__(self) -> None:
        self._busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "xarray" or self._busy:
            return None
        self._busy = True
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy = False
        if spec is None or spec.loader is None:
            return spec
        _uninstall(self)
        spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(Loader):
    """Delegates to xarray's loader; registers the accessor after the module executed."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        # put the real loader back first so nothing keeps seeing this wrapper
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _register()

    def __getattr__(self, name):
        return getattr(self._loader, name)


def _uninstall(finder: _XarrayFinder) -> None:
    try:
        sys.meta_path.remove(finder)
    except ValueError:
        pass
