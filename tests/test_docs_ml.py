"""The complete example of docs/ml.md runs as a script (exit status 0)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "ml.md"


def test_the_ml_example_in_the_docs_runs(tmp_path):
    pytest.importorskip("torch")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/ml.md should hold exactly one python block: the example"
    script = tmp_path / "ml_example.py"
    script.write_text(blocks[0])
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [float(line.split()[3]) for line in result.stdout.splitlines()
              if line.startswith("epoch ")]
    assert len(losses) == 4 and losses[-1] < losses[0] < 10, result.stdout  # it learns
