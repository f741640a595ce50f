"""The store itself: ``Atlas`` (registry, pending writes, flush, compact) and ``DatasetView``."""

from atlas.core._atlas import Atlas, VerifyReport
from atlas.core._dataset import DatasetView
from atlas.core._upgrade import upgrade
from atlas.core._versions import Version

__all__ = ["Atlas", "DatasetView", "VerifyReport", "Version", "upgrade"]
