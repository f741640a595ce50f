"""Starting, killing and checking writer processes; recording the figures docs/reliability.md
quotes (set ATLAS_RELIABILITY_FIGURES to a file to collect them)."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

_ctx = None


def context():
    """A forkserver context whose server has imported atlas and warmed its kernels."""
    global _ctx
    if _ctx is None:
        from multiprocessing import forkserver

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([f"{__package__}._warm"])
        # the server imports the preload before it applies our sys.path (Python 3.11), so it
        # gets the directory holding this package through the environment it starts with
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parents[1])] + ([old] if old else []))
        try:
            forkserver.ensure_running()
        finally:
            if old is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = old
        _ctx = ctx
    return _ctx


def read_log(path: str | Path) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_for(path: str | Path, prefix: str, timeout: float = 60.0, proc=None) -> bool:
    """Wait until a line starting with ``prefix`` is in the log (False: the process ended)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(line.startswith(prefix) for line in read_log(path)):
            return True
        if proc is not None and not proc.is_alive():
            return any(line.startswith(prefix) for line in read_log(path))
        time.sleep(0.002)
    raise TimeoutError(f"no {prefix!r} line in {path} after {timeout} s")


def record(test: str, **figures) -> None:
    """Append one test's figures to $ATLAS_RELIABILITY_FIGURES (JSON lines), if set."""
    target = os.environ.get("ATLAS_RELIABILITY_FIGURES")
    if target:
        with open(target, "a") as f:
            f.write(json.dumps({"test": test, "time": time.time(), **figures}) + "\n")
