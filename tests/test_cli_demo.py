"""``make demo`` (examples/demo.py) runs end to end on a few days and checks its own reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


def test_demo_ingests_reads_back_the_same_values_as_xarray_and_writes_quicklooks(tmp_path):
    proc = subprocess.run([sys.executable, str(DEMO), "--days", "4", "--repeats", "1",
                           "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "png")],
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "ingested 4 files" in out and "datasets    4" in out
    assert out.count("(same values as atlas)") == 3  # each baseline read equals the atlas read
    table = out[out.index("method"):]
    for label in ("atlas read_array_across_stacked", "xarray open_mfdataset",
                  "xarray open_dataset loop", "netCDF4 loop"):
        assert label in table
    for png in ("first_day_sst.png", "annual_mean_sst.png"):
        assert (tmp_path / "png" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "MISMATCH" not in proc.stderr
