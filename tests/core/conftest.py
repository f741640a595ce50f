"""Fixtures of the core tests: a fresh store and a random generator."""

from __future__ import annotations

import numpy as np
import pytest

import atlas


@pytest.fixture
def store(store_path):
    """A new, empty store (zstd) at ``store_path``."""
    return atlas.Atlas.create(store_path)


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)
