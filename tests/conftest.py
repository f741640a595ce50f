"""Shared test set-up: the hypothesis profiles and a fresh store location per test.

``HYPOTHESIS_PROFILE=ci`` (the default) keeps property tests bounded and reproducible so that
``make test`` fits its time budget; ``HYPOTHESIS_PROFILE=nightly`` searches much longer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "nightly",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Where a test may create a store; the directory does not exist yet."""
    return tmp_path / "store"
