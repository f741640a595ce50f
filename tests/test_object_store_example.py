"""``examples/04_object_store.py`` runs to completion, against moto S3 and without moto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "04_object_store.py"

# run the example with moto hidden, as on a machine without it
WITHOUT_MOTO = (
    "import runpy, sys; sys.modules['moto'] = sys.modules['moto.server'] = None; "
    f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')"
)


@pytest.mark.parametrize("moto", [True, False], ids=["moto-s3", "local-store"])
def test_object_store_example_runs(moto):
    args = [sys.executable, str(EXAMPLE)] if moto else [sys.executable, "-c", WITHOUT_MOTO]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ("local S3 endpoint" in done.stdout) == moto
    assert "ConflictError" in done.stdout
    assert "next read 0 " in done.stdout  # blocks once decoded are kept (immutable files)
