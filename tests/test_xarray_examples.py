"""The xarray and dask examples run to completion (each asserts its own round trips)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("script", ["02_xarray.py", "03_dask_streaming.py"])
def test_example_runs_and_exits_zero(script):
    result = subprocess.run([sys.executable, str(EXAMPLES / script)], check=False,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
