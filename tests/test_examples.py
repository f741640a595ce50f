"""Every script in examples/ runs to completion (exit status 0) in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))  # _x: helpers

# scripts whose default run is a long job get a small one here (same code paths)
SHORT_RUN = {"demo.py": lambda tmp: ["--days", "4", "--repeats", "1", "--out", str(tmp / "out")]}


def test_the_examples_folder_has_the_basics_example():
    assert "01_basics.py" in [p.name for p in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_script_exits_cleanly(script, tmp_path):
    args = SHORT_RUN.get(script.name, lambda tmp: [])(tmp_path)
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (
        f"{script.name} exited {result.returncode}\n--- stdout\n{result.stdout[-3000:]}"
        f"\n--- stderr\n{result.stderr[-3000:]}")
    assert result.stdout.strip(), f"{script.name} printed nothing about what it did"
