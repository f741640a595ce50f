"""A handle used in a process forked after its parent used the store (item 8 of issue 17).

obstore's I/O runtime does not survive fork(): before the fix a child's first request on an
S3 store waited forever, and a child exiting normally removed its parent's pending segment
files (the handle's finalizer ran in the child too). Each case runs in a script of its own
(``_fork_script.py``), so that the child exits like a real program, under a timeout."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._harness import record

from _s3 import BUCKET, moto_s3  # noqa: F401, E402  (the moto server fixture, tests/_s3.py)

SCRIPT = Path(__file__).with_name("_fork_script.py")


def _run(location: str, options: dict, mode: str) -> float:
    start = time.monotonic()
    done = subprocess.run([sys.executable, str(SCRIPT), location, json.dumps(options), mode],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and done.stdout.strip() == "ok", \
        f"{mode} on {location}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return time.monotonic() - start


@pytest.mark.parametrize("mode", ["fork", "mp-daemon"])
def test_a_child_forked_after_its_parent_used_s3_reads_and_writes_without_hanging(
        moto_s3, mode):
    seconds = _run(f"s3://{BUCKET}/{moto_s3.new_prefix()}", moto_s3.options(), mode)
    record("fork-s3", mode=mode, seconds=round(seconds, 1))


def test_a_forked_child_exiting_normally_leaves_its_parents_pending_segments(tmp_path):
    _run(str(tmp_path / "store"), {}, "fork")
