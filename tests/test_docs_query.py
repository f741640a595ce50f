"""The walk-through of docs/query.md runs as a script, and its shell lines work."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parents[1] / "docs" / "query.md"


def test_the_query_walk_through_runs_and_its_shell_lines_agree(tmp_path):
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "docs/query.md should hold exactly one python block"
    # keep the store where the test can reach it afterwards
    script = blocks[0].replace("root = tempfile.mkdtemp()", f"root = {str(tmp_path)!r}")
    (tmp_path / "walk.py").write_text(script)
    result = subprocess.run([sys.executable, "walk.py"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warm tropical profiles" in result.stdout

    import atlas

    store = atlas.Atlas.open(tmp_path / "argo", read_only=True)
    shell = re.findall(r"```bash\n(.*?)```", text, flags=re.S)[0]
    commands = [line.split("#")[0].strip() for line in shell.splitlines() if line.strip()]
    assert [c.split()[1] for c in commands] == ["ls", "catalog", "catalog", "info"]
    atlas_exe = [sys.executable, "-m", "atlas"]

    def run(command: str) -> str:
        import shlex

        argv = [a if a != "STORE" else str(tmp_path / "argo") for a in shlex.split(command)[1:]]
        argv = [a for a in argv if a != ">" and not a.endswith(".csv")]
        done = subprocess.run(atlas_exe + argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    warm = run(commands[0]).split()
    assert warm == store.select("temp.max > 25 and -10 < lat.min < 10") and warm
    frame = store.catalog(arrays=["temp"])
    assert warm == [n for n in store.list_datasets()
                    if frame.loc[n, "temp.max"] > 25
                    and -10 < float(store.open_dataset(n).read_array("lat")) < 10]
    csv_lines = run(commands[1]).splitlines()
    assert csv_lines[0] == ("dataset,platform,time,temp.dtype,temp.shape,temp.nulls,"
                            "temp.valid,temp.min,temp.max,lat.dtype,lat.shape,lat.nulls,"
                            "lat.valid,lat.min,lat.max")
    assert len(csv_lines) == 1 + len(store.list_datasets())
    records = json.loads(run(commands[2]))
    with_gaps = [n for n in store.list_datasets()
                 if store.open_dataset(n).read_array("psal") is not None
                 and np.isnan(store.open_dataset(n).read_array("psal")).any()]
    assert [r["dataset"] for r in records] == with_gaps and with_gaps
    assert "temp" in run(commands[3])
